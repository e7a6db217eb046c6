"""edgeconv.onnx.convert: Keras -> ONNX through tf2onnx matches Keras (NHWC and NCHW), cleanly and deterministically."""
from __future__ import annotations

import numpy as np
import pytest

from helpers import build_tiny_mnv3
from edgeconv.errors import UsageError
from edgeconv.onnx.convert import convert_onnx
from edgeconv.runtime.runners import OnnxRunner

ATOL = 1e-4


def spread_batchnorm(model, seed: int = 0):
    """Random-but-plausible batch-norm statistics so activations spread over h-swish's bends (fresh random weights
    give near-constant outputs that would hide a wrong graph)."""
    from keras import layers

    rng = np.random.default_rng(seed)
    for layer in model.layers:
        if isinstance(layer, layers.BatchNormalization):
            n = layer.get_weights()[0].shape  # gamma, beta, moving mean, moving variance
            stats = [rng.uniform(0.5, 2.0, n), rng.uniform(-1, 1, n), rng.uniform(-0.2, 0.2, n), rng.uniform(0.2, 1, n)]
            layer.set_weights([s.astype(np.float32) for s in stats])
    return model


def pixels(n: int, size: int = 32, seed: int = 1) -> np.ndarray:
    return np.random.default_rng(seed).uniform(0, 255, (n, size, size, 3)).astype(np.float32)


@pytest.fixture(scope="module")
def mnv3_small():
    """keras.applications MobileNetV3Small (alpha 0.75, not minimalistic: ReLU, ReLU6 in SE, h-swish), 32x32."""
    import keras

    keras.utils.set_random_seed(0)
    m = keras.applications.MobileNetV3Small(input_shape=(32, 32, 3), alpha=0.75, minimalistic=False, weights=None,
                                            classes=10, classifier_activation=None, dropout_rate=0.0)
    return spread_batchnorm(m)


def keras_out(model, x):
    return np.asarray(model(x, training=False), np.float32)


@pytest.mark.parametrize("nchw", [False, True], ids=["nhwc", "nchw"])
def test_mobilenetv3_small_matches_keras(mnv3_small, nchw):
    res = convert_onnx(mnv3_small, nchw=nchw)
    x = pixels(6)
    ref = keras_out(mnv3_small, x)
    assert ref.std() > 0.05  # the comparison below means something
    got = OnnxRunner(res.model_bytes, layout=res.layout).run(x)[0]
    assert got.shape == ref.shape
    assert np.max(np.abs(got - ref)) <= ATOL
    assert res.layout == ("nchw" if nchw else "nhwc")
    shape = list(OnnxRunner(res.model_bytes).inputs[0].shape)
    assert shape == ([1, 3, 32, 32] if nchw else [1, 32, 32, 3])
    # tf2onnx alone leaves 106 Transposes here (its transpose optimizer crashes); the compat fix leaves the input one
    assert res.leftover_transposes == (0 if nchw else 1)
    assert res.warnings == []
    assert res.rewrites == ["HardSwish x19", "HardSigmoid x9"]


@pytest.mark.parametrize("hswish", ["builtin", "tutorial"])
def test_tiny_mnv3_matches_keras(hswish):
    """Activation("hard_swish") and the tutorials' custom Layer / Activation(python function) both export."""
    import keras

    keras.utils.set_random_seed(0)
    model = spread_batchnorm(build_tiny_mnv3(hswish=hswish))
    x = pixels(8)
    ref = keras_out(model, x)
    for nchw in (False, True):
        res = convert_onnx(model, nchw=nchw)
        got = OnnxRunner(res.model_bytes, layout=res.layout).run(x)[0]
        assert np.max(np.abs(got - ref)) <= ATOL
        assert res.input_names == ["image"] and res.output_names == ["probs"]
        assert res.rewrites == ["HardSwish x3", "HardSigmoid x1"]


def test_same_model_same_bytes():
    import keras

    keras.utils.set_random_seed(0)
    model = build_tiny_mnv3(hswish="tutorial")
    a, b = convert_onnx(model), convert_onnx(model)
    assert a.model_bytes == b.model_bytes
    assert convert_onnx(model, nchw=True).model_bytes != a.model_bytes


def test_same_bytes_across_processes():
    """tf2onnx's node order and constant names vary with the process (hash seed); the exported bytes must not."""
    import os
    import subprocess
    import sys

    # MobileNetV3Small at 32x32 (1x1 spatial tensors late on): with hash seeds 1 and 2 raw tf2onnx output differs
    code = ("import hashlib, keras; from edgeconv.onnx.convert import convert_onnx; keras.utils.set_random_seed(0); "
            "m = keras.applications.MobileNetV3Small(input_shape=(32, 32, 3), alpha=0.75, weights=None, classes=10); "
            "print(hashlib.sha256(convert_onnx(m).model_bytes).hexdigest())")
    here = os.path.dirname(__file__)
    procs = [subprocess.Popen([sys.executable, "-c", code], cwd=here, stdout=subprocess.PIPE,
                              stderr=subprocess.DEVNULL, text=True,
                              env={**os.environ, "PYTHONHASHSEED": seed, "TF_CPP_MIN_LOG_LEVEL": "3"})
             for seed in ("1", "2")]
    digests = [p.communicate(timeout=120)[0].strip().splitlines()[-1] for p in procs]
    assert len(digests[0]) == 64 and digests[0] == digests[1]


def test_dynamic_batch():
    import keras

    keras.utils.set_random_seed(0)
    model = spread_batchnorm(build_tiny_mnv3())
    res = convert_onnx(model, batch_size=None)
    runner = OnnxRunner(res.model_bytes)
    assert runner.inputs[0].shape[0] == -1
    x = pixels(5)
    got = runner.session.run(None, {"image": x})[0]  # one call with the whole batch
    assert got.shape == (5, 10)
    assert np.max(np.abs(got - keras_out(model, x))) <= ATOL


def test_transpose_optimizer_crash_is_one_warning_line(monkeypatch, capfd):
    """Without the compat fix tf2onnx's transpose optimizer crashes: the user gets one warning line with the number
    of Transposes left, no traceback, and the model is still right."""
    import contextlib

    import keras

    import edgeconv.onnx.compat as compat

    monkeypatch.setattr(compat, "transpose_optimizer_scalar_add_fix", contextlib.nullcontext)
    keras.utils.set_random_seed(0)
    model = build_tiny_mnv3()
    capfd.readouterr()
    res = convert_onnx(model)
    printed = capfd.readouterr()
    assert "Traceback" not in printed.err + printed.out
    assert "max() arg is an empty sequence" not in printed.err + printed.out
    assert res.leftover_transposes > 1
    assert res.warnings == ["tf2onnx: Failed to apply optimize_transpose (ValueError: max() arg is an empty "
                            f"sequence); {res.leftover_transposes} Transpose nodes left"]
    x = pixels(3)
    assert np.max(np.abs(OnnxRunner(res.model_bytes).run(x)[0] - keras_out(model, x))) <= ATOL


@pytest.mark.parametrize("opset", [11, 19])
def test_unsupported_opset_is_a_usage_error(opset):
    import keras

    with pytest.raises(UsageError, match=f"opset must be between 13 and 18, got {opset}"):
        convert_onnx(keras.Sequential([keras.Input((4, 4, 3)), keras.layers.ReLU()]), opset=opset)


@pytest.mark.parametrize("name", ["resnext50", "shufflenet", "vit_b16", "efficientnet_b0"])
def test_zoo_models_that_need_tf2onnx_workarounds(name):
    """Grouped convolutions (ResNeXt, ShuffleNet: Keras traces them through XLA), exact gelu (ViT: the TF op
    Erfc, unknown to tf2onnx) and captured constants (EfficientNet's Normalization mean/variance, left as extra graph
    inputs by tf2onnx) convert to a single-input ONNX that matches Keras."""
    import keras

    from edgeconv import models

    keras.utils.set_random_seed(0)
    info = models.model_info(name)
    full = spread_batchnorm(models.create_model(name, input_shape=(32, 32, 3), classes=10, **info.small_kwargs))
    # the features before the classifier: a random net's softmax saturates or flattens and would hide errors
    m = keras.Model(full.inputs, full.layers[-2].output)
    x = pixels(8) / 255.0
    res = convert_onnx(m, verify_inputs=x[:2])
    got = OnnxRunner(res.model_bytes).run(x)[0]
    ref = np.asarray(m(x))
    assert ref.std(axis=0).max() > 1e-2  # the outputs depend on the input: the comparison means something
    # features reach ~40 and a deep random net amplifies float32 rounding: error relative to the feature scale
    scale = max(1.0, float(np.abs(ref).max()))
    assert float(np.abs(got - ref).max()) / scale < ATOL
    import onnx

    assert len(onnx.load_from_string(res.model_bytes).graph.input) == 1
    ops = {n.op_type for n in onnx.load_from_string(res.model_bytes).graph.node}
    if name == "efficientnet_b0":
        return
    if name == "vit_b16":
        assert "Erf" in ops
    else:
        grouped = [n for n in onnx.load_from_string(res.model_bytes).graph.node if n.op_type == "Conv"
                   and any(a.name == "group" and a.i > 1 for a in n.attribute)]
        assert grouped, "grouped convolutions should stay one Conv with group > 1"
