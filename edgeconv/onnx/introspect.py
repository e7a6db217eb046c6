"""What an .onnx holds: I/O specs (through onnxruntime) and the op histogram (for the manifest)."""
from __future__ import annotations

from collections import Counter
from pathlib import Path

__all__ = ["onnx_details", "onnx_opset"]


def onnx_details(model: bytes | str | Path, layout: str = "nhwc") -> dict:
    import onnx

    from edgeconv.runtime.runners import OnnxRunner

    r = OnnxRunner(model, layout=layout)
    proto = onnx.load_from_string(model) if isinstance(model, (bytes, bytearray)) else onnx.load(str(model))
    ops = Counter(n.op_type for n in proto.graph.node)
    return {"inputs": [s.to_dict() for s in r.inputs], "outputs": [s.to_dict() for s in r.outputs],
            "ops": dict(sorted(ops.items()))}


def onnx_opset(model) -> int | None:
    """The default-domain (``ai.onnx``) opset of a ``ModelProto``; None when it declares none."""
    return next((o.version for o in model.opset_import if o.domain in ("", "ai.onnx")), None)
