"""edgeconv.tflite.calibrate: one calibration, many quantizations; activation ranges from calibration statistics."""
from __future__ import annotations

import numpy as np
import pytest

from edgeconv.errors import UsageError
from edgeconv.runtime.runners import KerasRunner, LiteRTRunner
from edgeconv.verify.compare import sqnr_db


@pytest.fixture(scope="module")
def tiny(trained_tiny, digits, tmp_path_factory):
    import keras

    from edgeconv.pipeline.trace import trace
    from edgeconv.tflite.calibrate import calibrate

    (xtr, _), (xte, _) = digits
    model = keras.saving.load_model(trained_tiny[0], compile=False)
    sm = trace(model, tmp_path_factory.mktemp("cal"))
    return sm, calibrate(sm, xtr[:100], "float"), xtr[:100], xte[:100], KerasRunner(model).run(xte[:100])[0]


def test_calibrate_once_quantizes_like_the_converter(tiny):
    from edgeconv.tflite.convert import convert_tflite

    sm, cal, xcal, x, ref = tiny
    ours = LiteRTRunner(cal.quantize()).run(x)[0]
    converter = LiteRTRunner(convert_tflite(sm, "int8", xcal, "float")).run(x)[0]
    assert np.array_equal(ours, converter)  # the same calibration and quantizer: identical outputs
    r = LiteRTRunner(cal.quantize(io_type="int"))
    assert r.inputs[0].dtype == "int8" and r.outputs[0].dtype == "int8"
    kept = LiteRTRunner(cal.quantize(denylist=["b2_dw_hswish"]), xnnpack=False)
    assert any(op["op_name"] == "HARD_SWISH" and kept.tensors()[op["outputs"][0]]["dtype"] == np.float32
               for op in kept.ops())
    with pytest.raises(UsageError, match="stats must be one of"):
        cal.quantize(stats="nope")


def test_range_policies_clip_and_auto_never_loses_on_calibration(tiny):
    """Percentile and MSE policies clip each activation range inside the converter's min/max, "mse" has the lowest
    int8 error per tensor, and "auto" takes the policy with the best output SQNR on the calibration inputs (never
    below min/max there). Whether clipping helps held-out data depends on the trained weights: two trainings of this
    fixture (same code, two machines) measured MSE clipping at +3.4 dB (29.8 -> 33.2) and -7.6 dB (34.7 -> 27.1) on
    100 held-out digits, so the default keeps the converter's ranges and the fallback tries the policies on the
    validation data."""
    from edgeconv.tflite.calibrate import _clip_range, _qerr

    sm, cal, xcal, x, ref = tiny
    values = cal.values()
    assert len(values) >= 10
    for v in values.values():
        lo, hi = float(v.min()), float(v.max())
        for stats in ("p9999", "p99999", "mse"):
            a, b = _clip_range(v, stats)
            assert lo - 1e-6 <= a <= b <= hi + 1e-6
        assert _qerr(v, *_clip_range(v, "mse")) <= _qerr(v, lo, hi)
    scores = cal.stats_scores()
    assert set(scores) == {"minmax", "p9999", "p99999", "mse"} and len({round(s, 3) for s in scores.values()}) > 1
    best = cal.best_stats()
    assert scores[best] >= scores["minmax"] and (best == "minmax" or scores[best] > scores["minmax"] + 0.1)
    assert cal.quantize(stats="auto") == cal.quantize(stats=best)
    # every policy quantizes the same graph: same size, other numbers
    assert abs(len(cal.quantize(stats="mse")) - len(cal.quantize())) < 64
    assert not np.array_equal(LiteRTRunner(cal.quantize(stats="mse")).run(x)[0], LiteRTRunner(cal.quantize()).run(x)[0])
