"""What a .tflite holds, read with the LiteRT interpreter: I/O specs with quantization, op and tensor-type
histograms (for the manifest; :mod:`edgeconv.inspect` builds the full report on top)."""
from __future__ import annotations

from collections import Counter
from pathlib import Path

from edgeconv.errors import EdgeconvError, first_line

__all__ = ["tflite_details", "read_model_object", "tensor_name", "builtin_code"]


def read_model_object(data: bytes):
    """The ``schema_py_generated.ModelT`` object of a .tflite (TensorFlow's own FlatBuffer object API): what the
    verified rewrites edit and what edgeconv's JSON metadata is embedded into."""
    from tensorflow.lite.tools import flatbuffer_utils

    try:
        return flatbuffer_utils.read_model_from_bytearray(bytearray(data))
    except Exception as e:  # noqa: BLE001 (flatbuffers raises plain exceptions on garbage)
        raise EdgeconvError(f"not a valid .tflite FlatBuffer: {first_line(e)}") from None


def tensor_name(t) -> str:
    """A schema ``TensorT``'s name as text (the object API keeps it as bytes)."""
    return t.name.decode() if isinstance(t.name, bytes) else t.name


def builtin_code(opcode) -> int:
    """A schema ``OperatorCodeT``'s builtin operator (codes >= 127 live only in ``builtinCode``, older files keep
    theirs only in ``deprecatedBuiltinCode``)."""
    return max(int(opcode.builtinCode), int(opcode.deprecatedBuiltinCode))


def tflite_details(model: bytes | str | Path) -> dict:
    """Inputs/outputs (with quantization) and the op histogram of a .tflite, read with the LiteRT interpreter."""
    from edgeconv.runtime.runners import LiteRTRunner

    r = LiteRTRunner(model, xnnpack=False)
    ops = Counter(op["op_name"] for op in r.ops())
    tensor_types = Counter(np_name for np_name in (str(t["dtype"].__name__) for t in r.tensors()))
    return {"inputs": [s.to_dict() for s in r.inputs], "outputs": [s.to_dict() for s in r.outputs],
            "ops": dict(sorted(ops.items())), "tensor_types": dict(sorted(tensor_types.items()))}
