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


#: The target the fallback tests ask for (as with --min-sqnr 20): the outlier model's plain int8 misses it.
TARGET = Tolerance(min_sqnr=20.0, min_top1=0.95)
#: The tiny model's plain int8 is already 0.71x its fp32 file (flatbuffer overhead dominates 28 KB): the default
#: 0.5x budget leaves no room, so these tests allow 0.9x.
TINY_SIZE_RATIO = 0.9


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


@pytest.fixture(scope="module")
def outlier(trained_tiny, data, tmp_path_factory):
    """(model, SavedModel dir, Keras outputs on the held-out data, plain int8 bytes, its LayerReport)."""
    from edgeconv.pipeline.trace import trace
    from edgeconv.tflite.convert import convert_tflite

    cal, val = data
    model = outlier_model(trained_tiny[0])
    sm = trace(model, tmp_path_factory.mktemp("outlier"))
    plain = convert_tflite(sm, "int8", cal, "int")
    rep = compare_layers(model, plain, val, float_tflite=convert_tflite(sm, "fp32"))
    return model, sm, KerasRunner(model).run(val), plain, rep


def test_outlier_layer_ranks_first_and_keeping_it_float_pays(outlier, data):
    """Issue 18: the layer that writes the outlier tensor looks healthy locally (rmse/scale ~0.29: its rounding is
    uniform, just coarse), yet its error alone costs the output most; its reader is the rmse/scale suspect."""
    from edgeconv.tflite.calibrate import calibrate

    model, sm, ref, plain, rep = outlier
    cal, val = data
    first, second = rep.worst(2)
    assert first.layer == "b1_project_bn" and first.rmse_scale < 0.4 and not first.suspect
    assert first.output_sqnr_db < 17 < second.output_sqnr_db  # measured 13.5 vs 23.4 dB (b2_expand_bn)
    assert second.layer == "b2_expand_bn" and second.suspect
    plain_sqnr = compare_outputs(ref, _run(plain, val), default_tolerance("int8")).outputs[0].sqnr_db
    q = calibrate(sm, cal, "int")
    node = q.resolve([first.layer])
    alone = compare_outputs(ref, _run(q.quantize(node), val), default_tolerance("int8")).outputs[0].sqnr_db
    kept = compare_outputs(ref, _run(q.quantize(q.with_neighbours(node)), val),
                           default_tolerance("int8")).outputs[0].sqnr_db
    # float alone, its tensor is re-quantized for the int8 reader (measured 16.1 -> 15.4 dB); with its neighbours
    # (the fallback's unit) the tensor skips int8: +14.7 dB measured, close to what the ranking's injection predicts
    assert abs(alone - plain_sqnr) < 2
    assert kept - plain_sqnr > 10 and kept > 27


#: The range policies without cross-layer equalization, which repairs this outlier on its own (test below): what the
#: layer-keeping rounds do is tested on the model as if CLE could not reach the tensor.
NO_CLE = ("minmax", "p9999", "p99999", "mse")


def test_outlier_is_repaired_by_cross_layer_equalization_at_no_cost(outlier, data):
    """The outlier channel sits between two convolutions (b1_project -> b2_expand): "cle" rescales it back, so the
    fallback passes in round 2 with nothing float and the plain int8's size. Measured: 16.1 -> 29.1 dB (keeping the
    two culprit layers float instead: 30.8 dB, a larger file)."""
    cal, val = data
    model, sm, ref, plain, rep = outlier
    plain_cmp = compare_outputs(ref, _run(plain, val), TARGET)
    fb = auto_fallback(sm, cal, val, ref, TARGET, layer_report=rep, io_type="int", max_size_ratio=TINY_SIZE_RATIO)
    assert fb.passed and fb.precision == "int8" and fb.stats == "cle" and fb.kept_float == []
    assert abs(len(fb.model_bytes) - fb.history[0]["bytes"]) < 256
    got = compare_outputs(ref, _run(fb.model_bytes, val), TARGET).outputs[0]
    assert got.sqnr_db > 26 and got.sqnr_db > plain_cmp.outputs[0].sqnr_db + 10
    assert got.top1_agreement >= plain_cmp.outputs[0].top1_agreement
    assert "cross-layer equalized" in fb.summary()
    with pytest.raises(UsageError, match="policies must be among"):
        auto_fallback(sm, cal, val, ref, TARGET, policies=("minmax", "nope"))


def test_outlier_int8_fails_and_fallback_keeps_the_culprits_float(outlier, honest, data):
    cal, val = data
    model, sm, ref, plain, rep = outlier
    assert np.abs(ref[0] - honest[2][0]).max() < 1e-5  # same float function
    tol = TARGET
    plain_cmp = compare_outputs(ref, _run(plain, val), tol)
    assert not plain_cmp.passed  # measured 16.1 dB, top-1 98% on these 100 (12.6 dB, 94.7% on all 397)
    assert rep.layer("b2_expand_bn").suspect  # it reads the squeezed tensor: rmse/scale 0.91

    fb = auto_fallback(sm, cal, val, ref, tol, layer_report=rep, io_type="int", max_size_ratio=TINY_SIZE_RATIO,
                       policies=NO_CLE)
    assert fb.passed and fb.precision == "int8"
    assert {"b1_project_bn", "b2_expand_bn"} <= set(fb.kept_float) and len(fb.kept_float) <= 4
    first, chosen = fb.history[0], [h for h in fb.history if h.get("chosen")]
    assert not first["passed"] and first["kept_float"] == [] and len(chosen) == 1 and chosen[0]["passed"]
    assert chosen[0]["kept_float"] == fb.kept_float and chosen[0]["sqnr_db"] > 20 > first["sqnr_db"]
    assert chosen[0]["gain_db"] > 5  # what the kept layer bought, measured (+14.7 dB)
    assert all(h["bytes"] > 0 and h["latency_ms"] > 0 for h in fb.history)
    # the budget: never larger than asked, and never less faithful than the plain int8
    assert len(fb.model_bytes) <= fb.budget["max_bytes"] == int(TINY_SIZE_RATIO * fb.budget["fp32_bytes"])
    got = compare_outputs(ref, _run(fb.model_bytes, val), tol)
    assert got.passed and got.outputs[0].sqnr_db > plain_cmp.outputs[0].sqnr_db
    assert got.outputs[0].top1_agreement >= plain_cmp.outputs[0].top1_agreement
    assert "b2_expand_bn" in fb.summary() and "KB" in fb.summary()
    r = LiteRTRunner(fb.model_bytes)
    assert r.inputs[0].dtype == "int8" and r.outputs[0].dtype == "int8"  # io type kept


def test_size_budget_is_respected_and_plain_int8_is_the_floor(outlier, data):
    """A budget no float layer fits in (plain int8 0.71x fp32, with the culprit float 0.82x): the fallback must not
    exceed it and hands back the plain int8 (failing), never something larger or less accurate."""
    cal, val = data
    model, sm, ref, plain, rep = outlier
    tol = TARGET
    fb = auto_fallback(sm, cal, val, ref, tol, layer_report=rep, io_type="int", max_size_ratio=0.75, policies=NO_CLE,
                       try_int16x8=False, max_rounds=2)
    assert len(fb.model_bytes) <= fb.budget["max_bytes"]
    assert not fb.passed and fb.kept_float == [] and fb.history[0].get("chosen")
    assert any("over the size/latency budget" in h["action"] for h in fb.history)
    assert compare_outputs(ref, _run(fb.model_bytes, val), tol).outputs[0].sqnr_db == pytest.approx(
        fb.history[0]["sqnr_db"], abs=0.01)


def test_strict_target_on_honest_int8(honest, data):
    """A target 2 dB above this model's plain int8: reachable or not depends on the trained weights (two trainings
    of the fixture: plain int8 29.8 dB, MSE ranges reached 33.2; plain 34.7 dB, float layers reach 35.2 at most).
    What must hold either way: every layer kept float paid for itself on the validation data, the names are Keras
    layer names, a pass meets the target and a miss hands back the plain int8."""
    model, sm, ref = honest
    cal, val = data
    plain = compare_outputs(ref, _run(convert_with_keep_float(sm, cal, [], io_type="float"), val),
                            Tolerance()).outputs[0].sqnr_db
    strict = Tolerance(min_sqnr=round(plain + 2.0, 1))
    # the layer rounds only: a range policy may reach the target in round 2 and end the search there (p9999 does on
    # this machine's training of the fixture; CLE alone lifts it ~1.5 dB, tests/test_equalize.py)
    fb = auto_fallback(sm, cal, val, ref, strict, io_type="float", try_int16x8=False, max_size_ratio=TINY_SIZE_RATIO,
                       policies=("minmax",))
    assert not fb.history[0]["passed"] and fb.history[0]["sqnr_db"] == pytest.approx(plain, abs=0.01)
    keeps = [h for h in fb.history if h["action"].startswith("keep")]
    assert keeps, "the fallback tried no layer"
    for h in keeps:  # a unit is kept only when it raised the SQNR on the validation data
        if "budget" in h["action"]:
            continue
        assert ("not kept" in h["action"]) == (not h["passed"] and not h["gain_db"] > 0.05), h
    assert set(fb.kept_float) <= {layer.name for layer in model.layers} | {n for n in fb.kept_float if " " in n}
    assert not any("StatefulPartitionedCall" in k for h in fb.history for k in h["kept_float"])
    got = compare_outputs(ref, _run(fb.model_bytes, val), strict).outputs[0].sqnr_db
    if fb.passed:
        assert got >= strict.min_sqnr and (fb.kept_float or fb.stats != "minmax")
    else:
        assert fb.kept_float == [] and got == pytest.approx(plain, abs=0.01)
    assert LiteRTRunner(fb.model_bytes).inputs[0].dtype == "float32"


def test_unreachable_target_refuses_slow_int16x8_and_keeps_plain(honest, data):
    _, sm, ref = honest
    cal, val = data
    fb = auto_fallback(sm, cal, val, ref, Tolerance(min_sqnr=200.0), max_rounds=1, max_candidates=2,
                       max_size_ratio=TINY_SIZE_RATIO)
    assert not fb.passed and fb.precision == "int8" and fb.kept_float == [] and fb.history[0].get("chosen")
    assert fb.history[-1]["action"].startswith("int16x8 (whole model)")


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
    """Through export(): the int8 file is replaced, the manifest and report.md say what the fallback did (here:
    cross-layer equalization repairs the outlier, nothing stays float)."""
    import json

    from edgeconv.pipeline.export import export

    cal, held = digits_calibration_npy
    src = tmp_path / "outlier.keras"
    outlier_model(trained_tiny[0]).save(src)
    res = export(str(src), precisions=["int8"], out_dir=tmp_path / "out", calibration=cal, calib_samples=100,
                 fallback="auto", max_size_ratio=TINY_SIZE_RATIO, validation=ValidationOptions(data=str(held), samples=100), quiet=True)
    assert res.validation.passed and res.fallback.passed
    int8 = res.validation.artifact("outlier_int8.tflite")
    assert int8.kept_float == [] and int8.fallback["history"][0]["passed"] is False
    assert int8.fallback["stats"] == "cle" and int8.comparison.outputs[0].sqnr_db > 26
    md = (res.out_dir / "report.md").read_text()
    assert "### Automatic fallback" in md and "cross-layer equalized ('cle')" in md and "KB" in md
    m = json.loads((res.out_dir / "manifest.json").read_text())
    assert m["artifacts"][1]["fallback"]["stats"] == "cle" and m["artifacts"][1]["fallback"]["passed"] is True


def test_export_int8_ranges_cle_passes_the_outlier_without_fallback(trained_tiny, digits_calibration_npy, tmp_path):
    """``--int8-ranges cle``: the int8 artifact itself is cross-layer equalized (the manifest says so) and the outlier
    model's int8, which fails plainly (16.1 dB), passes without any fallback round."""
    import json

    from edgeconv.options import ExportOptions
    from edgeconv.pipeline.export import export

    cal, held = digits_calibration_npy
    src = tmp_path / "outlier.keras"
    outlier_model(trained_tiny[0]).save(src)
    res = export(str(src), precisions=["int8"], out_dir=tmp_path / "out", calibration=cal, calib_samples=100,
                 int8_ranges="cle", fallback="auto", validation=ValidationOptions(data=str(held), samples=100),
                 quiet=True)
    assert res.validation.passed and res.fallback is None
    assert res.validation.artifact("outlier_int8.tflite").comparison.outputs[0].sqnr_db > 26
    m = json.loads((res.out_dir / "manifest.json").read_text())
    assert m["artifacts"][1]["quantization"] == "activation ranges 'cle'"
    with pytest.raises(UsageError, match="--int8-ranges must be one of"):
        ExportOptions(int8_ranges="median").check()
