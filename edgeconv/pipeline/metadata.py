"""Self-describing artifacts: what an app needs to use a ``.tflite`` file, embedded in the file itself.

Format. A ``.tflite`` FlatBuffer has a ``metadata`` list of named buffers (the converter already writes
``min_runtime_version`` and ``CONVERSION_METADATA`` there; Android's TFLite Support library reads one named
``TFLITE_METADATA``). edgeconv writes one more entry, :data:`METADATA_NAME`, whose buffer is UTF-8 JSON
(schema :data:`SCHEMA`): model name and version, edgeconv version, precision, input normalization (mean / std /
scale / channel order as in :class:`models.Preprocessing`), the input value range, the pixel -> input rule, the
I/O tensors with quantization and the class labels. It is written and read with TensorFlow's own
``tensorflow.lite.tools.flatbuffer_utils`` (the ``schema_py_generated`` object API), so no new dependency.

Why not ``TFLITE_METADATA`` (the ``ModelMetadata`` FlatBuffer of ``tflite_support.metadata``)? The only maintained
writer of it was the ``tflite-support`` package: its last release (0.4.4, 2023; the repository is archived) requires
``protobuf<4`` while TensorFlow 2.21 needs protobuf >= 5, so it cannot be installed next to edgeconv's converter.
Hand-encoding that schema without its generated code would be an unverifiable re-implementation. The JSON entry is
read by ``edgeconv inspect`` and by any FlatBuffer reader (a few lines on Android: ``Model.getRootAsModel`` ->
``metadata(i)`` -> ``buffers(..)``); the labels are also written next to the artifacts as ``labels.txt``.

The same JSON goes into an ``.onnx`` file's ``metadata_props`` under the same key.
"""
from __future__ import annotations

import json
from pathlib import Path

from edgeconv import __version__
from edgeconv.errors import EdgeconvError, UsageError
from edgeconv.tflite.introspect import read_model_object  # noqa: F401 (re-exported)

__all__ = ["METADATA_NAME", "SCHEMA", "LABELS_FILE", "build_metadata", "embed_metadata", "read_metadata",
           "parse_metadata", "load_class_labels", "labels_text", "read_model_object", "embed_onnx_metadata"]

METADATA_NAME = "EDGECONV_METADATA"
SCHEMA = "edgeconv.pipeline.metadata/1"
LABELS_FILE = "labels.txt"


def build_metadata(*, name: str, version: str, precision: str, preprocessing: dict | None,
                   input_range: tuple | list | None, labels: list[str] | None = None,
                   inputs: list[dict] | None = None, outputs: list[dict] | None = None,
                   target: str | None = None, extra: dict | None = None) -> dict:
    """The metadata dict edgeconv embeds (JSON-serializable, stable key order)."""
    meta = {
        "schema": SCHEMA,
        "model": {"name": name, "version": str(version)},
        "edgeconv_version": __version__,
        "precision": precision,
        "target": target,
        "input": {
            "layout": "NHWC",
            "normalization": None if preprocessing is None else {
                k: preprocessing.get(k) for k in ("name", "scale", "mean", "std", "bgr") if k in preprocessing},
            "range": None if input_range is None else [float(input_range[0]), float(input_range[1])],
            "rule": "input = (pixel[0..255] * scale - mean) / std, channels reversed when bgr",
        },
        "inputs": inputs or [],
        "outputs": outputs or [],
        "labels": list(labels) if labels else None,
    }
    if extra:
        meta.update(extra)
    return meta


def embed_metadata(data: bytes, meta: dict) -> bytes:
    """``data`` with ``meta`` (JSON) stored under :data:`METADATA_NAME`, replacing an earlier edgeconv entry."""
    import numpy as np
    from tensorflow.lite.python import schema_py_generated as schema
    from tensorflow.lite.tools import flatbuffer_utils

    model = read_model_object(data)
    payload = np.frombuffer(json.dumps(meta, sort_keys=False).encode("utf-8"), np.uint8)
    entries = [m for m in (model.metadata or []) if _name(m.name) != METADATA_NAME]
    old = next((m for m in (model.metadata or []) if _name(m.name) == METADATA_NAME), None)
    buf = schema.BufferT()
    buf.data = payload
    if old is not None:  # reuse its buffer slot so repeated embedding does not grow the file
        model.buffers[old.buffer] = buf
        index = old.buffer
    else:
        model.buffers.append(buf)
        index = len(model.buffers) - 1
    entry = schema.MetadataT()
    entry.name = METADATA_NAME
    entry.buffer = index
    model.metadata = entries + [entry]
    return bytes(flatbuffer_utils.convert_object_to_bytearray(model))


def _name(n) -> str:
    return n.decode("utf-8") if isinstance(n, (bytes, bytearray)) else str(n)


def read_metadata(data: bytes) -> dict | None:
    """The metadata edgeconv embedded in a .tflite (bytes or path), or None."""
    if not isinstance(data, (bytes, bytearray)):
        data = Path(data).read_bytes()
    model = read_model_object(data)
    for m in model.metadata or []:
        if _name(m.name) == METADATA_NAME:
            raw = model.buffers[m.buffer].data
            return parse_metadata(bytes(bytearray(raw)).decode("utf-8"))
    return None


def parse_metadata(text: str) -> dict:
    try:
        meta = json.loads(text)
    except json.JSONDecodeError as e:
        raise EdgeconvError(f"embedded {METADATA_NAME} is not valid JSON: {e}") from None
    if not isinstance(meta, dict) or not str(meta.get("schema", "")).startswith("edgeconv.pipeline.metadata/"):
        raise EdgeconvError(f"embedded {METADATA_NAME} has an unknown schema: {meta.get('schema')!r}")
    return meta


def embed_onnx_metadata(data: bytes, meta: dict) -> bytes:
    import onnx

    proto = onnx.load_from_string(data)
    props = [p for p in proto.metadata_props if p.key != METADATA_NAME]
    del proto.metadata_props[:]
    proto.metadata_props.extend(props)
    entry = proto.metadata_props.add()
    entry.key, entry.value = METADATA_NAME, json.dumps(meta)
    return proto.SerializeToString()


def load_class_labels(path, classes: int | None = None) -> list[str]:
    """Class names from a text file, one per line (blank lines at the end ignored), or from a list / tuple of names;
    checked against ``classes``."""
    if isinstance(path, (list, tuple)):
        what = "the class-label list"
        labels = [str(n).strip() for n in path]
        if any("\n" in n for n in labels):
            raise UsageError(f"--class-labels: {what} has a name with a line break")
    else:
        p = Path(path)
        what = str(p)
        if not p.is_file():
            raise UsageError(f"--class-labels: {p} not found")
        try:
            lines = p.read_text(encoding="utf-8").splitlines()
        except UnicodeDecodeError:
            raise UsageError(f"--class-labels: {p} is not UTF-8 text (one class name per line)") from None
        while lines and not lines[-1].strip():
            lines.pop()
        labels = [ln.strip() for ln in lines]
    if not labels or any(not ln for ln in labels):
        raise UsageError(f"--class-labels: {what} must have one non-empty class name per line")
    if classes is not None and len(labels) != classes:
        raise UsageError(f"--class-labels: {what} has {len(labels)} names but the model has {classes} classes")
    return labels


def labels_text(labels: list[str]) -> str:
    return "".join(f"{ln}\n" for ln in labels)
