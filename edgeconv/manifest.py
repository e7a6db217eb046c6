"""manifest.json: what was exported, from what, with which tools; sha256 + io specs of every artifact."""
from __future__ import annotations

import json
import platform
from collections import Counter
from dataclasses import asdict, dataclass, field
from pathlib import Path

from . import __version__
from .errors import EdgeconvError

MANIFEST = "manifest.json"


@dataclass
class ArtifactRecord:
    file: str
    format: str  # "tflite" | "onnx"
    precision: str  # "fp32" | "fp16" | "dynamic" | "int8" | "int16x8"
    key: str  # precisions.PRECISIONS key
    sha256: str
    bytes: int
    inputs: list[dict]
    outputs: list[dict]
    layout: str = "nhwc"
    opset: int | None = None
    extra: dict = field(default_factory=dict)

    def to_dict(self) -> dict:
        d = asdict(self)
        if d["opset"] is None:
            del d["opset"]
        return d


@dataclass
class Manifest:
    model: dict
    reference: dict
    preprocessing: dict
    calibration: dict | None
    options: dict
    artifacts: list[ArtifactRecord]
    tools: dict
    command: str
    edgeconv_version: str = __version__

    def to_dict(self) -> dict:
        return {
            "edgeconv_version": self.edgeconv_version,
            "model": self.model,
            "reference": self.reference,
            "preprocessing": self.preprocessing,
            "calibration": self.calibration,
            "options": self.options,
            "artifacts": [a.to_dict() for a in self.artifacts],
            "tools": self.tools,
            "command": self.command,
        }

    def artifact(self, file: str) -> ArtifactRecord:
        for a in self.artifacts:
            if a.file == file:
                return a
        raise EdgeconvError(f"{file} is not listed in the manifest")

    @classmethod
    def from_dict(cls, d: dict) -> "Manifest":
        return cls(model=d["model"], reference=d["reference"], preprocessing=d["preprocessing"],
                   calibration=d.get("calibration"), options=d.get("options", {}),
                   artifacts=[ArtifactRecord(**a) for a in d["artifacts"]], tools=d.get("tools", {}),
                   command=d.get("command", ""), edgeconv_version=d.get("edgeconv_version", "?"))

    @classmethod
    def load(cls, folder: str | Path) -> "Manifest":
        path = Path(folder) / MANIFEST
        if not path.exists():
            raise EdgeconvError(f"{folder} has no {MANIFEST}: not an edgeconv artifact folder")
        try:
            return cls.from_dict(json.loads(path.read_text()))
        except (json.JSONDecodeError, KeyError, TypeError) as e:
            raise EdgeconvError(f"{path} is not a valid edgeconv manifest: {e}") from None


def tflite_details(model: bytes | str | Path) -> dict:
    """Inputs/outputs (with quantization) and the op histogram of a .tflite, read with the LiteRT interpreter."""
    from .runners import LiteRTRunner

    r = LiteRTRunner(model, xnnpack=False)
    ops = Counter(op["op_name"] for op in r.interpreter._get_ops_details())  # noqa: SLF001 (LiteRT's only op list)
    tensor_types = Counter(np_name for np_name in (str(t["dtype"].__name__) for t in r.interpreter.get_tensor_details()))
    return {"inputs": [s.to_dict() for s in r.inputs], "outputs": [s.to_dict() for s in r.outputs],
            "ops": dict(sorted(ops.items())), "tensor_types": dict(sorted(tensor_types.items()))}


def onnx_details(model: bytes | str | Path, layout: str = "nhwc") -> dict:
    import onnx

    from .runners import OnnxRunner

    r = OnnxRunner(model, layout=layout)
    proto = onnx.load_from_string(model) if isinstance(model, (bytes, bytearray)) else onnx.load(str(model))
    ops = Counter(n.op_type for n in proto.graph.node)
    return {"inputs": [s.to_dict() for s in r.inputs], "outputs": [s.to_dict() for s in r.outputs],
            "ops": dict(sorted(ops.items()))}


def tool_versions() -> dict:
    from importlib.metadata import PackageNotFoundError, version

    out = {"python": platform.python_version(), "edgeconv": __version__}
    for pkg in ("tensorflow-cpu", "tensorflow", "keras", "tf2onnx", "onnx", "onnxruntime", "ai-edge-litert", "numpy"):
        try:
            out[pkg] = version(pkg)
        except PackageNotFoundError:
            pass
    return out
