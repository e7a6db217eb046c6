"""The zoo's pretrained-weights facts: which models have keras.applications' ImageNet weights, which builds they fit,
the file keras asks its downloader for, and the ImageNet class names shipped as package data. No network: keras'
download function is replaced by one that records what it is asked for and stops the build."""
from __future__ import annotations

import urllib.parse

import pytest

from edgeconv import models
from edgeconv.models.pretrained import KERAS_WEIGHTS_HOST

# Every zoo model built on a keras.applications builder that publishes ImageNet weights (keras 3.x).
WITH_IMAGENET = sorted([
    "mobilenet_v1", "mobilenet_v2", "mobilenetv3_small", "mobilenetv3_large",
    *[f"efficientnet_b{i}" for i in range(8)],
    "resnet50", "resnet101", "resnet152", "resnet50v2", "resnet101v2", "resnet152v2",
    "densenet121", "densenet169", "densenet201", "xception", "inception_v3", "inception_resnet_v2", "vgg16", "vgg19",
])


class Asked(Exception):
    """Raised by the stand-in for keras' get_file: the build asked for this file."""


@pytest.fixture
def asked(monkeypatch):
    """keras.utils.get_file (where keras.applications looks it up) replaced: records (fname, origin, kwargs) and
    stops the build, so nothing is downloaded and no weights are loaded."""
    from keras.src.utils import file_utils

    calls = []

    def fake_get_file(fname=None, origin=None, **kwargs):
        calls.append((fname, origin, kwargs))
        raise Asked(fname)

    monkeypatch.setattr(file_utils, "get_file", fake_get_file)
    return calls


def test_imagenet_class_names_ship_with_the_zoo():
    names = models.imagenet_classes()
    assert len(names) == 1000 and all(n and n == n.strip() and "\n" not in n for n in names)
    assert names[:3] == ["tench", "goldfish", "great white shark"]
    assert names[999] == "toilet tissue" and names[409] == "analog clock" and names[948] == "Granny Smith"
    assert names[134] == names[517] == "crane"  # the bird and the machine, as in every ImageNet label list
    assert len(set(names)) == 998
    names.append("x")  # callers get a copy
    assert len(models.imagenet_classes()) == 1000


def test_registry_says_which_models_have_imagenet_weights():
    have = sorted(n for n in models.list_models() if models.model_info(n).pretrained is not None)
    assert have == WITH_IMAGENET
    rows = {n: models.model_info(n).to_dict() for n in models.list_models()}
    assert rows["mobilenetv3_small"]["pretrained"] == "imagenet"
    assert rows["mobilenetv3_small"]["pretrained_input_sizes"] == [224]
    assert rows["mobilenet_v2"]["pretrained_input_sizes"] == [96, 128, 160, 192, 224]
    assert rows["xception"]["pretrained_input_sizes"] == [299]
    assert rows["efficientnet_b7"]["pretrained_input_sizes"] == [600]
    assert rows["resnet18"]["pretrained"] is None and rows["vgg11"]["pretrained"] is None


def _problem(name, size=None, classes=None, **width):
    info = models.model_info(name)
    shape = None if size is None else (size, size, info.input_shape[2])
    return info.pretrained_problem(info.build_config(shape, classes, **width))


@pytest.mark.parametrize("name,size,classes,width,expect", [
    ("mobilenetv3_small", None, None, {}, None),
    ("mobilenetv3_small", None, None, {"alpha": 0.75}, None),
    ("mobilenetv3_small", 96, None, {}, None),  # keras loads the 224x224 weights into any size (the default won't)
    ("mobilenetv3_small", None, 10, {}, "1000 classes, not 10"),
    ("mobilenetv3_small", None, None, {"alpha": 0.5}, "alpha in 0.75, 1, not 0.5"),
    ("mobilenetv3_large", None, None, {"minimalistic": True}, None),
    ("mobilenetv3_large", None, None, {"minimalistic": True, "alpha": 0.75}, "minimalistic variant"),
    ("mobilenet_v1", 160, None, {"alpha": 0.5}, None),
    ("mobilenet_v1", 96, None, {}, "128x128 / 160x160 / 192x192 / 224x224 input, not 96x96"),
    ("mobilenet_v1", None, None, {"depth_multiplier": 2}, "default depth_multiplier (1), not 2"),
    ("mobilenet_v2", 96, None, {"alpha": 0.35}, None),
    ("efficientnet_b0", None, None, {"width_coefficient": 0.5}, "default width_coefficient, not 0.5"),
    ("efficientnet_b3", 224, None, {}, "300x300 input, not 224x224"),
    ("resnet50", 200, None, {}, "224x224 input, not 200x200"),
    ("inception_v3", None, 5, {}, "1000 classes, not 5"),
    ("lenet5", None, None, {}, "no pretrained weights"),
])
def test_which_builds_fit_the_weights(name, size, classes, width, expect):
    why = _problem(name, size, classes, **width)
    assert why is None if expect is None else expect in why, why


def test_create_model_refuses_what_keras_would_refuse(asked):
    with pytest.raises(ValueError, match="mobilenetv3_small: ImageNet weights have 1000 classes, not 10"):
        models.create_model("mobilenetv3_small", classes=10, weights="imagenet")
    with pytest.raises(ValueError, match="lenet5: no pretrained weights"):
        models.create_model("lenet5", weights="imagenet")
    with pytest.raises(ValueError, match="weights must be None or 'imagenet'"):
        models.create_model("mobilenetv3_small", weights="model.weights.h5")
    assert asked == []  # refused before anything was built or downloaded


def _expect_asked(asked, name, size=None, **width):
    import keras

    info = models.model_info(name)
    shape = None if size is None else (size, size, 3)
    keras.backend.clear_session()
    with pytest.raises(Asked):
        models.create_model(name, input_shape=shape, weights="imagenet", **width)
    fname, origin, kwargs = asked[-1]
    assert fname == info.pretrained.file_name(info.build_config(shape, None, **width))
    url = urllib.parse.urlsplit(origin)
    assert url.scheme == "https" and url.hostname == KERAS_WEIGHTS_HOST and url.path.endswith("/" + fname)
    assert kwargs.get("cache_subdir") == "models"  # <keras home>/models/<fname>: where edgeconv looks first
    keras.backend.clear_session()
    return fname


@pytest.mark.parametrize("name,size,width,fname", [
    ("mobilenetv3_small", None, {}, "weights_mobilenet_v3_small_224_1.0_float.h5"),
    ("mobilenetv3_small", None, {"alpha": 0.75}, "weights_mobilenet_v3_small_224_0.75_float.h5"),
    ("mobilenet_v2", 96, {"alpha": 0.35}, "mobilenet_v2_weights_tf_dim_ordering_tf_kernels_0.35_96.h5"),
    ("mobilenet_v1", 128, {"alpha": 0.25}, "mobilenet_2_5_128_tf.h5"),
    ("efficientnet_b0", None, {}, "efficientnetb0.h5"),
])
def test_keras_asks_for_the_file_the_registry_names(asked, name, size, width, fname):
    assert _expect_asked(asked, name, size, **width) == fname


@pytest.mark.slow
@pytest.mark.parametrize("name", WITH_IMAGENET)
def test_keras_asks_for_the_file_the_registry_names_whole_zoo(asked, name):
    """Every pretrained model at its default build (~95 s for all 26 on 2 cores: the big ones take seconds to build)."""
    _expect_asked(asked, name)
