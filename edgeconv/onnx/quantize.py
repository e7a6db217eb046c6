"""ONNX static int8 with onnxruntime.quantization: QDQ format, per-channel symmetric int8 weights, int8 activations.

Calibration uses the same float32 NHWC model inputs as the TFLite int8 path (transposed for NCHW files).
``quant_pre_process`` (shape inference + onnxruntime's basic graph optimizations) runs first: it folds the
batch-norm ``Mul``/``Add`` pairs tf2onnx leaves after bias-less convolutions into the convolutions, so fewer tensors
need their own quantization scale.
"""
from __future__ import annotations

import contextlib
import logging
import tempfile
from pathlib import Path

import numpy as np

from edgeconv.errors import EdgeconvError, first_line


def _reader(x: np.ndarray, input_name: str, batch: int):
    from onnxruntime.quantization import CalibrationDataReader

    class _Batches(CalibrationDataReader):
        def __init__(self):
            self._i = 0

        def get_next(self):
            if self._i >= len(x):
                return None
            xb = np.ascontiguousarray(x[self._i:self._i + batch])
            self._i += batch
            return {input_name: xb}

        def rewind(self):
            self._i = 0

    return _Batches()


@contextlib.contextmanager
def _quiet_quantizer():
    """onnxruntime.quantization reports through the *root* logger (e.g. "Please consider to run pre-processing");
    keep it off the user's terminal while quantizing."""
    root = logging.getLogger()
    level = root.level
    root.setLevel(logging.ERROR)
    try:
        yield
    finally:
        root.setLevel(level)


def quantize_onnx_int8(fp32_bytes: bytes, calibration_x, *, nchw: bool = False, preprocess: bool = True,
                       warnings: list | None = None) -> bytes:
    """-> int8 QDQ ONNX bytes of ``fp32_bytes``, calibrated (MinMax) on ``calibration_x`` (N, H, W, C) float32.

    When ``quant_pre_process`` cannot handle the graph (e.g. "Incomplete symbolic shape inference" on ViT), the model
    is quantized without it and a line is added to ``warnings``."""
    if calibration_x is None or len(calibration_x) == 0:
        raise EdgeconvError("ONNX int8 needs calibration data (got none)")
    x = np.asarray(calibration_x, np.float32)
    if x.ndim != 4:
        raise EdgeconvError(f"calibration data must be (N, H, W, C) images, got shape {tuple(x.shape)}")
    if nchw:
        x = x.transpose(0, 3, 1, 2)
    import onnx
    from onnxruntime.quantization import CalibrationMethod, QuantFormat, QuantType, quantize_static

    from edgeconv.onnx.compat import quant_pre_process_no_cwd

    model = onnx.load_from_string(bytes(fp32_bytes))
    if len(model.graph.input) != 1:
        raise EdgeconvError(f"ONNX int8: only single-input models are supported, found {len(model.graph.input)}")
    inp = model.graph.input[0]
    dims = [d.dim_value if d.HasField("dim_value") else None for d in inp.type.tensor_type.shape.dim]
    if dims[1:] and None not in dims[1:] and tuple(dims[1:]) != tuple(x.shape[1:]):
        raise EdgeconvError(f"calibration inputs have shape {tuple(x.shape[1:])}, the ONNX model wants "
                            f"{tuple(dims[1:])}")
    batch = dims[0] if dims and dims[0] else 32
    with tempfile.TemporaryDirectory(prefix="edgeconv-onnx-int8-") as tmp, _quiet_quantizer():
        src, pre, out = Path(tmp, "fp32.onnx"), Path(tmp, "pre.onnx"), Path(tmp, "int8.onnx")
        src.write_bytes(bytes(fp32_bytes))
        if preprocess:
            try:
                quant_pre_process_no_cwd(str(src), str(pre))
                src = pre
            except Exception as e:  # noqa: BLE001 - onnxruntime raises its own types; pre-processing is optional
                if warnings is not None:
                    msg = first_line(e)
                    warnings.append(f"onnx int8: quantized without onnxruntime's pre-processing ({msg})")
        try:
            quantize_static(str(src), str(out), _reader(x, inp.name, batch), quant_format=QuantFormat.QDQ,
                            per_channel=True, activation_type=QuantType.QInt8, weight_type=QuantType.QInt8,
                            calibrate_method=CalibrationMethod.MinMax,
                            extra_options={"WeightSymmetric": True, "ActivationSymmetric": False})
        except Exception as e:  # onnxruntime raises its own types
            raise EdgeconvError(f"onnxruntime cannot quantize the ONNX model to int8: "
                                f"{first_line(e)}") from None
        return out.read_bytes()
