"""Write and read Android's standard ``TFLITE_METADATA`` in a ``.tflite`` file, without tflite-support.

Why this exists. MediaPipe Tasks (``ImageClassifier``/``ImageEmbedder`` on Android, iOS, web and Python) and the
older TFLite Support Task Library only preprocess images for a model that carries the ``ModelMetadata`` FlatBuffer
of TFLite's ``metadata_schema.fbs``: without it MediaPipe refuses a float32 model ("Input tensor has type float32:
it requires specifying NormalizationOptions metadata to preprocess input images") and shows no class names. The
only maintained writer was ``tflite-support`` (needs protobuf<4, cannot be installed next to TensorFlow 2.21);
mediapipe's own writers do not import. This module writes the structure that tflite-support's
``ImageClassifierWriter``/``MetadataPopulator`` wrote (same tables, stats rules and zip packing; not compared byte
for byte, tflite-support cannot be installed here), using only the flatc-generated schema code (vendored in
``_vendor``, needs the ``flatbuffers`` package that ai-edge-litert and tensorflow already require) and the model
object API of ``ai_edge_litert.schema_py_generated``. MediaPipe Tasks 1.2.3 loads the result and classifies like
Keras (see tests/test_android_metadata.py).

File layout written (as tflite-support did):

* a new model buffer holding the ``ModelMetadata`` FlatBuffer (file identifier ``M001``), referenced by a model
  ``metadata`` entry named ``TFLITE_METADATA``;
* per input image tensor: ``ImageProperties`` (colour space), a ``NormalizationOptions`` process unit
  (``model input = (pixel - mean) / std`` on 0..255 pixels) and ``Stats`` min/max of the input tensor;
* per output tensor: ``FeatureProperties``, ``Stats`` for probabilities, and the class names as a
  ``TENSOR_AXIS_LABELS`` associated file (``labels.txt``);
* the associated files packed in an uncompressed (stored) zip archive appended to the end of the file, offsets
  counted from the start of the file. MediaPipe rejects compressed members ("Expected uncompressed zip archive").

The model FlatBuffer is re-serialized through the object API (the TF 2.21 converter's own output equalled an
object-API re-pack byte for byte on the models tried), with weight buffers 16-byte aligned as the schema's
``force_align: 16`` asks (the generated ``Pack`` and the converter output do not align them).

Consequences the caller must know:

* Anything that re-serializes the model FlatBuffer afterwards (quantizers, rewriters, this module) drops the
  appended zip. Write metadata last. :func:`write_metadata` itself starts from the bare FlatBuffer, replaces an
  existing ``TFLITE_METADATA`` and re-appends the zip, so it is idempotent: writing twice gives the bytes of
  writing once.
* MediaPipe feeds a **uint8** input tensor raw pixels 0..255 and ignores both the normalization metadata and the
  tensor's quantization parameters. A uint8-input model is only right on the phone if its input quantization
  maps raw pixel ``p`` to the value the float model expects, i.e. ``scale = 1/std`` and ``zero_point = mean``
  (for a model with the normalization inside the graph: scale 1, zero point 0, obtained by calibrating with data
  that spans exactly 0..255). :func:`write_metadata` checks this and refuses a mismatch.
* MediaPipe refuses int8 inputs, 1-channel inputs, a non-RGB colour space and per-channel normalization values
  that differ; :func:`mediapipe_problems` lists such refusals before an app developer finds them.

Only schema fields of metadata version 1.0.0 are written, so ``min_parser_version`` is "1.0.0" (the schema rule:
the largest "Added in" version among the fields used).
"""
from __future__ import annotations

import io
import math
import struct
import zipfile
import zlib
from dataclasses import dataclass
from typing import Literal, Sequence

import flatbuffers
import numpy as np

from edgeconv.errors import EdgeconvError
from edgeconv.tflite._vendor import metadata_schema_py_generated as _mfb

try:  # LiteRT is the maintained home of the TFLite model schema; TF 2.21 still ships the same module.
    from ai_edge_litert import schema_py_generated as _tfl
except ImportError:  # pragma: no cover - exercised only without ai-edge-litert
    from tensorflow.lite.python import schema_py_generated as _tfl  # type: ignore[no-redef]

__all__ = [
    "TFLITE_METADATA", "METADATA_FILE_IDENTIFIER", "MIN_PARSER_VERSION", "LABELS_FILE",
    "MetadataError", "UnsupportedPreprocessingError", "Uint8InputMismatchError",
    "ImageInputSpec", "OutputSpec", "ModelDescription",
    "normalization_from_preprocessing", "write_metadata", "read_metadata", "strip_metadata",
    "mediapipe_problems", "uint8_input_error",
]

TFLITE_METADATA = "TFLITE_METADATA"
METADATA_FILE_IDENTIFIER = b"M001"
TFLITE_FILE_IDENTIFIER = b"TFL3"
MIN_PARSER_VERSION = "1.0.0"
LABELS_FILE = "labels.txt"

#: Largest disagreement, in 0..255 pixel levels, tolerated between what a uint8 input's quantization makes of a
#: raw pixel and what the normalization says the model expects. Half a level is the unavoidable error of an
#: integer zero point for mean 127.5; one level leaves margin for float rounding of the scale.
UINT8_TOLERANCE_LEVELS = 1.0

_COLOR_SPACES = {"RGB": _mfb.ColorSpaceType.RGB, "GRAYSCALE": _mfb.ColorSpaceType.GRAYSCALE}
_COLOR_SPACE_NAMES = {v: k for k, v in vars(_mfb.ColorSpaceType).items() if not k.startswith("_")}
_FILE_TYPE_NAMES = {v: k for k, v in vars(_mfb.AssociatedFileType).items() if not k.startswith("_")}
_TENSOR_TYPE_NAMES = {v: k for k, v in vars(_tfl.TensorType).items() if not k.startswith("_")}
_OUTPUT_KINDS = ("probabilities", "logits", "regression", "embedding")


class MetadataError(EdgeconvError):
    """The metadata cannot be written as asked (mismatch with the model, invalid values): a one-line user error."""


class UnsupportedPreprocessingError(MetadataError):
    """The preprocessing has no ``NormalizationOptions`` equivalent (e.g. BGR channel order)."""


class Uint8InputMismatchError(MetadataError):
    """A uint8 input's quantization does not turn raw pixels into the values the normalization describes."""


# --------------------------------------------------------------------------------------------------- specs

def _floats(values: float | Sequence[float], what: str) -> tuple[float, ...]:
    vals = (values,) if isinstance(values, (int, float, np.floating, np.integer)) else tuple(values)
    out = tuple(float(v) for v in vals)
    if not out:
        raise MetadataError(f"{what} is empty")
    if not all(math.isfinite(v) for v in out):
        raise MetadataError(f"{what} must be finite, got {out}")
    return out


@dataclass(frozen=True)
class ImageInputSpec:
    """What an app must do to turn an image into the model input: ``input = (pixel - mean) / std``.

    ``mean`` and ``std`` are on 0..255 pixel values, one value for all channels or one per channel, as the
    schema's ``NormalizationOptions`` defines them (use :func:`normalization_from_preprocessing` to derive them from
    edgeconv's ``scale/mean/std`` preprocessing). A model that normalizes inside its graph (e.g. a Rescaling layer)
    takes raw pixels: ``mean=(0,), std=(1,)``, the defaults.

    The input ``Stats`` (min/max of the tensor) are derived, not given, so they cannot contradict the
    normalization: for float inputs ``(0 - mean) / std`` and ``(255 - mean) / std`` per channel, for uint8 inputs
    0 and 255, as tflite-support's writer did.
    """

    mean: tuple[float, ...] = (0.0,)
    std: tuple[float, ...] = (1.0,)
    color_space: Literal["RGB", "GRAYSCALE"] = "RGB"
    name: str = "image"
    description: str = "Input image: RGB pixels in 0..255, normalized as (pixel - mean) / std."

    def __post_init__(self) -> None:
        mean = _floats(self.mean, "mean")
        std = _floats(self.std, "std")
        if len(mean) != len(std):
            raise MetadataError(f"mean and std need the same number of values, got {len(mean)} and {len(std)}")
        if any(s == 0.0 for s in std):
            raise MetadataError(f"std must not be 0, got {std}")
        if self.color_space not in _COLOR_SPACES:
            raise MetadataError(f"color_space must be one of {sorted(_COLOR_SPACES)}, got {self.color_space!r}")
        object.__setattr__(self, "mean", mean)
        object.__setattr__(self, "std", std)

    @classmethod
    def from_preprocessing(cls, scale: float | Sequence[float], mean: float | Sequence[float],
                           std: float | Sequence[float], bgr: bool = False, **kwargs) -> "ImageInputSpec":
        """The spec for edgeconv's ``input = (pixel * scale - mean) / std`` (raises for BGR, see below)."""
        m, s = normalization_from_preprocessing(scale, mean, std, bgr)
        return cls(mean=m, std=s, **kwargs)

    def float_range(self) -> tuple[tuple[float, ...], tuple[float, ...]]:
        """Per-channel (min, max) of the float model input that pixels 0..255 map to."""
        lo = tuple((0.0 - m) / s for m, s in zip(self.mean, self.std))
        hi = tuple((255.0 - m) / s for m, s in zip(self.mean, self.std))
        return tuple(min(a, b) for a, b in zip(lo, hi)), tuple(max(a, b) for a, b in zip(lo, hi))


@dataclass(frozen=True)
class OutputSpec:
    """One model output. ``labels`` (one per class, in output order) become a ``labels.txt`` associated file.

    ``kind`` decides what is written beside the labels: "probabilities" gets ``Stats`` 0..1 (0..255 for a uint8
    output), the others none. The kind itself has no field in the schema and is not read back.
    """

    name: str = "probability"
    description: str = "Probabilities of the labels respectively."
    kind: Literal["probabilities", "logits", "regression", "embedding"] = "probabilities"
    labels: tuple[str, ...] | None = None

    def __post_init__(self) -> None:
        if self.kind not in _OUTPUT_KINDS:
            raise MetadataError(f"kind must be one of {_OUTPUT_KINDS}, got {self.kind!r}")
        if self.labels is not None:
            labels = tuple(str(x) for x in self.labels)
            if self.kind in ("regression", "embedding"):
                raise MetadataError(f"labels make no sense for a {self.kind} output")
            bad = [x for x in labels if not x.strip() or "\n" in x or "\r" in x]
            if bad:
                # Readers split labels.txt on "\n" (MediaPipe drops only a final empty line): an empty label or a
                # line break inside one would shift every later class name.
                raise MetadataError(f"labels must be non-empty single-line strings, got {bad[:3]!r}")
            object.__setattr__(self, "labels", labels)


@dataclass(frozen=True)
class ModelDescription:
    """The model-level fields of ``ModelMetadata`` (shown by Android Studio's model viewer and Netron)."""

    name: str
    version: str = "1"
    description: str = ""
    author: str | None = None
    license: str | None = None


# ------------------------------------------------------------------------------------------ preprocessing

def normalization_from_preprocessing(scale: float | Sequence[float], mean: float | Sequence[float],
                                     std: float | Sequence[float],
                                     bgr: bool = False) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """Convert edgeconv's preprocessing to ``NormalizationOptions`` (mean, std) on 0..255 pixels.

    edgeconv feeds ``(pixel * scale - mean_p) / std_p``; the metadata rule is ``(pixel - mean) / std``; the two
    agree for ``mean = mean_p / scale`` and ``std = std_p / scale``. Values are broadcast to a common length
    (1 or per channel); a per-channel ``scale`` is allowed.

    Raises :class:`UnsupportedPreprocessingError` for ``bgr=True``: the schema has no channel-order field and
    MediaPipe always feeds RGB, so a BGR model would silently get swapped channels. Such a model needs the channel
    flip inside its graph (then ``bgr=False`` here) or cannot be described.
    """
    if bgr:
        raise UnsupportedPreprocessingError(
            "BGR channel order cannot be expressed in TFLITE_METADATA (MediaPipe and the TFLite Support library "
            "always feed RGB); put the channel flip inside the model graph or ship the model without "
            "TFLITE_METADATA")
    sc, m, s = _floats(scale, "scale"), _floats(mean, "mean"), _floats(std, "std")
    n = max(len(sc), len(m), len(s))
    for what, v in (("scale", sc), ("mean", m), ("std", s)):
        if len(v) not in (1, n):
            raise UnsupportedPreprocessingError(f"{what} has {len(v)} values, expected 1 or {n}")
    sc, m, s = (v * n if len(v) == 1 else v for v in (sc, m, s))
    if any(x <= 0 for x in sc):
        raise UnsupportedPreprocessingError(f"scale must be positive, got {sc}")
    if any(x == 0 for x in s):
        raise UnsupportedPreprocessingError(f"std must not be 0, got {s}")
    mean_px = tuple(float(np.float32(mi / si)) for mi, si in zip(m, sc))
    std_px = tuple(float(np.float32(sdi / si)) for sdi, si in zip(s, sc))
    if len(set(zip(mean_px, std_px))) == 1:  # one value for all channels: the form MediaPipe accepts
        return mean_px[:1], std_px[:1]
    return mean_px, std_px


def uint8_input_error(scale: float, zero_point: int, mean: Sequence[float], std: Sequence[float]) -> float:
    """Worst disagreement, in 0..255 pixel levels, between a uint8 input's dequantization and the normalization.

    The phone (MediaPipe, TFLite Support) copies raw pixels ``p`` into a uint8 input, and the model reads them as
    ``(p - zero_point) * scale``; the float model expected ``(p - mean) / std``. Multiplying the difference by
    ``std`` gives pixel levels; being linear in ``p`` the worst case is at ``p = 0`` or ``p = 255``.
    """
    worst = 0.0
    for m, s in zip(mean, std):
        for p in (0.0, 255.0):
            worst = max(worst, abs(((p - zero_point) * scale - (p - m) / s) * s))
    return worst


# ------------------------------------------------------------------------------------------ model access

def _to_str(v) -> str | None:
    if v is None:
        return None
    return v.decode("utf-8") if isinstance(v, (bytes, bytearray)) else str(v)


def _load_model(model_bytes: bytes) -> "_tfl.ModelT":
    buf = bytes(model_bytes)
    if len(buf) < 8 or not _tfl.Model.ModelBufferHasIdentifier(buf, 0):
        raise MetadataError("not a TFLite model (FlatBuffer file identifier 'TFL3' missing)")
    return _tfl.ModelT.InitFromObj(_tfl.Model.GetRootAs(buf, 0))


class _AlignedBufferT(_tfl.BufferT):
    """``BufferT`` whose data vector is 16-byte aligned, as the schema's ``force_align: 16`` asks.

    The generated ``Pack`` ignores ``force_align`` (it aligns to the element size, 1 byte), so re-serialized
    weights could land at odd offsets; kernels that read constant tensors in place expect aligned data.
    """

    def Pack(self, builder):  # noqa: N802 - generated-code naming
        data = None
        if self.data is not None:
            raw = np.asarray(self.data, dtype=np.uint8).tobytes()
            builder.StartVector(1, len(raw), 16)
            builder.head = builder.head - len(raw)
            builder.Bytes[builder.head:builder.head + len(raw)] = raw
            builder.vectorNumElems = len(raw)
            data = builder.EndVector()
        _tfl.BufferStart(builder)
        if data is not None:
            _tfl.BufferAddData(builder, data)
        _tfl.BufferAddOffset(builder, self.offset)
        _tfl.BufferAddSize(builder, self.size)
        return _tfl.BufferEnd(builder)


def _pack_model(model: "_tfl.ModelT") -> bytes:
    for b in model.buffers or []:
        b.__class__ = _AlignedBufferT
    builder = flatbuffers.Builder(1024)
    builder.Finish(model.Pack(builder), file_identifier=TFLITE_FILE_IDENTIFIER)
    return bytes(builder.Output())


def _remove_metadata_entry(model: "_tfl.ModelT", name: str) -> None:
    """Drop metadata entries called ``name`` and their buffers (unless still referenced), renumbering buffers."""
    entries = list(model.metadata or [])
    dropped = [e for e in entries if _to_str(e.name) == name]
    if not dropped:
        return
    kept = [e for e in entries if _to_str(e.name) != name]
    used = {e.buffer for e in kept}
    for sg in model.subgraphs or []:
        used.update(t.buffer for t in sg.tensors or [])
    remove = {e.buffer for e in dropped} - used - {0}
    model.metadata = kept or None
    if not remove:
        return
    new_index, buffers = {}, []
    for i, b in enumerate(model.buffers or []):
        if i not in remove:
            new_index[i] = len(buffers)
            buffers.append(b)
    model.buffers = buffers
    for sg in model.subgraphs or []:
        for t in sg.tensors or []:
            t.buffer = new_index[t.buffer]
    for e in kept:
        e.buffer = new_index[e.buffer]


def _metadata_buffer(model_bytes: bytes) -> bytes | None:
    buf = bytes(model_bytes)
    if len(buf) < 8 or not _tfl.Model.ModelBufferHasIdentifier(buf, 0):
        raise MetadataError("not a TFLite model (FlatBuffer file identifier 'TFL3' missing)")
    m = _tfl.Model.GetRootAs(buf, 0)
    for i in range(m.MetadataLength()):
        e = m.Metadata(i)
        if _to_str(e.Name()) == TFLITE_METADATA:
            b = m.Buffers(e.Buffer())
            return b.DataAsNumpy().tobytes() if b.DataLength() else b""
    return None


# -------------------------------------------------------------------------------------------------- zip

_ZIP_TIME, _ZIP_DATE = 0, (0 << 9) | (1 << 5) | 1  # 1980-01-01 00:00:00, the zip epoch: fixed for determinism


def _append_stored_zip(prefix: bytes, files: dict[str, bytes]) -> bytes:
    """``prefix`` followed by a stored (uncompressed) zip of ``files``, offsets counted from the file start.

    Written by hand rather than with ``zipfile`` so the bytes do not depend on the Python version or platform
    (timestamps, "made by" system, extra fields); absolute offsets match what tflite-support's ``zipfile`` "a"
    mode produced, which every zip reader accepts (Python and minizip also accept zip-relative ones).
    """
    out = bytearray(prefix)
    central = bytearray()
    for name in sorted(files):
        data, fname = files[name], name.encode("ascii")
        crc, offset = zlib.crc32(data) & 0xFFFFFFFF, len(out)
        if offset + len(data) >= 0xFFFFFFFF:
            raise MetadataError("model too large for a zip32 associated-file archive")
        out += struct.pack("<IHHHHHIIIHH", 0x04034B50, 20, 0, 0, _ZIP_TIME, _ZIP_DATE, crc, len(data), len(data),
                           len(fname), 0) + fname + data
        central += struct.pack("<IHHHHHHIIIHHHHHII", 0x02014B50, 20, 20, 0, 0, _ZIP_TIME, _ZIP_DATE, crc,
                               len(data), len(data), len(fname), 0, 0, 0, 0, 0, offset) + fname
    cd_offset = len(out)
    out += central
    out += struct.pack("<IHHHHIIH", 0x06054B50, 0, 0, len(files), len(files), len(central), cd_offset, 0)
    return bytes(out)


def _packed_files(model_bytes: bytes) -> dict[str, bytes]:
    """Files of the zip appended to the model, or {} (a FlatBuffer alone is not a zip)."""
    try:
        with zipfile.ZipFile(io.BytesIO(bytes(model_bytes))) as zf:
            return {i.filename: zf.read(i) for i in zf.infolist() if not i.is_dir()}
    except (zipfile.BadZipFile, zipfile.LargeZipFile, ValueError, OSError, struct.error):
        return {}


# ------------------------------------------------------------------------------------------------ write

def _labels_file_names(outputs: Sequence[OutputSpec]) -> list[str | None]:
    with_labels = [i for i, o in enumerate(outputs) if o.labels]
    names: list[str | None] = [None] * len(outputs)
    for i in with_labels:
        names[i] = LABELS_FILE if len(with_labels) == 1 else f"labels_{i}.txt"
    return names


def _stats(lo: Sequence[float] | None, hi: Sequence[float] | None) -> "_mfb.StatsT | None":
    if lo is None or hi is None:
        return None
    s = _mfb.StatsT()
    s.min, s.max = [float(v) for v in lo], [float(v) for v in hi]
    return s


def _input_metadata(spec: ImageInputSpec, tensor: "_tfl.TensorT", check_uint8: bool) -> "_mfb.TensorMetadataT":
    shape = [int(d) for d in (tensor.shape if tensor.shape is not None else [])]
    name = _to_str(tensor.name)
    if len(shape) != 4:
        raise MetadataError(f"input {name!r} has shape {shape}: an image input must be 4-D NHWC")
    channels = shape[3]
    expected = (1,) if spec.color_space == "GRAYSCALE" else (3, 4)
    if channels not in expected:
        raise MetadataError(f"input {name!r} has {channels} channels, {spec.color_space} needs {expected}")
    if len(spec.mean) not in (1, channels):
        raise MetadataError(f"{len(spec.mean)} mean/std values for an input with {channels} channels")
    ttype = tensor.type
    if ttype == _tfl.TensorType.FLOAT32:
        lo, hi = spec.float_range()
        stats = _stats(lo, hi)
    elif ttype == _tfl.TensorType.UINT8:
        stats = _stats([0.0], [255.0])
        if check_uint8:
            q = tensor.quantization
            scales = [] if q is None or q.scale is None else [float(v) for v in q.scale]
            zps = [] if q is None or q.zeroPoint is None else [int(v) for v in q.zeroPoint]
            if len(scales) != 1 or len(zps) != 1:
                raise Uint8InputMismatchError(f"uint8 input {name!r} has no per-tensor quantization "
                                              f"(scale={scales}, zero_point={zps})")
            err = uint8_input_error(scales[0], zps[0], spec.mean, spec.std)
            if err > UINT8_TOLERANCE_LEVELS:
                raise Uint8InputMismatchError(
                    f"uint8 input {name!r} is quantized with scale={scales[0]:.6g}, zero_point={zps[0]}, so raw "
                    f"pixels 0..255 reach the model as {(0 - zps[0]) * scales[0]:.4g}..{(255 - zps[0]) * scales[0]:.4g}"
                    f", but the normalization (mean={spec.mean}, std={spec.std}) says the model expects "
                    f"{spec.float_range()[0]}..{spec.float_range()[1]} (off by up to {err:.1f} pixel levels). "
                    "Phone runtimes feed raw pixels to uint8 inputs and ignore both, so predictions would be wrong. "
                    "Calibrate with inputs spanning exactly the normalized range of pixels 0..255 (include a black "
                    "and a white image), or keep a float32 input.")
    elif ttype == _tfl.TensorType.INT8:
        stats = None  # tflite-support wrote none for int8; MediaPipe refuses int8 inputs anyway
    else:
        raise MetadataError(f"input {name!r} has type {_TENSOR_TYPE_NAMES.get(ttype, ttype)}: image inputs are "
                            "float32 or uint8 (int8 is describable but phones refuse it)")
    props = _mfb.ImagePropertiesT()
    props.colorSpace = _COLOR_SPACES[spec.color_space]
    content = _mfb.ContentT()
    content.contentPropertiesType = _mfb.ContentProperties.ImageProperties
    content.contentProperties = props
    norm = _mfb.NormalizationOptionsT()
    norm.mean, norm.std = list(spec.mean), list(spec.std)
    unit = _mfb.ProcessUnitT()
    unit.optionsType = _mfb.ProcessUnitOptions.NormalizationOptions
    unit.options = norm
    md = _mfb.TensorMetadataT()
    md.name, md.description = spec.name, spec.description
    md.content, md.processUnits, md.stats = content, [unit], stats
    return md


def _output_metadata(spec: OutputSpec, tensor: "_tfl.TensorT", labels_file: str | None) -> "_mfb.TensorMetadataT":
    name = _to_str(tensor.name)
    shape = [int(d) for d in (tensor.shape if tensor.shape is not None else [])]
    if spec.labels is not None and (not shape or shape[-1] != len(spec.labels)):
        raise MetadataError(f"output {name!r} has shape {shape} but {len(spec.labels)} labels were given")
    content = _mfb.ContentT()
    content.contentPropertiesType = _mfb.ContentProperties.FeatureProperties
    content.contentProperties = _mfb.FeaturePropertiesT()
    md = _mfb.TensorMetadataT()
    md.name, md.description, md.content = spec.name, spec.description, content
    if spec.kind == "probabilities":
        if tensor.type == _tfl.TensorType.FLOAT32:
            md.stats = _stats([0.0], [1.0])
        elif tensor.type == _tfl.TensorType.UINT8:
            md.stats = _stats([0.0], [255.0])
    if labels_file is not None:
        f = _mfb.AssociatedFileT()
        f.name = labels_file
        f.description = "Labels for categories that the model can recognize."
        f.type = _mfb.AssociatedFileType.TENSOR_AXIS_LABELS
        md.associatedFiles = [f]
    return md


def _build_metadata(model: ModelDescription, input_md: list, output_md: list) -> bytes:
    sg = _mfb.SubGraphMetadataT()
    sg.inputTensorMetadata, sg.outputTensorMetadata = input_md, output_md
    mm = _mfb.ModelMetadataT()
    mm.name, mm.description, mm.version = model.name, model.description, model.version
    mm.author, mm.license = model.author, model.license
    mm.subgraphMetadata = [sg]
    mm.minParserVersion = MIN_PARSER_VERSION
    b = flatbuffers.Builder(0)
    b.Finish(mm.Pack(b), file_identifier=METADATA_FILE_IDENTIFIER)
    return bytes(b.Output())


def strip_metadata(model_bytes: bytes) -> bytes:
    """The model without ``TFLITE_METADATA`` and without an appended zip (re-serialized FlatBuffer)."""
    model = _load_model(model_bytes)
    _check_inline_buffers(model)
    _remove_metadata_entry(model, TFLITE_METADATA)
    return _pack_model(model)


def _check_inline_buffers(model: "_tfl.ModelT") -> None:
    if any((b.offset or 0) > 1 for b in model.buffers or []):
        # Large (>2 GB) models keep weights after the FlatBuffer, addressed by offset: re-serializing would lose them.
        raise MetadataError("model stores buffers outside the FlatBuffer (offset/size): not supported")


def write_metadata(model_bytes: bytes, model: ModelDescription, inputs: Sequence[ImageInputSpec],
                   outputs: Sequence[OutputSpec], *, check_uint8_input: bool = True) -> bytes:
    """Return ``model_bytes`` with ``TFLITE_METADATA`` (and the labels zip) written; the input is not modified.

    ``inputs``/``outputs`` describe subgraph 0's inputs and outputs in order (the schema requires one entry per
    tensor). An existing ``TFLITE_METADATA`` entry and appended zip are replaced, so the result does not depend on
    whether ``model_bytes`` already had metadata, and the same arguments always give the same bytes.

    Raises :class:`MetadataError` when the description does not fit the model (tensor counts, channels, label
    count vs. classes) and :class:`Uint8InputMismatchError` when a uint8 input's quantization would make phone
    runtimes feed it wrong values (disable with ``check_uint8_input=False``).
    """
    tfl = _load_model(model_bytes)
    _check_inline_buffers(tfl)
    if not tfl.subgraphs:
        raise MetadataError("model has no subgraph")
    sg = tfl.subgraphs[0]
    in_idx = [int(i) for i in (sg.inputs if sg.inputs is not None else [])]
    out_idx = [int(i) for i in (sg.outputs if sg.outputs is not None else [])]
    if len(inputs) != len(in_idx):
        raise MetadataError(f"model has {len(in_idx)} inputs, {len(inputs)} input specs given")
    if len(outputs) != len(out_idx):
        raise MetadataError(f"model has {len(out_idx)} outputs, {len(outputs)} output specs given")
    file_names = _labels_file_names(outputs)
    input_md = [_input_metadata(s, sg.tensors[i], check_uint8_input) for s, i in zip(inputs, in_idx)]
    output_md = [_output_metadata(s, sg.tensors[i], f) for s, i, f in zip(outputs, out_idx, file_names)]
    meta = _build_metadata(model, input_md, output_md)

    _remove_metadata_entry(tfl, TFLITE_METADATA)
    buf = _tfl.BufferT()
    buf.data = np.frombuffer(meta, dtype=np.uint8)
    buf.offset, buf.size = 0, 0
    tfl.buffers = list(tfl.buffers or []) + [buf]
    entry = _tfl.MetadataT()
    entry.name, entry.buffer = TFLITE_METADATA, len(tfl.buffers) - 1
    tfl.metadata = list(tfl.metadata or []) + [entry]
    flat = _pack_model(tfl)

    files = {f: ("\n".join(o.labels) + "\n").encode("utf-8") for o, f in zip(outputs, file_names) if f}
    return _append_stored_zip(flat, files) if files else flat


# ------------------------------------------------------------------------------------------------- read

def _files_dict(files) -> list[dict]:
    return [{"name": _to_str(f.name), "description": _to_str(f.description),
             "type": _FILE_TYPE_NAMES.get(f.type, f.type), "locale": _to_str(f.locale)} for f in files or []]


def _stats_dict(s) -> dict | None:
    if s is None:
        return None
    return {"min": None if s.min is None else [float(v) for v in s.min],
            "max": None if s.max is None else [float(v) for v in s.max]}


def _tensor_dict(t, packed: dict[str, bytes]) -> dict:
    d: dict = {"name": _to_str(t.name), "description": _to_str(t.description), "content": None,
               "color_space": None, "mean": None, "std": None, "stats": _stats_dict(t.stats),
               "associated_files": _files_dict(t.associatedFiles), "labels": None}
    if t.content is not None:
        if t.content.contentPropertiesType == _mfb.ContentProperties.ImageProperties:
            d["content"] = "image"
            d["color_space"] = _COLOR_SPACE_NAMES.get(t.content.contentProperties.colorSpace)
        elif t.content.contentPropertiesType == _mfb.ContentProperties.FeatureProperties:
            d["content"] = "feature"
    for u in t.processUnits or []:
        if u.optionsType == _mfb.ProcessUnitOptions.NormalizationOptions and d["mean"] is None:
            d["mean"] = [float(v) for v in (u.options.mean if u.options.mean is not None else [])]
            d["std"] = [float(v) for v in (u.options.std if u.options.std is not None else [])]
    for f in d["associated_files"]:
        if f["type"] == "TENSOR_AXIS_LABELS" and f["locale"] is None and f["name"] in packed:
            lines = packed[f["name"]].decode("utf-8").split("\n")
            if lines and lines[-1] == "":
                lines.pop()  # the same rule as MediaPipe's label reader
            d["labels"] = lines
            break
    return d


def read_metadata(model_bytes: bytes) -> dict | None:
    """Decode ``TFLITE_METADATA`` into plain Python data, or None when the model has none.

    Returns ``name, version, description, author, license, min_parser_version``, ``inputs`` and ``outputs``
    (per tensor: name, description, content, color_space, mean, std, stats, associated_files, labels),
    ``associated_files`` (model level), ``packed_files`` (names found in the appended zip) and
    ``missing_files`` (associated files named in the metadata but absent from the zip: what a later
    re-serialization of the model does). Works on metadata written by other tools too.
    """
    raw = _metadata_buffer(model_bytes)
    if raw is None:
        return None
    if not _mfb.ModelMetadata.ModelMetadataBufferHasIdentifier(raw, 0):
        raise MetadataError("TFLITE_METADATA buffer lacks the 'M001' file identifier")
    mm = _mfb.ModelMetadataT.InitFromObj(_mfb.ModelMetadata.GetRootAs(raw, 0))
    packed = _packed_files(model_bytes)
    sgs = mm.subgraphMetadata or []
    sg = sgs[0] if sgs else None
    inputs = [_tensor_dict(t, packed) for t in (sg.inputTensorMetadata or [])] if sg else []
    outputs = [_tensor_dict(t, packed) for t in (sg.outputTensorMetadata or [])] if sg else []
    referenced = {f["name"] for t in inputs + outputs for f in t["associated_files"]}
    referenced |= {f["name"] for f in _files_dict(mm.associatedFiles)}
    return {
        "name": _to_str(mm.name), "version": _to_str(mm.version), "description": _to_str(mm.description),
        "author": _to_str(mm.author), "license": _to_str(mm.license),
        "min_parser_version": _to_str(mm.minParserVersion),
        "inputs": inputs, "outputs": outputs,
        "associated_files": _files_dict(mm.associatedFiles),
        "packed_files": sorted(packed),
        "missing_files": sorted(n for n in referenced if n and n not in packed),
    }


# ----------------------------------------------------------------------------------------- MediaPipe

def mediapipe_problems(model_bytes: bytes) -> list[str]:
    """Why MediaPipe Tasks' image classifier/embedder would refuse or misread this file ([] when it should work).

    Mirrors the checks of mediapipe/tasks/cc/vision/utils/image_tensor_specs.cc and
    image_preprocessing_graph.cc (MediaPipe 1.2.3; the quoted messages are MediaPipe's) plus the two silent
    failures this module knows of: a uint8 input whose quantization does not map raw pixels to the normalized
    input, and label files named in the metadata but no longer packed in the file.
    """
    problems: list[str] = []
    tfl = _load_model(model_bytes)
    if len(tfl.subgraphs or []) != 1:
        problems.append("Image tflite models are assumed to have a single subgraph.")
        return problems
    sg = tfl.subgraphs[0]
    if sg.inputs is None or len(sg.inputs) != 1:
        problems.append("Image tflite models are assumed to have a single input.")
        return problems
    t = sg.tensors[int(sg.inputs[0])]
    try:
        meta = read_metadata(model_bytes)
    except MetadataError as e:
        return [f"unreadable TFLITE_METADATA: {e}"]
    im = meta["inputs"][0] if meta and meta["inputs"] else None
    shape = [int(d) for d in (t.shape if t.shape is not None else [])]
    if len(shape) != 4:
        problems.append("Only 4D tensors in BHWD layout are supported.")
        return problems
    if t.type not in (_tfl.TensorType.UINT8, _tfl.TensorType.FLOAT32):
        problems.append(f"Type mismatch for input tensor {_to_str(t.name)}. Requested one of these types: "
                        f"uint8/float32, got {_TENSOR_TYPE_NAMES.get(t.type, t.type)}.")
    if im is not None and im["color_space"] not in (None, "RGB"):
        problems.append("Only RGB color space is supported for now.")
    if shape[0] != 1 or shape[3] not in (3, 4):
        problems.append("The input tensor should have dimensions 1 x height x width x depth, where depth = 3 or 4. "
                        f"Got {shape[0]} x {shape[1]} x {shape[2]} x {shape[3]}.")
    mean = im["mean"] if im else None
    std = im["std"] if im else None
    if mean is not None and (len(mean) != len(std) or len(mean) not in (1, 3)):
        problems.append(f"NormalizationOptions: only 1 or 3 mean and std values are supported, got {len(mean)}.")
    elif t.type == _tfl.TensorType.FLOAT32:
        if mean is None:
            problems.append("Input tensor has type float32: it requires specifying NormalizationOptions metadata "
                            "to preprocess input images.")
        elif len(set(mean)) > 1 or len(set(std)) > 1:
            problems.append("Per-channel image normalization is not available.")
        elif std[0] == 0:
            problems.append("NormalizationOptions.std_values can't be 0.")
    if t.type == _tfl.TensorType.UINT8:
        q = t.quantization
        if q is not None and q.scale is not None and len(q.scale) == 1 and mean is not None:
            err = uint8_input_error(float(q.scale[0]), int(q.zeroPoint[0]), mean, std)
            if err > UINT8_TOLERANCE_LEVELS:
                problems.append(f"uint8 input: MediaPipe feeds raw pixels, which this input's quantization maps "
                                f"{err:.1f} pixel levels away from the normalization in the metadata (wrong "
                                "predictions, no error).")
    if meta and meta["missing_files"]:
        problems.append(f"associated files named in the metadata are not packed in the file: "
                        f"{meta['missing_files']} (the model was re-serialized after the metadata was written)")
    return problems
