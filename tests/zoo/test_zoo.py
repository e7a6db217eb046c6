"""The zoo: every registered model builds with its verified parameter count, runs small, and reloads from .keras."""
from __future__ import annotations

import os

import numpy as np
import pytest

from edgeconv import models

ALL = models.list_models()
ZOO_MD_NAMES = [
    "lenet5", "alexnet", "vgg11", "vgg13", "vgg16", "vgg19", "googlenet", "inception_v3", "inception_v4",
    "inception_resnet_v2", "resnet18", "resnet34", "resnet50", "resnet101", "resnet152", "resnet50v2",
    "resnet101v2", "resnet152v2", "resnext50", "resnext101", "densenet121", "densenet169", "densenet201",
    "xception", "squeezenet", "shufflenet", "mobilenet_v1", "mobilenet_v2", "mobilenetv3_small",
    "mobilenetv3_large", *[f"efficientnet_b{i}" for i in range(8)], "vit_b16", "vit_b32", "vit_l16",
]
# Builds of models this large take seconds each (ViT-L: 304 M params) and belong to the slow sweep
# (`pytest -m slow`); the default run builds every other model at its default size, small, and from .keras.
LARGE = 30_000_000
DEFAULT_SIZE = [pytest.param(n, marks=pytest.mark.slow) if models.model_info(n).params > LARGE else n for n in ALL]


def test_every_zoo_md_name_is_registered():
    assert sorted(set(ZOO_MD_NAMES) - set(ALL)) == []


def test_large_models_are_a_minority_of_the_default_run():
    """The slow marker takes only the largest builds: most of the zoo is still counted at full size by default."""
    large = [n for n in ALL if models.model_info(n).params > LARGE]
    assert 0 < len(large) < len(ALL) / 2, large


@pytest.mark.parametrize("name", DEFAULT_SIZE)
def test_parameter_count_at_default_size(name):
    import keras

    info = models.model_info(name)
    keras.backend.clear_session()
    model = models.create_model(name)
    n = model.count_params()
    assert n == info.params, f"{name}: built {n:,} params, registry says {info.params:,}"
    assert model.input_shape[1:] == info.input_shape
    assert model.output_shape[-1] == info.classes
    assert info.param_rel_diff <= info.param_tolerance, (
        f"{name}: {info.params:,} vs reference {info.reference_params:,} ({info.param_rel_diff:.2%}) "
        f"exceeds the documented tolerance {info.param_tolerance:.2%}")
    if "keras.applications" in info.reference_source:
        assert info.params == info.reference_params, "keras.applications-backed families must match exactly"
    if info.params != info.reference_params:
        assert "param" in info.doc.lower(), f"{name}: the docstring must explain the parameter difference"
    if info.reference_counts == "trainable":  # torchvision/timm count BN running stats as buffers, not params
        trainable = sum(int(np.prod(w.shape)) for w in model.trainable_weights)
        assert trainable == info.reference_params, f"{name}: {trainable:,} trainable vs {info.reference_params:,}"
    del model
    keras.backend.clear_session()


def _small_shape(info):
    s = max(info.min_input_size, 32)
    return (s, s, info.input_shape[2])


def _has_custom_layers(model) -> bool:
    def walk(layer):
        yield layer
        for sub in getattr(layer, "layers", []) or []:
            yield from walk(sub)

    return any(not type(l).__module__.startswith("keras") for l in walk(model))


@pytest.mark.parametrize("name", DEFAULT_SIZE)
def test_forward_pass_small_and_keras_file_roundtrip(name, tmp_path):
    """Every zoo model runs small (a softmax over the asked classes, finite); one with custom layers reloads from
    .keras (the layers are registered) with identical outputs. One build serves both checks."""
    import keras

    info = models.model_info(name)
    keras.backend.clear_session()
    model = models.create_model(name, input_shape=_small_shape(info), classes=7, **info.small_kwargs)
    rng = np.random.default_rng(0)
    x = rng.uniform(0, 255, size=(2, *_small_shape(info))).astype("float32")
    x = info.preprocessing.apply(x) if x.shape[-1] in (1, 3) else x
    y = np.asarray(model(x, training=False))
    assert y.shape == (2, 7)
    assert np.all(np.isfinite(y))
    np.testing.assert_allclose(y.sum(axis=1), 1.0, rtol=1e-4)  # every zoo head ends in softmax
    if _has_custom_layers(model):
        path = os.path.join(tmp_path, f"{name}.keras")
        model.save(path)
        again = keras.models.load_model(path)
        np.testing.assert_array_equal(np.asarray(model(x[:1])), np.asarray(again(x[:1])))
    keras.backend.clear_session()


def test_unknown_name_suggests_closest():
    with pytest.raises(models.UnknownModelError) as e:
        models.create_model("mobilenetv3_smal")
    assert "mobilenetv3_small" in e.value.suggestions
    assert "did you mean" in str(e.value)


def test_bad_arguments_are_clear():
    with pytest.raises(ValueError, match="at least"):
        models.create_model("mobilenetv3_small", input_shape=(8, 8, 3))
    with pytest.raises(ValueError, match="does not take"):
        models.create_model("lenet5", alpha=0.5)
