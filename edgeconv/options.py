"""Typed options that travel between stages: one frozen value per run, shared by the CLI, the library and
``validate``. Stages read fields, never string keys; a mistake is one :class:`~edgeconv.errors.UsageError`, raised by
:meth:`check` before any work starts.
"""
from __future__ import annotations

import os
from dataclasses import dataclass, field, fields, replace
from typing import Any, Literal, Mapping

from edgeconv.errors import UsageError

IoType = Literal["uint8", "int", "float"]
Fallback = Literal["none", "auto"]
Layout = Literal["nhwc", "nchw"]
Format = Literal["tflite", "onnx", "ort"]
PrecisionName = Literal["fp32", "fp16", "dynamic", "int8", "int16x8"]

IO_TYPES: tuple[str, ...] = ("uint8", "int", "float")
FALLBACKS: tuple[str, ...] = ("none", "auto")

__all__ = ["ExportOptions", "ValidationOptions", "IoType", "Fallback", "Layout", "Format", "PrecisionName",
           "IO_TYPES", "FALLBACKS", "with_overrides", "parse_input_size"]


def parse_input_size(value) -> int | tuple[int, int] | None:
    """``96``, ``"96"`` -> 96; ``"96x128"``, ``(96, 128)`` -> (96, 128); a size < 1 or anything else is a
    :class:`~edgeconv.errors.UsageError`."""
    if value is None:
        return None
    try:
        if isinstance(value, str):
            parts = value.lower().replace(" ", "").split("x")
            if len(parts) not in (1, 2) or not all(p.isdigit() for p in parts):
                raise ValueError
            value = int(parts[0]) if len(parts) == 1 else (int(parts[0]), int(parts[1]))
        if isinstance(value, bool):
            raise ValueError
        if isinstance(value, int):
            size = value
            dims = (value,)
        else:
            size = tuple(int(v) for v in value)
            if len(size) != 2 or any(int(v) != v for v in value):
                raise ValueError
            dims = size
    except (TypeError, ValueError):
        raise UsageError(f"--input-size takes H or HxW (e.g. 96 or 96x128), got {value!r}") from None
    if any(d < 1 for d in dims):
        raise UsageError(f"--input-size must be positive, got {value!r}")
    return size


@dataclass(frozen=True)
class ValidationOptions:
    """How artifacts are judged against the Keras reference (:func:`edgeconv.verify.validate.validate`).

    ``data``: held-out inputs (image folder, .npy, .npz; None: what the export recorded, else the embedded photo
    set's validation split). ``atol`` / ``min_sqnr`` / ``min_top1`` override the per-precision defaults
    (:func:`edgeconv.verify.compare.tolerance_for`). ``labels``: .npy/.txt of class labels. ``layers``: layer-wise
    report for every TFLite artifact; ``layers_on_failure``: for failing fp16/int8/int16x8 TFLite artifacts.
    ``write``: report.json + report.md (+ plots) into the folder. ``custom_objects`` (``.py`` files or module names)
    and ``unsafe_deserialization`` (Lambda layers) reload the Keras reference as the export loaded the model; without
    ``custom_objects`` the files the export recorded are reused when they are unchanged.
    """

    data: str | os.PathLike | None = None
    samples: int = 200
    atol: float | None = None
    min_sqnr: float | None = None
    min_top1: float | None = None
    labels: str | os.PathLike | None = None
    layers: bool = False
    layers_on_failure: bool = True
    write: bool = True
    seed: int = 0
    num_threads: int = 1
    custom_objects: tuple[str, ...] = ()
    unsafe_deserialization: bool = False
    jobs: int = 1  # processes that run each artifact on shards of the inputs (edgeconv.runtime.shard)
    ray: str | None = None  # run the shards as tasks on this Ray cluster (address or "auto"; edgeconv[ray])

    def __post_init__(self):  # a single path given as a string is one source, not a sequence of characters
        co = (self.custom_objects,) if isinstance(self.custom_objects, (str, os.PathLike)) else self.custom_objects
        object.__setattr__(self, "custom_objects", tuple(str(c) for c in co or ()))

    def check(self) -> "ValidationOptions":
        if self.samples < 1:
            raise UsageError(f"--samples must be >= 1, got {self.samples}")
        if self.min_top1 is not None and not 0 <= self.min_top1 <= 1:
            raise UsageError(f"--min-top1 must be between 0 and 1, got {self.min_top1}")
        if self.num_threads < 1:
            raise UsageError(f"threads must be >= 1, got {self.num_threads}")
        if self.jobs < 1:
            raise UsageError(f"--jobs must be >= 1, got {self.jobs}")
        return self

    @property
    def overrides(self) -> dict[str, float]:
        """The tolerance overrides the user gave (for the report)."""
        return {k: v for k, v in (("atol", self.atol), ("min_sqnr", self.min_sqnr), ("min_top1", self.min_top1))
                if v is not None}


@dataclass(frozen=True)
class ExportOptions:
    """Everything one export run needs besides the model source (:func:`edgeconv.pipeline.export.export`).

    ``precisions``: keys of :data:`edgeconv.precisions.PRECISIONS` (fp32 is always added). ``calibration``: image
    folder, .npy/.npz, or None for the embedded photo set. ``input_size`` (H, (H, W) or "HxW") / ``classes`` /
    ``width`` reach the zoo builder; for a model file with an open input size, ``input_size`` is the size it is
    traced, calibrated and validated at. ``weights`` (zoo models): None = ImageNet weights where the model has them
    and the build fits them, else random; "imagenet", "random", or a weights file
    (:func:`edgeconv.pipeline.load.load_model`). ``preprocessing`` (an ``edgeconv.models.Preprocessing``) overrides
    the model's own. ``custom_objects`` (``.py`` files or module names) are imported and given to Keras to load a
    model file with unregistered custom layers / functions; ``unsafe_deserialization`` lets Keras load Lambda layers
    (it runs Python code stored in the model file). ``class_labels``: a text file (one name per line) or a list of
    names; None: the ImageNet class names when the weights are ImageNet's. ``output_kinds``: ``{output name: kind}``
    for outputs whose kind cannot be inferred (``scores``, ``regression``, ``landmarks``, ``embedding``;
    :mod:`edgeconv.verify.kinds`), recorded in the manifest. ``target`` adds a device class's
    precisions (:data:`edgeconv.pipeline.phone_ready.TARGETS`). ``command`` is what the manifest records as the
    command line (the CLI passes its own; library calls record a Python call).
    """

    precisions: tuple[str, ...] = ("fp32",)
    out_dir: str | os.PathLike = "artifacts"
    calibration: str | os.PathLike | None = None
    calib_samples: int = 200
    io_type: IoType | None = None  # full-int8 TFLite I/O; None: the target's (npu: int), else uint8
    batch_size: int | None = 1
    input_size: int | tuple[int, int] | None = None
    classes: int | None = None
    width: Mapping[str, Any] = field(default_factory=dict)
    weights: str | os.PathLike | None = None
    preprocessing: Any = None
    opset: int = 17
    nchw: bool = False
    seed: int = 0
    validate: bool = True
    validation: ValidationOptions = field(default_factory=ValidationOptions)
    fallback: Fallback = "none"
    keep_float: tuple[str, ...] = ()
    int8_ranges: str = "minmax"  # TFLite int8: edgeconv.tflite.calibrate.STATS_POLICIES ("cle": cross-layer equalized)
    max_size_ratio: float = 0.5  # --fallback auto: the result at most this fraction of the fp32 .tflite
    command: str | None = None
    quiet: bool = False
    target: str | None = None
    class_labels: str | os.PathLike | tuple[str, ...] | None = None
    model_version: str = "1"
    rewrite: bool = True
    rgb_input: bool = False  # 1-channel models: export with an RGB input and a fixed RGB-to-gray front end
    ort: bool = False  # also the ORT format (.ort, onnxruntime Mobile) of every ONNX artifact
    custom_objects: tuple[str, ...] = ()
    unsafe_deserialization: bool = False
    output_kinds: Mapping[str, str] = field(default_factory=dict)  # {output name: kind}: edgeconv.verify.kinds
    jobs: int | None = None  # conversions at once (this process + workers); None: cores and memory decide

    def __post_init__(self):  # accept lists where tuples are meant; frozen, so through object.__setattr__
        object.__setattr__(self, "precisions", tuple(self.precisions))
        co = (self.custom_objects,) if isinstance(self.custom_objects, (str, os.PathLike)) else self.custom_objects
        object.__setattr__(self, "custom_objects", tuple(str(c) for c in co or ()))
        try:  # "96x128" -> (96, 128); a bad value stays as given and check() reports it
            object.__setattr__(self, "input_size", parse_input_size(self.input_size))
        except UsageError:
            pass
        object.__setattr__(self, "keep_float", tuple(str(k) for k in self.keep_float))
        object.__setattr__(self, "width", dict(self.width or {}))
        if not isinstance(self.output_kinds, Mapping):  # [("boxes", "regression")] or ["boxes=regression"]
            try:
                from edgeconv.verify.kinds import parse_output_kinds

                object.__setattr__(self, "output_kinds", parse_output_kinds(self.output_kinds))
            except UsageError:
                pass  # check() reports it
        object.__setattr__(self, "model_version", str(self.model_version))
        if isinstance(self.class_labels, list):
            object.__setattr__(self, "class_labels", tuple(self.class_labels))

    def check(self) -> "ExportOptions":
        """Option checks that need no model; the ones that need the precision list run in the export."""
        if self.io_type is not None and self.io_type not in IO_TYPES:
            raise UsageError(f"io_type must be one of {', '.join(IO_TYPES)}, got {self.io_type!r}")
        if self.batch_size is not None and self.batch_size < 1:
            raise UsageError(f"batch size must be >= 1, got {self.batch_size}")
        from edgeconv.tflite.calibrate import STATS_POLICIES

        if self.int8_ranges not in STATS_POLICIES:
            raise UsageError(f"--int8-ranges must be one of {', '.join(STATS_POLICIES)}, got {self.int8_ranges!r}")
        if self.fallback not in FALLBACKS:
            raise UsageError(f"fallback must be 'none' or 'auto', got {self.fallback!r}")
        if not 0 < self.max_size_ratio:
            raise UsageError(f"--max-size-ratio must be > 0, got {self.max_size_ratio}")
        if self.jobs is not None and self.jobs < 1:
            raise UsageError(f"--jobs must be >= 1, got {self.jobs}")
        if self.calib_samples < 1:
            raise UsageError(f"--calib-samples must be >= 1, got {self.calib_samples}")
        parse_input_size(self.input_size)
        from edgeconv.verify.kinds import parse_output_kinds

        parse_output_kinds(self.output_kinds if isinstance(self.output_kinds, Mapping) else list(self.output_kinds))
        if self.fallback == "auto" and not self.validate:
            raise UsageError("--fallback auto needs validation to know whether int8 meets its target; "
                             "drop --no-validate")
        self.validation.check()
        return self


def with_overrides(base, overrides: Mapping[str, Any]):
    """``base`` with keyword ``overrides`` (the library's keyword API); an unknown keyword is a UsageError."""
    names = {f.name for f in fields(base)}
    unknown = sorted(set(overrides) - names)
    if unknown:
        raise UsageError(f"unknown option(s) {', '.join(unknown)} for {type(base).__name__}; "
                         f"known: {', '.join(sorted(names))}")
    return replace(base, **overrides) if overrides else base
