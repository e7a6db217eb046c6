"""edgeconv.tflite.rewrite: HARD_SWISH -> ADD/RELU6, MUL, MUL keeps outputs (float and int8) and XNNPACK coverage."""
from __future__ import annotations

import numpy as np
import pytest

from edgeconv.verify.compare import compare_outputs, tolerance_for
from edgeconv.inspect import xnnpack_coverage
from edgeconv.tflite.introspect import tflite_details
from edgeconv.runtime.runners import KerasRunner, LiteRTRunner
from edgeconv.tflite.rewrite import decompose_hard_swish


@pytest.fixture(scope="module")
def converted(trained_tiny, digits, tmp_path_factory):
    """fp32 and int8 (plain converter output) of the trained tiny MobileNetV3, its Keras model, held-out inputs."""
    import keras

    from edgeconv.pipeline.trace import trace
    from edgeconv.tflite.convert import convert_tflite

    path, _ = trained_tiny
    model = keras.models.load_model(path)
    (xtr, _), (xte, yte) = digits
    saved = trace(model, tmp_path_factory.mktemp("trace"), 1)
    fp32 = convert_tflite(saved, "fp32")
    int8 = convert_tflite(saved, "int8", xtr[:100], "int")
    return model, fp32, int8, xte[:200], yte[:200]


def test_float_parity(converted):
    model, fp32, _, x, _ = converted
    res = decompose_hard_swish(fp32, dtypes=("float32",))
    assert res.rewritten == 3 and res.dtype == "float32"
    ops = tflite_details(res.model_bytes)["ops"]
    assert "HARD_SWISH" not in ops and ops["ADD"] == 3 and ops["MUL"] == 2 + 6
    before, after = LiteRTRunner(fp32).run(x)[0], LiteRTRunner(res.model_bytes).run(x)[0]
    assert np.max(np.abs(before - after)) < 1e-5
    ref = KerasRunner(model).run(x)[0]
    assert np.max(np.abs(ref - after)) < 1e-4


def test_int8_parity_and_coverage(converted):
    model, _, int8, x, y = converted
    res = decompose_hard_swish(int8)
    assert res.rewritten == 3 and res.dtype == "int8"
    before_cov, after_cov = xnnpack_coverage(int8), xnnpack_coverage(res.model_bytes)
    assert before_cov["by_op"]["HARD_SWISH"] == {"total": 3, "delegated": 0}
    # after: only the final int8 SOFTMAX is left to TFLite's kernels, in one XNNPACK partition
    assert [f["op"] for f in after_cov["fallback"]] == ["SOFTMAX"]
    assert after_cov["partitions"] == 1 and before_cov["partitions"] == 4
    # I/O quantization unchanged
    d0, d1 = tflite_details(int8), tflite_details(res.model_bytes)
    assert d0["inputs"] == d1["inputs"] and d0["outputs"] == d1["outputs"]
    ref = KerasRunner(model).run(x)[0]
    b, a = LiteRTRunner(int8).run(x)[0], LiteRTRunner(res.model_bytes).run(x)[0]
    step = d0["outputs"][0]["quantization"]["scale"]
    # the decomposition rounds two more intermediates: close to the converter's own int8, and as good vs Keras
    assert np.mean(np.argmax(a, 1) == np.argmax(b, 1)) >= 0.99
    assert np.mean(np.abs(a - b)) / step < 1.0
    tol = tolerance_for("int8", "tflite")
    cmp_before, cmp_after = compare_outputs([ref], [b], tol), compare_outputs([ref], [a], tol)
    assert cmp_after.passed, cmp_after.to_dict()
    sq_b, sq_a = cmp_before.outputs[0].sqnr_db, cmp_after.outputs[0].sqnr_db
    assert sq_a > sq_b - 1.5, (sq_b, sq_a)
    acc_b, acc_a = np.mean(np.argmax(b, 1) == y), np.mean(np.argmax(a, 1) == y)
    assert acc_a >= acc_b - 0.01 and acc_a > 0.9, (acc_b, acc_a)


def test_no_hard_swish_is_a_no_op(converted):
    _, fp32, int8, _, _ = converted
    res = decompose_hard_swish(fp32)  # int8 only by default: a float model is returned unchanged
    assert res.rewritten == 0 and res.model_bytes == fp32
