"""Cross-layer equalization: per-channel rescaling of a float .tflite so that int8's per-tensor activation ranges fit
every channel, with the same float function (Nagel et al. 2019, "Data-Free Quantization", adapted to TFLite's
per-channel int8 weights and measured activation ranges).

A CONV_2D / DEPTHWISE_CONV_2D with a fused NONE, RELU or RELU6 whose output reaches, through zero PADs only, the data
input of a CONV_2D / DEPTHWISE_CONV_2D (and nothing else) is a pair. Scaling output channel ``c`` of the first op
(its weights and bias) by ``s_c > 0`` and dividing input channel ``c`` of the second op's weights by ``s_c`` leaves
the pair's result unchanged (ReLU and zero padding commute with a positive scale), but the tensor between them is
quantized with one scale for all channels: a channel whose values span 1/30 of the tensor's range gets ~8 of its
255 levels. :func:`equalize` measures each channel's largest magnitude ``r_c`` on the calibration inputs (LiteRT,
every such tensor read as a model output) and, with ``R = max_c r_c``:

- into a DEPTHWISE_CONV_2D (per-channel weights on both sides: the rescale costs the weights nothing) it stretches
  every channel to the full range, ``s_c = R / r_c``;
- into a CONV_2D (its int8 weights are per *output* channel, so an input channel divided by ``s_c`` loses weight
  precision in every row) it goes half way in log scale, ``s_c = sqrt(R / r_c)``: activation and weight rounding
  balanced.

``s_c >= 1`` always (capped at :data:`MAX_SCALE`), so a RELU6 clip is never reached on the calibration inputs; on other
inputs the float clip sits at or above the int8 range's own clip (``6 / s_c >= R / s_c``), so the quantized model
loses nothing the plain int8 would keep except the headroom above channel ``c``'s calibrated ``r_c`` (its values
beyond ``R / s_c`` are clipped; the plain int8 clips them at ``R``).

Measured (``benchmarks/quant_quality.py`` fixtures, 200 calibration digits, logits SQNR against the float model on
the two halves of the 397 held-out digits): MobileNetV1 20.9 / 20.8 -> 22.0 / 22.1 dB; within +-1 dB elsewhere
(MobileNetV2 24.9 / 25.8 -> 24.8 / 24.8, MobileNetV3-Small 27.6 / 27.5 -> 27.8 / 27.0, MobileNetV3-Large 25.0 / 22.9
-> 24.9 / 22.7, EfficientNet-B0 18.1 / 17.8 -> 18.0 / 17.3 with 6 pairs: swish is not scale-equivariant, ResNet-18
35.3 / 34.4 -> 35.7 / 34.3). With per-channel weights, what CLE fixes is narrow channels in the per-tensor
activations, which only MobileNetV1's plain depthwise-separable stack has in numbers. It is therefore not the
default: it is one of the candidates :class:`edgeconv.tflite.calibrate.Calibrated` offers (``stats="cle"``) that
``--fallback auto`` keeps only when the export's validation data says it helps.
"""
from __future__ import annotations

import numpy as np

__all__ = ["equalize", "MAX_SCALE"]

MAX_SCALE = 1000.0  # a near-dead channel is stretched at most this much (its weights stay representable)
_PAIR_OPS = ("CONV_2D", "DEPTHWISE_CONV_2D")


def _pairs(m, schema) -> list[tuple[int, int, int, str, str]]:
    """(first op, second op, tensor between them, first op's kind, second op's kind) for every equalizable pair."""
    from edgeconv.tflite.introspect import builtin_code

    code_name = {v: k for k, v in vars(schema.BuiltinOperator).items() if not k.startswith("_")}
    act = schema.ActivationFunctionType
    sg = m.subgraphs[0]

    def kind(op):
        return code_name.get(builtin_code(m.operatorCodes[op.opcodeIndex]))

    def const_float(t: int) -> bool:
        buf = m.buffers[sg.tensors[t].buffer].data
        return sg.tensors[t].type == schema.TensorType.FLOAT32 and buf is not None and len(buf) > 0

    readers: dict[int, list[int]] = {}
    for i, op in enumerate(sg.operators):
        for t in op.inputs:
            if t >= 0:
                readers.setdefault(int(t), []).append(i)
    outputs = {int(t) for t in sg.outputs}
    pairs = []
    for i, op in enumerate(sg.operators):
        k1 = kind(op)
        if k1 not in _PAIR_OPS or op.builtinOptions.fusedActivationFunction not in (act.NONE, act.RELU, act.RELU6):
            continue
        first = t = int(op.outputs[0])
        j = None
        while t not in outputs and len(readers.get(t, [])) == 1 and int(sg.operators[readers[t][0]].inputs[0]) == t:
            nxt = sg.operators[readers[t][0]]
            if kind(nxt) == "PAD" and len(nxt.inputs) == 2:  # zero padding commutes with the scale
                t = int(nxt.outputs[0])
                continue
            if kind(nxt) in _PAIR_OPS:
                j = readers[t][0]
            break
        if j is None or sg.tensors[first].type != schema.TensorType.FLOAT32:
            continue
        op2 = sg.operators[j]
        w1, w2 = int(op.inputs[1]), int(op2.inputs[1])
        bias = [int(op.inputs[2])] if len(op.inputs) > 2 and op.inputs[2] >= 0 else []
        if not all(const_float(w) and len(readers[w]) == 1 for w in [w1, w2, *bias]):
            continue  # weights computed at run time, stored outside the flatbuffer, or shared with another op
        if int(sg.tensors[w2].shape[-1]) != int(sg.tensors[first].shape[-1]):
            continue  # a grouped conv or a depth multiplier > 1
        pairs.append((i, j, first, k1, kind(op2)))
    return pairs


def _channel_peaks(model: bytes, names: set[str], x: np.ndarray) -> dict[str, np.ndarray]:
    """{tensor name: largest |value| per channel (last axis) over every input of ``x``}."""
    from edgeconv.runtime.runners import TensorProbe

    peaks: dict[str, np.ndarray] = {}
    for got in TensorProbe(model, names).run(x):
        for n, v in got.items():
            p = np.abs(v.reshape(-1, v.shape[-1])).max(0)
            peaks[n] = p if n not in peaks else np.maximum(peaks[n], p)
    return peaks


def equalize(model: bytes, calibration_x: np.ndarray) -> tuple[bytes, int]:
    """``model`` (a float .tflite) with every pair equalized on ``calibration_x``, and the number of pairs. A model
    with several subgraphs, or without a pair, is returned as it is."""
    import flatbuffers
    from ai_edge_litert import schema_py_generated as schema

    from edgeconv.tflite.introspect import tensor_name

    m = schema.ModelT.InitFromObj(schema.Model.GetRootAsModel(model, 0))
    if len(m.subgraphs) != 1:
        return model, 0
    sg = m.subgraphs[0]
    pairs = {tensor_name(sg.tensors[p[2]]): p for p in _pairs(m, schema)}
    if not pairs:
        return model, 0
    peaks = _channel_peaks(model, set(pairs), np.asarray(calibration_x, np.float32))
    owners: dict[int, int] = {}
    for t in sg.tensors:
        owners[t.buffer] = owners.get(t.buffer, 0) + 1

    def rescale(t: int, per_channel: np.ndarray, axis: int) -> None:
        tensor = sg.tensors[t]
        w = np.frombuffer(m.buffers[tensor.buffer].data.tobytes(), np.float32).reshape(list(tensor.shape))
        shape = [1] * w.ndim
        shape[axis] = -1
        data = np.ascontiguousarray(w * per_channel.reshape(shape).astype(np.float32), np.float32)
        if owners[tensor.buffer] > 1:  # a deduplicated buffer another tensor still reads: give this one its own
            owners[tensor.buffer] -= 1
            m.buffers.append(schema.BufferT())
            tensor.buffer = len(m.buffers) - 1
            owners[tensor.buffer] = 1
        m.buffers[tensor.buffer].data = np.frombuffer(data.tobytes(), np.uint8)

    done = 0
    for name, (i, j, _, k1, k2) in pairs.items():
        r = peaks.get(name)
        if r is None or not np.all(np.isfinite(r)) or float(r.max()) <= 0:
            continue
        peak = float(r.max())
        s = np.where(r > 0, np.clip(peak / np.maximum(r, peak / MAX_SCALE), 1.0, MAX_SCALE), 1.0)  # dead: as it is
        if k2 == "CONV_2D":
            s = np.sqrt(s)
        s = s.astype(np.float32)
        op1, op2 = sg.operators[i], sg.operators[j]
        rescale(int(op1.inputs[1]), s, 0 if k1 == "CONV_2D" else -1)  # CONV_2D: [O, H, W, I]; depthwise: [1, H, W, C]
        if len(op1.inputs) > 2 and op1.inputs[2] >= 0:
            rescale(int(op1.inputs[2]), s, 0)
        rescale(int(op2.inputs[1]), 1.0 / s, -1)
        done += 1
    b = flatbuffers.Builder(len(model) + 1024)
    b.Finish(m.Pack(b), file_identifier=b"TFL3")
    return bytes(b.Output()), done
