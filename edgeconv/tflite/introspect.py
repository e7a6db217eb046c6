"""What a .tflite holds, read with the LiteRT interpreter: I/O specs with quantization, op and tensor-type
histograms (for the manifest; :mod:`edgeconv.inspect` builds the full report on top)."""
from __future__ import annotations

from collections import Counter
from pathlib import Path

__all__ = ["tflite_details"]


def tflite_details(model: bytes | str | Path) -> dict:
    """Inputs/outputs (with quantization) and the op histogram of a .tflite, read with the LiteRT interpreter."""
    from edgeconv.runtime.runners import LiteRTRunner

    r = LiteRTRunner(model, xnnpack=False)
    ops = Counter(op["op_name"] for op in r.ops())
    tensor_types = Counter(np_name for np_name in (str(t["dtype"].__name__) for t in r.tensors()))
    return {"inputs": [s.to_dict() for s in r.inputs], "outputs": [s.to_dict() for s in r.outputs],
            "ops": dict(sorted(ops.items())), "tensor_types": dict(sorted(tensor_types.items()))}
