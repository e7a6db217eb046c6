"""Verified .tflite rewrites that keep int8 models on XNNPACK's fast path.

Measured (``edgeconv inspect``, LiteRT 2.3): XNNPACK's delegate takes every op of an int8 MobileNetV3 except
``HARD_SWISH`` (and the final ``SOFTMAX``). Each int8 h-swish therefore runs on TFLite's own kernel and splits the
graph into one more XNNPACK partition; on keras.applications MobileNetV3Small 224x224 that is what makes int8
slower than fp32 (see ``docs/int8_speed.md``). :func:`decompose_hard_swish` replaces every ``HARD_SWISH`` by the
three ops it is made of, all of which XNNPACK runs in int8::

    t = ADD(x, 3) with fused RELU6      # relu6(x + 3), quantized on [0, 6]
    u = MUL(t, 1/6)                     # hard-sigmoid, quantized on [0, 1]
    y = MUL(x, u)                       # h-swish, with the original output tensor (same quantization)

The consumers still read the original output tensor, so nothing else changes. Quantized intermediates use fixed,
exact ranges (hard-sigmoid is bounded), so no calibration is needed; the constants 3 and 1/6 are stored exactly
representable (value 127 with scale 3/127, 1/6/127). Float models can be rewritten the same way (the parity tests
use it), but fp32 XNNPACK already runs ``HARD_SWISH`` natively, so export only rewrites int8.

The rewrite edits the FlatBuffer with TensorFlow's ``schema_py_generated`` object API. Export keeps its result only
if its SQNR against Keras on calibration inputs stays within 3 dB of the converter's int8 (:func:`check_parity`,
:mod:`edgeconv.pipeline.phone_ready`) and then validates it against Keras as usual.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from edgeconv.tflite.introspect import builtin_code

__all__ = ["decompose_hard_swish", "RewriteResult", "check_parity"]

# XNNPACK's delegate declines a quantized ADD whose input/output scale ratio is outside [1/1024, 256) and a MUL whose
# input1 * input2 / output scale ratio is outside [1/65536, 256) (measured: ADDs with ratio 7.5e-5 stay on TFLite's
# kernel). Such an h-swish is left as HARD_SWISH: rewriting it would only trade one slow op for another.
ADD_SCALE_RATIO = (1.0 / 1024, 256.0)
MUL_SCALE_RATIO = (1.0 / 65536, 256.0)
T_SCALE, U_SCALE = 6.0 / 255, 1.0 / 255  # relu6(x + 3) on [0, 6] and hard-sigmoid on [0, 1], zero point -128


def _xnnpack_friendly(sx: float, sy: float) -> bool:
    lo, hi = ADD_SCALE_RATIO
    mlo, mhi = MUL_SCALE_RATIO
    return lo <= sx / T_SCALE < hi and mlo <= sx * U_SCALE / sy < mhi


@dataclass
class RewriteResult:
    model_bytes: bytes
    rewritten: int  # number of HARD_SWISH ops replaced
    dtype: str  # "int8" | "float32" | "" when nothing was rewritten

    def to_dict(self) -> dict:
        return {"decompose_hard_swish": self.rewritten, "dtype": self.dtype}


def _opcode_index(model, schema, builtin: int, version: int) -> int:
    for i, oc in enumerate(model.operatorCodes):
        if builtin_code(oc) == builtin and (oc.customCode in (None, b"", "")):
            oc.version = max(int(oc.version), version)
            return i
    oc = schema.OperatorCodeT()
    oc.builtinCode = builtin
    oc.deprecatedBuiltinCode = min(builtin, 127)
    oc.version = version
    model.operatorCodes.append(oc)
    return len(model.operatorCodes) - 1


def _add_buffer(model, schema, data: np.ndarray) -> int:
    b = schema.BufferT()
    b.data = np.frombuffer(np.ascontiguousarray(data).tobytes(), np.uint8)
    model.buffers.append(b)
    return len(model.buffers) - 1


def _add_tensor(model, sg, schema, name: str, shape, ttype: int, quant: tuple | None = None,
                data: np.ndarray | None = None) -> int:
    t = schema.TensorT()
    t.name = name
    t.shape = np.asarray(shape, np.int32)
    t.type = ttype
    t.buffer = _add_buffer(model, schema, data) if data is not None else 0
    if quant is not None:
        q = schema.QuantizationParametersT()
        q.scale = np.asarray([quant[0]], np.float32)
        q.zeroPoint = np.asarray([quant[1]], np.int64)
        t.quantization = q
    sg.tensors.append(t)
    return len(sg.tensors) - 1


def _binary(schema, opcode: int, inputs, outputs, add: bool, relu6: bool = False):
    op = schema.OperatorT()
    op.opcodeIndex = opcode
    op.inputs = np.asarray(inputs, np.int32)
    op.outputs = np.asarray(outputs, np.int32)
    opts = schema.AddOptionsT() if add else schema.MulOptionsT()
    opts.fusedActivationFunction = schema.ActivationFunctionType.RELU6 if relu6 else \
        schema.ActivationFunctionType.NONE
    op.builtinOptions = opts
    op.builtinOptionsType = schema.BuiltinOptions.AddOptions if add else schema.BuiltinOptions.MulOptions
    return op


def decompose_hard_swish(data: bytes, dtypes=("int8",)) -> RewriteResult:
    """Replace every ``HARD_SWISH`` whose activations are one of ``dtypes`` ("int8", "float32") by ADD/MUL/MUL."""
    from tensorflow.lite.python import schema_py_generated as schema

    from edgeconv.tflite.introspect import read_model_object

    model = read_model_object(data)
    tt = schema.TensorType
    want = {"int8": tt.INT8, "float32": tt.FLOAT32}
    want_types = {want[d] for d in dtypes}
    hs_codes = {i for i, oc in enumerate(model.operatorCodes)
                if builtin_code(oc) == schema.BuiltinOperator.HARD_SWISH}
    if not hs_codes:
        return RewriteResult(bytes(data), 0, "")
    count, kind = 0, ""
    add_code = mul_code = None
    for sg in model.subgraphs:
        new_ops = []
        for op in sg.operators:
            if op.opcodeIndex not in hs_codes:
                new_ops.append(op)
                continue
            x, y = int(op.inputs[0]), int(op.outputs[0])
            tx, ty = sg.tensors[x], sg.tensors[y]
            if tx.type not in want_types or ty.type != tx.type:
                new_ops.append(op)
                continue
            quantized = tx.type == tt.INT8
            if quantized and not _xnnpack_friendly(float(tx.quantization.scale[0]), float(ty.quantization.scale[0])):
                new_ops.append(op)
                continue
            version = 2 if quantized else 1
            if add_code is None:
                add_code = _opcode_index(model, schema, schema.BuiltinOperator.ADD, version)
                mul_code = _opcode_index(model, schema, schema.BuiltinOperator.MUL, version)
            base = _name(ty.name) + "/decomposed"
            shape = list(ty.shape)
            if quantized:
                c3 = _add_tensor(model, sg, schema, base + "/three", [], tt.INT8, (3.0 / 127, 0),
                                 np.asarray(127, np.int8))
                c6 = _add_tensor(model, sg, schema, base + "/one_sixth", [], tt.INT8, ((1.0 / 6.0) / 127, 0),
                                 np.asarray(127, np.int8))
                t = _add_tensor(model, sg, schema, base + "/relu6", shape, tt.INT8, (T_SCALE, -128))
                u = _add_tensor(model, sg, schema, base + "/hard_sigmoid", shape, tt.INT8, (U_SCALE, -128))
            else:
                c3 = _add_tensor(model, sg, schema, base + "/three", [], tt.FLOAT32, None, np.asarray(3.0, np.float32))
                c6 = _add_tensor(model, sg, schema, base + "/one_sixth", [], tt.FLOAT32, None,
                                 np.asarray(1.0 / 6.0, np.float32))
                t = _add_tensor(model, sg, schema, base + "/relu6", shape, tt.FLOAT32)
                u = _add_tensor(model, sg, schema, base + "/hard_sigmoid", shape, tt.FLOAT32)
            new_ops += [_binary(schema, add_code, [x, c3], [t], add=True, relu6=True),
                        _binary(schema, mul_code, [t, c6], [u], add=False),
                        _binary(schema, mul_code, [x, u], [y], add=False)]
            count += 1
            kind = "int8" if quantized else "float32"
        sg.operators = new_ops
    if not count:
        return RewriteResult(bytes(data), 0, "")
    from tensorflow.lite.tools import flatbuffer_utils

    return RewriteResult(bytes(flatbuffer_utils.convert_object_to_bytearray(model)), count, kind)


def _name(n) -> str:
    return n.decode("utf-8") if isinstance(n, (bytes, bytearray)) else str(n)


def check_parity(before: bytes, after: bytes, x: np.ndarray, reference=None,
                 output_names: list[str] | None = None) -> dict:
    """Run both models (LiteRT, XNNPACK) on float model inputs ``x``: max abs difference of the (dequantized)
    outputs, in absolute terms and in output quantization steps (the worst output), top-1 agreement of the first
    output, and with ``reference`` (the Keras outputs for ``x``: one array, or one per output in the order of
    ``output_names``) the SQNR of each model against it (the worst output's)."""
    from edgeconv.verify.compare import sqnr_db
    from edgeconv.runtime.runners import LiteRTRunner

    a, b = LiteRTRunner(before, output_names=output_names), LiteRTRunner(after, output_names=output_names)
    ya, yb = a.run(x), b.run(x)
    diffs = [float(np.max(np.abs(p - q))) if p.size else 0.0 for p, q in zip(ya, yb)]
    steps = [d / o.scale if o.scale else None for d, o in zip(diffs, a.outputs)]
    res = {"samples": int(len(x)), "max_abs": max(diffs),
           "steps": None if None in steps else max(steps),
           "top1_agreement": float(np.mean(np.argmax(ya[0].reshape(len(x), -1), 1) ==
                                           np.argmax(yb[0].reshape(len(x), -1), 1)))}
    if reference is not None:
        refs = [reference] if isinstance(reference, np.ndarray) else list(reference)
        # clipped to +-200 dB so identical outputs (inf) stay comparable and JSON-safe in the manifest
        for key, ys in (("sqnr_before_db", ya), ("sqnr_after_db", yb)):
            res[key] = round(float(np.clip(min(sqnr_db(r, y) for r, y in zip(refs, ys)), -200, 200)), 2)
    return res


NOT_UINT8 = "the input is not uint8"


@dataclass(frozen=True)
class PixelInput:
    """The result of :func:`uint8_input_as_pixels`: the new input quantization, or why it could not be set."""

    model_bytes: bytes
    scale: float | None = None
    zero_point: int | None = None
    error_levels: float | None = None  # max |(p - zp) * scale - preprocess(p)| over p in 0..255, in pixel levels
    reason: str | None = None  # why the input was left as the converter wrote it

    def to_dict(self) -> dict:
        return {k: v for k, v in (("scale", self.scale), ("zero_point", self.zero_point),
                                  ("error_levels", self.error_levels), ("reason", self.reason)) if v is not None}


def uint8_input_as_pixels(data: bytes, preprocessing) -> PixelInput:
    """Make a uint8 input's raw value *be* the pixel: set its quantization to the model's preprocessing.

    Why: MediaPipe Tasks (and TFLite's Android Task Library) copy raw 0..255 pixels into a uint8 input and ignore
    both the normalization metadata and the tensor's quantization (measured with MediaPipe 1.2.3). The converter
    gives the input the scale / zero point of the calibration inputs' range, which equals the pixel mapping only if
    calibration happened to span exactly 0..255. The preprocessing ``input = (pixel * s - mean) / std`` with one
    mean and std for all channels is the affine map ``(q - mean / s) * (s / std)``: scale ``s / std`` and zero point
    ``round(mean / s)``. The converter's uint8 input only feeds QUANTIZE ops (uint8 -> the int8 scale of the first
    layer), which requantize with whatever the input's parameters say, so the graph computes the same function on
    pixels; values the calibration range did not cover saturate in the QUANTIZE op as they would have before.
    Per-channel mean / std and BGR order have no per-tensor equivalent: the input is left alone with a ``reason``.
    Validation then runs the file like any other (its runner quantizes float inputs with these parameters).
    """
    from tensorflow.lite.tools import flatbuffer_utils

    from edgeconv.tflite.introspect import read_model_object

    pre = preprocessing
    if pre.bgr:
        return PixelInput(data, reason="the model expects BGR pixels: a uint8 input cannot reverse the channels")
    means, stds = set(pre.mean), set(pre.std)
    if len(means) > 1 or len(stds) > 1:
        return PixelInput(data, reason="per-channel mean/std cannot be one per-tensor input quantization")
    mean, std, s = float(pre.mean[0]), float(pre.std[0]), float(pre.scale)
    scale, zp = s / std, int(round(mean / s))
    if not 0 <= zp <= 255:
        return PixelInput(data, reason=f"zero point {zp} of the pixel mapping is outside 0..255")
    model = read_model_object(data)
    sg = model.subgraphs[0]
    tensor = sg.tensors[sg.inputs[0]]
    schema = _schema()
    if tensor.type != schema.TensorType.UINT8:
        return PixelInput(data, reason=NOT_UINT8)
    consumers = [op for op in sg.operators if sg.inputs[0] in list(op.inputs)]
    codes = [builtin_code(model.operatorCodes[op.opcodeIndex]) for op in consumers]
    if not consumers or any(c != schema.BuiltinOperator.QUANTIZE for c in codes):
        return PixelInput(data, reason="the uint8 input feeds ops other than QUANTIZE")
    tensor.quantization.scale = np.array([scale], np.float32)
    tensor.quantization.zeroPoint = np.array([zp], np.int64)
    p = np.arange(256, dtype=np.float64)
    err = float(np.max(np.abs((p - zp) * np.float32(scale) - (p * s - mean) / std)) / abs(scale))
    return PixelInput(bytes(flatbuffer_utils.convert_object_to_bytearray(model)), float(np.float32(scale)), zp,
                      round(err, 4))


def _schema():
    from tensorflow.lite.python import schema_py_generated as schema

    return schema
