"""One converter per artifact kind: each row of the formats table (:data:`edgeconv.precisions.PRECISIONS`) carries
the function here that makes its bytes. A converter gets everything it needs in one :class:`ConvertContext` and
returns a :class:`Conversion` (bytes + typed manifest fields + warnings); it mutates nothing it was given.

The phone-ready finishing step (int8 h-swish rewrite for XNNPACK, embedded metadata) runs after the converter, in
:mod:`edgeconv.pipeline.phone_ready`, and verifies its rewrite against the Keras model on calibration inputs.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable

import numpy as np

if TYPE_CHECKING:  # pragma: no cover
    from edgeconv.options import ExportOptions
    from edgeconv.pipeline.load import LoadedModel
    from edgeconv.precisions import Precision

__all__ = ["ConvertContext", "Conversion", "convert_tflite_artifact", "convert_onnx_artifact",
           "convert_onnx_int8_artifact"]


@dataclass(frozen=True)
class ConvertContext:
    """What every converter may read: the loaded model, its one trace, calibration inputs and the options."""

    loaded: "LoadedModel"
    saved_model: Path
    calibration_x: np.ndarray | None
    options: "ExportOptions"
    onnx_fp32: bytes | None = None  # the float ONNX of this export, once made (ONNX int8 quantizes it)
    tflite_float: bytes | None = None  # the float .tflite as converted (before metadata), once made


@dataclass(frozen=True)
class Conversion:
    """A converter's result: the artifact's bytes, its layout, and typed manifest fields (``ArtifactRecord``)."""

    data: bytes
    layout: str = "nhwc"
    opset: int | None = None
    fields: dict[str, Any] = field(default_factory=dict)  # names of ArtifactRecord fields only
    warnings: tuple[str, ...] = ()


def convert_tflite_artifact(p: "Precision", ctx: ConvertContext) -> Conversion:
    """TFLite at ``p.precision`` from the traced SavedModel. fp16 (:func:`edgeconv.tflite.float16.float16_weights`)
    and int8 (with or without ``--keep-float`` layers: the export's one calibration, :func:`calibrated`) are made
    from the export's float model, not converted again."""
    from edgeconv.tflite.convert import convert_tflite, io_dtype_name

    opts = ctx.options
    io_type = io_dtype_name(p.precision, opts.io_type) if p.needs_calibration else None
    if p.key == "fp32":
        return Conversion(float_model(ctx), fields={"io_type": "float32"})
    if p.key == "fp16":  # the float model's constants stored as float16: no second graph conversion
        from edgeconv.errors import EdgeconvError
        from edgeconv.tflite.float16 import float16_weights

        fm = float_model(ctx)
        try:
            return Conversion(float16_weights(fm), fields={"io_type": "float32"})
        except EdgeconvError:  # a model it does not handle (several subgraphs): the converter's own fp16
            pass
    if p.key == "int8":
        data = calibrated(ctx).quantize(denylist=list(opts.keep_float), stats=opts.int8_ranges, io_type=opts.io_type)
        fields = {"io_type": io_type, "kept_float": list(opts.keep_float)}
        if opts.int8_ranges != "minmax":
            fields["quantization"] = f"activation ranges '{opts.int8_ranges}'"
        return Conversion(data, fields=fields)
    data = convert_tflite(ctx.saved_model, p.precision, ctx.calibration_x, opts.io_type)
    return Conversion(data, fields={"io_type": io_type or "float32"})


FLOAT_FILE, CALIBRATED_FILE = "float.tflite", "calibrated_int8.tflite"


def float_model(ctx: ConvertContext) -> bytes:
    """The export's float .tflite as the converter wrote it: ``ctx.tflite_float``, else the copy kept next to the
    trace by whichever process converted it first, else converted now (and kept)."""
    from edgeconv.fileio import atomic_write_bytes
    from edgeconv.tflite.convert import convert_tflite

    if ctx.tflite_float is not None:
        return ctx.tflite_float
    kept = Path(ctx.saved_model).parent / FLOAT_FILE
    if kept.exists():
        return kept.read_bytes()
    data = convert_tflite(ctx.saved_model, "fp32")
    atomic_write_bytes(kept, data)
    return data


def calibrated(ctx: ConvertContext):
    """The export's one int8 calibration (:class:`edgeconv.tflite.calibrate.Calibrated` of its float model on its
    calibration inputs), shared by the int8 artifact, ``--keep-float`` and every ``--fallback auto`` round: kept
    next to the trace, so the fallback in the export's process reuses what a worker calibrated."""
    from edgeconv.fileio import atomic_write_bytes
    from edgeconv.tflite.calibrate import Calibrated, calibrate

    fm = float_model(ctx)
    kept = Path(ctx.saved_model).parent / CALIBRATED_FILE
    x = ctx.calibration_x
    if kept.exists():
        return Calibrated(kept.read_bytes(), np.asarray(x, np.float32), ctx.options.io_type, str(ctx.saved_model),
                          float_model=fm)
    cal = calibrate(fm, x, ctx.options.io_type)
    cal.saved_model_dir = str(ctx.saved_model)
    atomic_write_bytes(kept, cal.model)
    return cal


# Inputs the ONNX graph rewrites are checked on: every tensor both graphs compute is compared, so one 224x224 input
# already compares millions of values per tensor; each input costs 4 onnxruntime runs with every tensor as an
# output (8 inputs took 3.5 s of MobileNetV3-Small's ONNX step, 2 take 0.9 s).
VERIFY_SAMPLES = 2


def _onnx_fp32(ctx: ConvertContext) -> tuple[bytes, dict, tuple[str, ...]]:
    from edgeconv.onnx.convert import convert_onnx

    x = ctx.calibration_x
    opts = ctx.options
    res = convert_onnx(ctx.loaded.model, opset=opts.opset, batch_size=opts.batch_size, nchw=opts.nchw,
                       verify_inputs=None if x is None else x[:VERIFY_SAMPLES])  # rewrites checked on real inputs
    return (res.model_bytes, {"onnx_rewrites": {"leftover_transposes": res.leftover_transposes,
                                                "rewrites": res.rewrites}}, tuple(res.warnings))


def convert_onnx_artifact(p: "Precision", ctx: ConvertContext) -> Conversion:
    """float32 ONNX through tf2onnx (:func:`edgeconv.onnx.convert.convert_onnx`)."""
    data, fields_, warnings = _onnx_fp32(ctx)
    return Conversion(data, "nchw" if ctx.options.nchw else "nhwc", ctx.options.opset, fields_, warnings)


def convert_onnx_int8_artifact(p: "Precision", ctx: ConvertContext) -> Conversion:
    """Static int8 ONNX: the export's float ONNX (made here when --onnx was not asked for) quantized by
    onnxruntime (:func:`edgeconv.onnx.quantize.quantize_onnx_int8`)."""
    from edgeconv.onnx.quantize import quantize_onnx_int8

    warnings: tuple[str, ...] = ()
    fp32 = ctx.onnx_fp32
    if fp32 is None:
        fp32, _, warnings = _onnx_fp32(ctx)
    notes: list[str] = []
    data = quantize_onnx_int8(fp32, ctx.calibration_x, nchw=ctx.options.nchw, warnings=notes)
    return Conversion(data, "nchw" if ctx.options.nchw else "nhwc", ctx.options.opset,
                      {"quantization": "QDQ per-channel, uint8 activations + int8 weights"}, warnings + tuple(notes))


Converter = Callable[["Precision", ConvertContext], Conversion]
