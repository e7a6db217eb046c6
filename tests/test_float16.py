"""edgeconv.tflite.float16: fp16 weights from the float .tflite give the converter's fp16 outputs, at its size."""
import numpy as np


def test_float16_weights_compute_what_the_converters_fp16_computes(tmp_path):
    from helpers import build_tiny_mnv3

    from edgeconv.pipeline.trace import trace
    from edgeconv.runtime.runners import LiteRTRunner
    from edgeconv.tflite.convert import convert_tflite
    from edgeconv.tflite.float16 import float16_weights

    sm = trace(build_tiny_mnv3(), tmp_path)
    fp32 = convert_tflite(sm, "fp32")
    ours, theirs = float16_weights(fp32), convert_tflite(sm, "fp16")
    x = np.random.default_rng(0).uniform(0, 255, (8, 32, 32, 3)).astype(np.float32)
    for xnnpack in (True, False):  # XNNPACK folds the DEQUANTIZE ops; the builtin kernels run them
        a, b = LiteRTRunner(ours, xnnpack=xnnpack), LiteRTRunner(theirs, xnnpack=xnnpack)
        assert np.array_equal(a.run(x)[0], b.run(x)[0])
        ops = lambda r: sorted(op["op_name"] for op in r.ops())  # noqa: E731
        assert ops(a) == ops(b) and ops(a).count("DEQUANTIZE") > 10
    assert not np.array_equal(LiteRTRunner(ours).run(x)[0], LiteRTRunner(fp32).run(x)[0])  # weights did change
    assert abs(len(ours) - len(theirs)) < 0.02 * len(theirs) and len(ours) < 0.75 * len(fp32)  # tiny: graph bytes weigh
    r = LiteRTRunner(ours, xnnpack=False)
    halves = [t for t in r.tensors() if t["dtype"] == np.float16]
    assert len(halves) == ops(r).count("DEQUANTIZE")
