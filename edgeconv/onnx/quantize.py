"""ONNX static int8 with onnxruntime.quantization: QDQ format, uint8 activations, per-channel symmetric int8 weights
(U8S8), then QDQ rewrites (:mod:`edgeconv.onnx.qdq`) so onnxruntime runs every Conv and activation in integer kernels.

Calibration uses the same float32 NHWC model inputs as the TFLite int8 path (transposed for NCHW files).
``quant_pre_process`` (shape inference + onnxruntime's basic graph optimizations) runs first: it folds the
batch-norm ``Mul``/``Add`` pairs tf2onnx leaves after bias-less convolutions into the convolutions, so fewer tensors
need their own quantization scale.

Why uint8 activations (measured, onnxruntime 1.32 CPU, x86-64 with AVX-512 VNNI, 1 thread, keras.applications
MobileNetV3-Small 224x224; benchmarks/onnx_int8_speed.py): with int8 activations (S8S8, edgeconv before this
change) onnxruntime's x86 CPU provider fused only 29 of the 54 Convs into ``QLinearConv``; the other 25 stayed float
``Conv`` fed by ``DequantizeLinear`` of their weights on every run, with 35 Transposes around them: 8.9 ms vs
2.5 ms fp32. With uint8 activations all 54 become ``QLinearConv`` (3.0 ms). The rest of the gap was the
float hard-sigmoid islands, the quantized input rescaling and onnxruntime's slow int8 depthwise kernel for channel
counts that are not multiples of 16, which :mod:`edgeconv.onnx.qdq` rewrites (about 0.95x fp32).
ARM builds of onnxruntime fuse both activation types; uint8 is the one both fuse.
"""
from __future__ import annotations

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


def quantize_onnx_int8(fp32_bytes: bytes, calibration_x, *, nchw: bool = False, preprocess: bool = True,
                       warnings: list | None = None, float_first_block: bool = False) -> bytes:
    """-> int8 QDQ ONNX bytes of ``fp32_bytes``, calibrated (MinMax) on ``calibration_x`` (N, H, W, C) float32.

    uint8 activations, per-channel symmetric int8 weights; h-swish / hard-sigmoid and a scalar input rescaling are
    rewritten so onnxruntime fuses them into integer kernels, depthwise channel counts are padded to multiples of
    16, and a Softmax that writes a graph output stays float (each rewrite is kept only if the outputs on a few
    calibration inputs stay as close to the float model as without it, see :class:`_Guard`).

    ``float_first_block`` keeps the stem and the first inverted-residual block float (see
    :func:`edgeconv.onnx.qdq.float_first_block_nodes`): measured on x86 it is faster still and more faithful
    (MobileNetV3-Small 0.91x instead of 0.98x fp32 and +2 dB logits SQNR; Large 0.59x vs 0.65x, +1.5 dB;
    MobileNetV2 same speed, +0.7 dB), but those convolutions then run float (not what a fully-int8 runtime or
    NPU delegate wants, and not measured on ARM), so it is off by default.

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

    from edgeconv.onnx.compat import quant_pre_process_no_cwd, quiet_logger

    from edgeconv.onnx.qdq import (decompose_hard_swish, float_first_block_nodes, fold_input_affine,
                                   hard_sigmoid_to_add, pad_depthwise_channels)

    model = onnx.load_from_string(bytes(fp32_bytes))
    if len(model.graph.input) != 1:
        raise EdgeconvError(f"ONNX int8: only single-input models are supported, found {len(model.graph.input)}")
    inp = model.graph.input[0]
    dims = [d.dim_value if d.HasField("dim_value") else None for d in inp.type.tensor_type.shape.dim]
    if dims[1:] and None not in dims[1:] and tuple(dims[1:]) != tuple(x.shape[1:]):
        raise EdgeconvError(f"calibration inputs have shape {tuple(x.shape[1:])}, the ONNX model wants "
                            f"{tuple(dims[1:])}")
    batch = dims[0] if dims and dims[0] else 32
    decompose_hard_swish(model)  # what onnxruntime inlines anyway; the same graph with or without pre-processing
    try:
        guard = _Guard(bytes(fp32_bytes), x[:GUARD_SAMPLES], inp.name)
    except Exception as e:  # onnxruntime raises its own types
        raise EdgeconvError(f"onnxruntime cannot run the float ONNX model: "
                            f"{first_line(e)}") from None
    with tempfile.TemporaryDirectory(prefix="edgeconv-onnx-int8-") as tmp, quiet_logger():
        src, pre, out = Path(tmp, "fp32.onnx"), Path(tmp, "pre.onnx"), Path(tmp, "int8.onnx")
        src.write_bytes(model.SerializeToString())
        if preprocess:
            try:
                quant_pre_process_no_cwd(str(src), str(pre))
                src = pre
            except Exception as e:  # noqa: BLE001 - onnxruntime raises its own types; pre-processing is optional
                if warnings is not None:
                    msg = first_line(e)
                    warnings.append(f"onnx int8: quantized without onnxruntime's pre-processing ({msg})")
        padded = onnx.load(str(src))
        if pad_depthwise_channels(padded):  # exact in float; checked anyway
            if guard.same_as_float(padded, warnings, "depthwise channel padding"):
                src = Path(tmp, "padded.onnx")
                src.write_bytes(padded.SerializeToString())
        keep_float = _float_output_nodes(src) if FLOAT_OUTPUT_SOFTMAX else []
        if float_first_block:
            prepared = onnx.load(str(src))
            first = float_first_block_nodes(prepared)
            if first:
                src = Path(tmp, "prepared.onnx")
                src.write_bytes(prepared.SerializeToString())
                keep_float += first
            elif warnings is not None:
                warnings.append("onnx int8: no stem + inverted-residual first block found; quantized all of it")
        try:
            quantize_static(str(src), str(out), _reader(x, inp.name, batch), quant_format=QuantFormat.QDQ,
                            per_channel=True, activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8,
                            calibrate_method=CalibrationMethod.MinMax, nodes_to_exclude=keep_float or None,
                            extra_options={"WeightSymmetric": True, "ActivationSymmetric": False})
        except Exception as e:  # onnxruntime raises its own types
            raise EdgeconvError(f"onnxruntime cannot quantize the ONNX model to int8: "
                                f"{first_line(e)}") from None
        quantized = onnx.load(str(out))
    for rewrite, what in ((hard_sigmoid_to_add, "hard-sigmoid -> integer Add rewrite"),
                          (fold_input_affine, "input rescaling fold")):
        quantized = guard.apply(quantized, rewrite, what, warnings)
    return quantized.SerializeToString(deterministic=True)


#: Softmax nodes that write a graph output stay float: quantized, their uint8 output has a step of 1/256, so every
#: probability below 0.002 becomes 0 (most of a 1000-class output) for ~no time saved (1000 values).
FLOAT_OUTPUT_SOFTMAX = True


def _float_output_nodes(path: Path) -> list[str]:
    """Names of the Softmax / LogSoftmax nodes writing graph outputs of the model at ``path`` (named if unnamed)."""
    import onnx

    model = onnx.load(str(path))
    outs = {o.name for o in model.graph.output}
    nodes = [n for n in model.graph.node if n.op_type in ("Softmax", "LogSoftmax") and n.output[0] in outs]
    if any(not n.name for n in nodes):
        taken = {n.name for n in model.graph.node}
        for i, n in enumerate(nodes):
            if not n.name:
                n.name = next(f"output_softmax_{i}_{k}" for k in range(len(taken) + 1)
                              if f"output_softmax_{i}_{k}" not in taken)
        onnx.save(model, str(path))
    return [n.name for n in nodes]


GUARD_SAMPLES = 8  # calibration inputs the QDQ rewrites are checked on
GUARD_DB = 1.0  # a rewrite may not lower the SQNR vs the float model by more than this


class _Guard:
    """Keeps a QDQ rewrite only if onnxruntime's outputs on a few calibration inputs stay as close to the float
    model's (SQNR over all outputs) as without it, within :data:`GUARD_DB`, and the rewritten graph loads."""

    def __init__(self, fp32_bytes: bytes, x: np.ndarray, input_name: str):
        self.x, self.input_name = x, input_name
        self.ref = self._run(fp32_bytes)
        self._score = None

    def _run(self, model_bytes: bytes):
        import onnxruntime as ort

        so = ort.SessionOptions()
        so.intra_op_num_threads, so.inter_op_num_threads, so.log_severity_level = 1, 1, 3
        sess = ort.InferenceSession(model_bytes, sess_options=so, providers=["CPUExecutionProvider"])
        fixed = sess.get_inputs()[0].shape[0]
        step = fixed if isinstance(fixed, int) and fixed > 0 else len(self.x)
        outs = [sess.run(None, {self.input_name: np.ascontiguousarray(self.x[i:i + step])})
                for i in range(0, len(self.x), step)]
        return np.concatenate([np.concatenate([np.ravel(o[k]) for o in outs]) for k in range(len(outs[0]))])

    def _sqnr(self, got) -> float:
        from edgeconv.verify.compare import sqnr_db

        return sqnr_db(self.ref, got) if got.shape == self.ref.shape else -np.inf

    def same_as_float(self, model, warnings, what: str) -> bool:
        """A float rewrite is kept only if the outputs move by at most PARITY_ATOL (relative, as onnx_export)."""
        from edgeconv.onnx.convert import PARITY_ATOL

        why = "its outputs have other shapes"
        try:
            got = self._run(model.SerializeToString())
        except Exception as e:  # noqa: BLE001 - onnxruntime raises its own types
            got, why = None, f"{type(e).__name__}: {str(e).strip()[:120]}"
        if got is not None and got.shape == self.ref.shape:
            diff = float(np.max(np.abs(got - self.ref)) / max(1.0, float(np.max(np.abs(self.ref)))))
            if diff <= PARITY_ATOL:
                return True
            why = f"outputs would move by {diff:.2e}"
        if warnings is not None:
            warnings.append(f"onnx int8: {what} not applied ({why})")
        return False

    def apply(self, model, rewrite, what: str, warnings):
        import onnx

        candidate = onnx.ModelProto()
        candidate.CopyFrom(model)
        try:
            if not rewrite(candidate):
                return model
            new_score = self._sqnr(self._run(candidate.SerializeToString()))
        except Exception as e:  # noqa: BLE001 - onnx / onnxruntime raise their own types
            if warnings is not None:
                warnings.append(f"onnx int8: {what} not applied ({type(e).__name__}: {str(e).strip()[:120]})")
            return model
        if self._score is None:
            self._score = self._sqnr(self._run(model.SerializeToString()))
        if not new_score >= self._score - GUARD_DB:
            if warnings is not None:
                warnings.append(f"onnx int8: {what} not applied (SQNR vs float {new_score:.1f} dB < "
                                f"{self._score:.1f} dB without it)")
            return model
        self._score = new_score
        return candidate
