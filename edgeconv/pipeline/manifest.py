"""manifest.json: what was exported, from what, with which tools; sha256 + io specs of every artifact."""
from __future__ import annotations

import json
import platform
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Literal

from edgeconv import __version__
from edgeconv.errors import EdgeconvError, first_line
from edgeconv.options import Format, Layout, PrecisionName

MANIFEST = "manifest.json"
SCHEMA = "edgeconv.manifest/2"  # /1: no "schema" key, per-artifact details in an untyped "extra" dict

WeightsKind = Literal["random", "file", "model_file", "imagenet"]


@dataclass
class WeightsRecord:
    """Where a model's weights came from. ``random``: a zoo model built with ``seed`` (BatchNorm statistics
    estimated on calibration images when ``batchnorm_estimated``; ``reason``: why it has random weights: asked for,
    none published, a build they do not fit, or they could not be had); ``file``: ``--weights FILE`` (``path``,
    ``sha256``); ``imagenet``: keras.applications' ImageNet weights (``path``: the file name in the Keras cache,
    ``sha256``); ``model_file``: the weights inside the user's model file."""

    kind: WeightsKind
    path: str | None = None
    sha256: str | None = None
    seed: int | None = None
    batchnorm_estimated: bool = False
    reason: str | None = None

    @property
    def is_random(self) -> bool:
        return self.kind == "random"

    def describe(self) -> str:
        if self.kind == "random":
            return "random (seeded)" + (", BatchNorm statistics estimated on calibration images"
                                        if self.batchnorm_estimated else "")
        if self.kind == "file":
            return str(self.path)
        if self.kind == "imagenet":
            return f"ImageNet ({self.path})"
        return "from the model file"

    def to_dict(self) -> dict:
        return {k: v for k, v in asdict(self).items() if v is not None}

    @classmethod
    def from_value(cls, v) -> "WeightsRecord":
        """A manifest's ``model.weights``: the dict of schema 2, or schema 1's description string."""
        if isinstance(v, dict):
            return cls(**{k: v[k] for k in ("kind", "path", "sha256", "seed", "batchnorm_estimated", "reason")
                          if k in v})
        s = str(v or "")
        if s.startswith("random"):
            return cls("random", batchnorm_estimated="BatchNorm" in s)
        if s in ("", "from the model file"):
            return cls("model_file")
        return cls("file", path=s)


@dataclass
class ArtifactRecord:
    """One artifact of an export, as the manifest records it (typed: no free-form dict)."""

    file: str
    format: Format
    precision: PrecisionName
    key: str  # edgeconv.precisions.PRECISIONS key
    sha256: str
    bytes: int
    inputs: list[dict]
    outputs: list[dict]
    layout: Layout = "nhwc"
    opset: int | None = None
    io_type: str | None = None  # TFLite I/O dtype: "uint8", "int8", "int16" or "float32"
    ops: dict[str, int] = field(default_factory=dict)  # op histogram
    tensor_types: dict[str, int] | None = None  # TFLite tensor dtypes histogram
    kept_float: list[str] = field(default_factory=list)  # int8 layers left in float (--keep-float / fallback)
    fallback: dict | None = None  # FallbackResult.to_dict() when --fallback auto re-converted this artifact
    tflite_rewrites: dict | None = None  # the int8 h-swish decomposition and its parity check
    onnx_rewrites: dict | None = None  # tf2onnx post-processing: fusions, leftover transposes
    quantization: str | None = None  # ONNX int8: the quantization recipe; TFLite int8: a non-default --int8-ranges
    metadata: dict | None = None  # what was embedded (edgeconv JSON, labels count)
    gpu_compatible: bool | None = None  # --target gpu: TF's GPU-delegate analyzer verdict
    uint8_input: dict | None = None  # uint8 input quantization set to the pixel mapping (or why not)

    _OPTIONAL = ("opset", "io_type", "tensor_types", "fallback", "tflite_rewrites", "onnx_rewrites", "quantization",
                 "metadata", "gpu_compatible", "uint8_input")

    def to_dict(self) -> dict:
        d = asdict(self)
        for k in self._OPTIONAL:
            if d[k] is None:
                del d[k]
        return d

    @classmethod
    def from_dict(cls, d: dict) -> "ArtifactRecord":
        d = dict(d)
        extra = d.pop("extra", None) or {}  # schema 1
        if extra:
            d.setdefault("io_type", extra.get("io_type"))
            d.setdefault("ops", extra.get("ops") or {})
            d.setdefault("tensor_types", extra.get("tensor_types"))
            d.setdefault("kept_float", extra.get("kept_float") or (extra.get("fallback") or {}).get("kept_float")
                         or [])
            d.setdefault("fallback", extra.get("fallback"))
            d.setdefault("tflite_rewrites", extra.get("tflite_rewrites"))
            if "rewrites" in extra or "leftover_transposes" in extra:
                d.setdefault("onnx_rewrites", {k: extra[k] for k in ("rewrites", "leftover_transposes")
                                               if k in extra})
            d.setdefault("quantization", extra.get("quantization"))
            d.setdefault("metadata", extra.get("metadata"))
            d.setdefault("gpu_compatible", extra.get("gpu_compatible"))
        known = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in d.items() if k in known})


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
    schema: str = SCHEMA
    validation: dict | None = None  # DataPlan.to_dict(): which data judges the artifacts (data / held_out / embedded)

    @property
    def weights(self) -> WeightsRecord:
        return WeightsRecord.from_value(self.model.get("weights"))

    @property
    def input_shape(self) -> tuple[int, ...]:
        return tuple(int(s) for s in self.model["input_shape"])

    @property
    def outputs(self) -> list | None:
        """The model's outputs (:class:`edgeconv.verify.kinds.OutputInfo`: name, shape, kind and why), in the Keras
        model's order; None for manifests written before edgeconv recorded them."""
        from edgeconv.verify.kinds import OutputInfo

        recorded = self.model.get("outputs")
        return None if not recorded else [OutputInfo.from_dict(o) for o in recorded]

    @property
    def custom_objects(self) -> list[dict]:
        """The ``--custom-objects`` sources the export imported ({name, sha256, path, module, objects})."""
        return list(self.model.get("custom_objects") or [])

    def to_dict(self) -> dict:
        return {
            "schema": self.schema,
            "edgeconv_version": self.edgeconv_version,
            "model": self.model,
            "reference": self.reference,
            "preprocessing": self.preprocessing,
            "calibration": self.calibration,
            "validation": self.validation,
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
        if not isinstance(d, dict):
            raise EdgeconvError(f"expected a JSON object, got {type(d).__name__}")
        schema = d.get("schema", "edgeconv.manifest/1")
        if not str(schema).startswith("edgeconv.manifest/"):
            raise EdgeconvError(f"unknown manifest schema {schema!r}")
        if int(str(schema).rsplit("/", 1)[1]) > int(SCHEMA.rsplit("/", 1)[1]):
            raise EdgeconvError(f"manifest schema {schema} is newer than this edgeconv ({SCHEMA}): upgrade edgeconv")
        return cls(model=d["model"], reference=d["reference"], preprocessing=d["preprocessing"],
                   calibration=d.get("calibration"), options=d.get("options", {}),
                   artifacts=[ArtifactRecord.from_dict(a) for a in d["artifacts"]], tools=d.get("tools", {}),
                   command=d.get("command", ""), edgeconv_version=d.get("edgeconv_version", "?"), schema=SCHEMA,
                   validation=d.get("validation"))

    @classmethod
    def load(cls, folder: str | Path) -> "Manifest":
        path = Path(folder) / MANIFEST
        if not path.exists():
            raise EdgeconvError(f"{folder} has no {MANIFEST}: not an edgeconv artifact folder")
        try:
            return cls.from_dict(json.loads(path.read_text()))
        except (json.JSONDecodeError, KeyError, TypeError, ValueError) as e:
            raise EdgeconvError(f"{path} is not a valid edgeconv manifest: {first_line(e)}") from None


def tool_versions() -> dict:
    from importlib.metadata import PackageNotFoundError, version

    out = {"python": platform.python_version(), "edgeconv": __version__}
    for pkg in ("tensorflow-cpu", "tensorflow", "keras", "tf2onnx", "onnx", "onnxruntime", "ai-edge-litert", "numpy"):
        try:
            out[pkg] = version(pkg)
        except PackageNotFoundError:
            pass
    return out
