"""float16 weights from the export's float .tflite, without a second graph conversion.

TF's converter writes an fp16 file as its fp32 graph with every float32 constant stored as float16 and one
DEQUANTIZE op (float16 -> float32, op version 3) per constant at the head of the graph; LiteRT's XNNPACK folds those
into its weights at load time and computes in fp32, the GPU delegate computes in fp16. :func:`float16_weights` makes
that file from the fp32 flatbuffer in a fraction of a second, where the converter runs a whole graph conversion again
(~3 s for MobileNetV3-Small at 224x224). Same ops, same float16 values (IEEE round-to-nearest-even, as the converter
rounds), so the same outputs: tests/test_float16.py compares it with the converter's fp16 output for output, and
every export validates it against Keras like any artifact.
"""
from __future__ import annotations

import numpy as np

from edgeconv.errors import EdgeconvError

__all__ = ["float16_weights"]


def float16_weights(float_model: bytes) -> bytes:
    """The fp16-weights .tflite of ``float_model`` (the fp32 .tflite as the converter wrote it)."""
    from ai_edge_litert import schema_py_generated as schema
    import flatbuffers

    from edgeconv.tflite.calibrate import _with_conversion_metadata
    from edgeconv.tflite.introspect import tensor_name

    m = schema.ModelT.InitFromObj(schema.Model.GetRootAsModel(float_model, 0))
    if len(m.subgraphs) != 1 or any(getattr(b, "offset", 0) for b in m.buffers):
        raise EdgeconvError("float16 weights: only single-subgraph models with inline buffers")
    dq = schema.BuiltinOperator.DEQUANTIZE
    code = schema.OperatorCodeT()
    code.builtinCode, code.deprecatedBuiltinCode, code.version = dq, dq, 3  # version 3: float16 input
    m.operatorCodes = [code] + list(m.operatorCodes)  # first, as the converter lists it
    sg = m.subgraphs[0]
    for op in sg.operators:
        op.opcodeIndex += 1
    halves: dict[int, int] = {}  # float32 buffer -> its float16 buffer (deduplicated buffers stay shared)
    head = []
    for i, t in enumerate(list(sg.tensors)):
        data = m.buffers[t.buffer].data if t.buffer < len(m.buffers) else None
        if t.type != schema.TensorType.FLOAT32 or data is None or len(data) == 0:
            continue
        if t.buffer not in halves:
            b = schema.BufferT()
            b.data = np.frombuffer(np.frombuffer(bytes(np.asarray(data, np.uint8)), np.float32)
                                   .astype(np.float16).tobytes(), np.uint8)
            m.buffers.append(b)
            halves[t.buffer] = len(m.buffers) - 1
        half = schema.TensorT()
        half.shape, half.type, half.buffer = t.shape, schema.TensorType.FLOAT16, halves[t.buffer]
        half.name = tensor_name(t) + "_fp16"
        sg.tensors.append(half)
        t.buffer = 0  # the converter's empty buffer: the tensor is now DEQUANTIZE's output
        op = schema.OperatorT()
        op.opcodeIndex, op.inputs, op.outputs = 0, [len(sg.tensors) - 1], [i]
        head.append(op)
    sg.operators = head + list(sg.operators)
    used = {t.buffer for t in sg.tensors} | {e.buffer for e in m.metadata or []}
    for k in halves:  # the float32 copies are gone from the file, their slots stay (indices do not move)
        if k not in used:
            m.buffers[k].data = None
    b = flatbuffers.Builder(len(float_model))
    b.Finish(m.Pack(b), file_identifier=b"TFL3")
    return _with_conversion_metadata(bytes(b.Output()), float_model, mode="PTQ_FLOAT16")
