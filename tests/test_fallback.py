"""edgeconv.verify.fallback: an int8 that misses its target ends passing with its worst layers kept in float."""
from __future__ import annotations

import numpy as np
import pytest

from edgeconv.options import ValidationOptions
from edgeconv.verify.compare import Tolerance, compare_outputs, default_tolerance
from edgeconv.errors import UsageError
from edgeconv.verify.fallback import auto_fallback, convert_with_keep_float
from edgeconv.verify.layerwise import compare_layers
from edgeconv.runtime.runners import KerasRunner, LiteRTRunner


def outlier_model(path, factor: float = 50.0, channel: int = 0):
    """The trained tiny model with one channel of ``b1_project_bn`` scaled up ``factor`` times and ``b2_expand``'s
    kernel scaled down to match: the float function is unchanged, but that tensor's int8 range now spans the
    outlier and the other 23 channels get a handful of levels (the classic MobileNet int8 failure)."""
    import keras

    model = keras.saving.load_model(path, compile=False)
    bn = model.get_layer("b1_project_bn")
    gamma, beta, mean, var = bn.get_weights()
    gamma[channel] *= factor
    beta[channel] *= factor
    bn.set_weights([gamma, beta, mean, var])
    conv = model.get_layer("b2_expand")
    (k,) = conv.get_weights()
    k[:, :, channel, :] /= factor
    conv.set_weights([k])
    return model


@pytest.fixture(scope="module")
def data(digits):
    (xtr, _), (xte, _) = digits
    return xtr[:100], xte[:100]


@pytest.fixture(scope="module")
def honest(trained_tiny, data, tmp_path_factory):
    import keras

    from edgeconv.pipeline.trace import trace

    model = keras.saving.load_model(trained_tiny[0], compile=False)
    return model, trace(model, tmp_path_factory.mktemp("fb")), KerasRunner(model).run(data[1])


def _run(model_bytes, x):
    return LiteRTRunner(model_bytes).run(x)


def test_outlier_int8_fails_and_fallback_keeps_the_culprits_float(trained_tiny, honest, data, tmp_path):
    from edgeconv.tflite.convert import convert_tflite
    from edgeconv.pipeline.trace import trace

    cal, val = data
    model = outlier_model(trained_tiny[0])
    ref = KerasRunner(model).run(val)
    assert np.abs(ref[0] - honest[2][0]).max() < 1e-5  # same float function
    sm = trace(model, tmp_path)
    tol = default_tolerance("int8", "tflite")
    plain = convert_tflite(sm, "int8", cal, "int")
    assert not compare_outputs(ref, _run(plain, val), tol).passed  # measured 13-14 dB, top-1 ~94%
    rep = compare_layers(model, plain, val)
    assert rep.layer("b2_expand_bn").suspect  # it reads the squeezed tensor: rmse/scale 0.93

    fb = auto_fallback(sm, cal, val, ref, tol, layer_report=rep, io_type="int")
    assert fb.passed and fb.precision == "int8"
    assert {"b1_project_bn", "b2_expand_bn"} <= set(fb.kept_float) and len(fb.kept_float) <= 4
    first, last = fb.history[0], fb.history[-1]
    assert not first["passed"] and first["kept_float"] == [] and last["passed"]
    assert last["kept_float"] == fb.kept_float and last["sqnr_db"] > 20 > first["sqnr_db"]
    assert all(h["bytes"] > 0 and h["latency_ms"] > 0 for h in fb.history)
    assert last["bytes"] > first["bytes"]  # the float layers cost size
    assert "b2_expand_bn" in fb.summary() and "KB" in fb.summary()
    assert compare_outputs(ref, _run(fb.model_bytes, val), tol).passed
    r = LiteRTRunner(fb.model_bytes)
    assert r.inputs[0].dtype == "int8" and r.outputs[0].dtype == "int8"  # io type kept


def test_strict_target_on_honest_int8(honest, data):
    model, sm, ref = honest
    cal, val = data
    strict = Tolerance(min_sqnr=35.0)  # plain int8: about 30 dB
    fb = auto_fallback(sm, cal, val, ref, strict, io_type="float")
    assert fb.passed and len(fb.kept_float) >= 1
    assert not fb.history[0]["passed"] and fb.history[-1]["kept_float"] == fb.kept_float
    assert set(fb.kept_float) <= {layer.name for layer in model.layers} | {n for n in fb.nodes if "/" not in n}
    assert compare_outputs(ref, _run(fb.model_bytes, val), strict).outputs[0].sqnr_db >= 35
    assert LiteRTRunner(fb.model_bytes).inputs[0].dtype == "float32"


def test_unreachable_target_tries_int16x8_and_reports_failure(honest, data):
    _, sm, ref = honest
    cal, val = data
    fb = auto_fallback(sm, cal, val, ref, Tolerance(min_sqnr=200.0), max_rounds=1)
    assert not fb.passed
    assert [h["action"] for h in fb.history][-1] == "int16x8 (whole model)" and len(fb.history) == 3


def test_keep_float_by_layer_name(honest, data):
    _, sm, ref = honest
    cal, val = data
    b = convert_with_keep_float(sm, cal, ["b2_dw_hswish"], io_type="int")
    runner = LiteRTRunner(b, xnnpack=False)
    details = runner.tensors()
    hswish = [op for op in runner.ops() if op["op_name"] == "HARD_SWISH"]
    dtypes = {details[op["outputs"][0]]["name"].split("/")[1]: details[op["outputs"][0]]["dtype"] for op in hswish}
    assert dtypes["b2_dw_hswish_1"] == np.float32 and dtypes["stem_hswish_1"] == np.int8
    assert compare_outputs(ref, _run(b, val), default_tolerance("int8")).passed
    with pytest.raises(UsageError, match="--keep-float no_such_layer: .*b2_dw_hswish"):
        convert_with_keep_float(sm, cal, ["no_such_layer"])


def test_export_fallback_auto_is_reported(trained_tiny, digits_calibration_npy, tmp_path):
    """Through export(): the int8 file is replaced, the manifest and report.md say which layers stayed float."""
    import json

    from edgeconv.pipeline.export import export

    cal, held = digits_calibration_npy
    src = tmp_path / "outlier.keras"
    outlier_model(trained_tiny[0]).save(src)
    res = export(str(src), precisions=["int8"], out_dir=tmp_path / "out", calibration=cal, calib_samples=100,
                 fallback="auto", validation=ValidationOptions(data=str(held), samples=100), quiet=True)
    assert res.validation.passed and res.fallback.passed
    int8 = res.validation.artifact("outlier_int8.tflite")
    assert "b2_expand_bn" in int8.kept_float and int8.fallback["history"][0]["passed"] is False
    md = (res.out_dir / "report.md").read_text()
    assert "### Automatic fallback" in md and "b2_expand_bn" in md and "KB" in md
    m = json.loads((res.out_dir / "manifest.json").read_text())
    assert "b2_expand_bn" in m["artifacts"][1]["fallback"]["kept_float"]
