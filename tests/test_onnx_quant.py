"""edgeconv.onnx.quantize: static int8 QDQ ONNX of a trained tiny model agrees with Keras on held-out digits."""
from __future__ import annotations

import numpy as np
import pytest

from edgeconv.errors import EdgeconvError
from edgeconv.onnx.quantize import quantize_onnx_int8
from edgeconv.runtime.runners import OnnxRunner


def test_int8_agrees_with_keras(trained_tiny, digits):
    import keras
    import onnx
    from onnx import TensorProto

    from edgeconv.onnx.convert import convert_onnx

    path, float_acc = trained_tiny
    (xtr, _), (xte, yte) = digits
    model = keras.models.load_model(path)
    ref = np.asarray(model.predict(xte, verbose=0))  # the model rescales 0..255 pixels itself
    for nchw in (False, True):
        fp32 = convert_onnx(model, nchw=nchw)
        q = quantize_onnx_int8(fp32.model_bytes, xtr, nchw=nchw)
        got = OnnxRunner(q, layout=fp32.layout).run(xte)[0]
        agree = float(np.mean(got.argmax(1) == ref.argmax(1)))
        assert len(xte) == 397 and agree >= 0.97, f"nchw={nchw}: top-1 agreement {agree:.4f}"
        assert float(np.mean(got.argmax(1) == yte)) >= float_acc - 0.03
        proto = onnx.load_from_string(q)
        kinds = [n.op_type for n in proto.graph.node]
        assert kinds.count("QuantizeLinear") >= 10 and kinds.count("DequantizeLinear") >= 10
        int8_weights = [t for t in proto.graph.initializer if t.data_type == TensorProto.INT8 and len(t.dims) == 4]
        assert len(int8_weights) >= 8  # every Conv kernel (8 in the tiny model) is stored as int8
        per_channel = [n for n in proto.graph.node if n.op_type == "DequantizeLinear"
                       and n.input[0] in {t.name for t in int8_weights}]
        scales = {t.name: t for t in proto.graph.initializer}
        # per-channel: every kernel has one scale per output channel
        assert per_channel and all(list(scales[n.input[1]].dims) == [w.dims[0]] for n in per_channel
                                   for w in int8_weights if w.name == n.input[0])
        assert quantize_onnx_int8(fp32.model_bytes, xtr, nchw=nchw) == q  # deterministic


@pytest.mark.parametrize("bad", [None, np.zeros((0, 32, 32, 3), np.float32), np.zeros((4, 32, 32), np.float32)])
def test_bad_calibration_data(bad):
    with pytest.raises(EdgeconvError):
        quantize_onnx_int8(b"", bad)


def test_calibration_shape_mismatch():
    import keras

    from helpers import build_tiny_mnv3
    from edgeconv.onnx.convert import convert_onnx

    keras.utils.set_random_seed(0)
    fp32 = convert_onnx(build_tiny_mnv3(), rewrite=False)
    with pytest.raises(EdgeconvError, match=r"calibration inputs have shape \(16, 16, 3\)"):
        quantize_onnx_int8(fp32.model_bytes, np.zeros((2, 16, 16, 3), np.float32))
