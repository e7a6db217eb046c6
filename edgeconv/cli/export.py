"""``edgeconv export``: options -> :class:`~edgeconv.options.ExportOptions` -> :func:`edgeconv.pipeline.export.export`."""
from __future__ import annotations

import shlex
import sys

import click

from edgeconv.cli.params import (InputSize, KeyValue, NumberList, debug_option, model_file_flags, native_output,
                                 precision_flags, validation_flags, validation_options)
from edgeconv.options import FALLBACKS, IO_TYPES
from edgeconv.tflite.calibrate import STATS_POLICIES
from edgeconv.pipeline.phone_ready import TARGETS

__all__ = ["export", "preprocessing_from"]


def preprocessing_from(mean, std, scale, bgr):
    """--mean/--std/--scale/--bgr -> an ``edgeconv.models.Preprocessing`` for user models (None when none given)."""
    if mean is None and std is None and scale is None and not bgr:
        return None
    from edgeconv.errors import UsageError
    from edgeconv.models import Preprocessing

    std_v = std if std is not None else (1.0,)
    if any(v == 0 for v in std_v):
        raise UsageError("--std must not be 0")
    return Preprocessing("custom", scale=1.0 if scale is None else float(scale),
                         mean=mean if mean is not None else (0.0,), std=std_v, bgr=bgr)


@click.command()
@click.argument("model")
@precision_flags
@click.option("--all", "all_", is_flag=True, help="Every precision and format above.")
@click.option("--io", "io_type", type=click.Choice(IO_TYPES),
              help="Input/output type of full-int8 TFLite: uint8 (default; raw pixels in, what MediaPipe Tasks and "
                   "Android apps load), int (int8; the default of --target npu), float.")
@click.option("--calibration", type=click.Path(), help="Image folder, .npy or .npz; default: embedded photo set.")
@click.option("--calib-samples", type=click.IntRange(1), default=200, show_default=True)
@click.option("--out", "out_dir", type=click.Path(), default="artifacts", show_default=True)
@click.option("--input-size", type=InputSize(), metavar="H|HxW",
              help="H or HxW. Zoo models: the input size to build; model files with an open size (None, None, C): "
                   "the size to trace, calibrate and validate at.")
@click.option("--classes", type=int, help="Zoo models: number of classes.")
@click.option("--alpha", type=float, help="Zoo models: width multiplier (MobileNets).")
@click.option("--width", "width_items", type=KeyValue(), multiple=True,
              help="Zoo models: any width knob of the family (e.g. groups=3, width_coefficient=0.5).")
@click.option("--weights", metavar="imagenet|random|FILE",
              help="Zoo models: imagenet (keras.applications' ImageNet weights, the default where the model has them "
                   "and the build fits them), random, or a weights file (.weights.h5 / .keras).")
@click.option("--mean", type=NumberList(), help="User models: per-channel mean (one or three numbers).")
@click.option("--std", type=NumberList(), help="User models: per-channel std.")
@click.option("--scale", type=float, help="User models: pixel scale applied before mean/std (e.g. 0.00392157).")
@click.option("--bgr", is_flag=True, help="User models: the model expects BGR channel order.")
@click.option("--opset", type=int, default=17, show_default=True, help="ONNX opset.")
@click.option("--nchw", is_flag=True, help="ONNX input in NCHW layout.")
@click.option("--dynamic-batch", is_flag=True, help="Keep the batch dimension open (default: fixed batch 1).")
@click.option("--seed", type=int, default=0, show_default=True)
@click.option("--no-validate", is_flag=True, help="Skip the validation against the Keras reference.")
@click.option("--fallback", type=click.Choice(FALLBACKS), default="none", show_default=True,
              help="auto: when int8 misses its target, keep the worst layers in float and re-convert.")
@click.option("--max-size-ratio", type=float, default=0.5, show_default=True,
              help="--fallback auto: the int8 with float layers may be at most this fraction of the fp32 file.")
@click.option("--keep-float", multiple=True, metavar="LAYER", help="Keep this layer in float in int8 (repeatable).")
@click.option("--int8-ranges", type=click.Choice(STATS_POLICIES), default="minmax", show_default=True,
              help="TFLite int8 activation ranges: the converter's min/max; percentile (p9999, p99999) or MSE "
                   "clipping; cle: cross-layer equalized first (helps depthwise-separable stacks such as "
                   "MobileNetV1: +1.3 dB on RESULTS.md table 2b); auto: the best on the calibration data.")
@click.option("--target", type=click.Choice(list(TARGETS)),
              help="Device class defaults: " + "; ".join(f"{t.name} = {t.help}" for t in TARGETS.values()))
@click.option("--class-labels", type=click.Path(), help="Class names, one per line: embedded in every .tflite "
              "and written as labels.txt.")
@click.option("--output-kind", "output_kinds", type=KeyValue(), multiple=True, metavar="NAME=KIND",
              help="What an output is, where edgeconv cannot tell (repeatable): scores (class scores, e.g. logits), "
                   "regression, landmarks or embedding. Decides how validation judges it; recorded in the manifest. "
                   "Default: a softmax is class scores, other outputs of a multi-output model regression.")
@click.option("--model-version", default="1", show_default=True, help="Version string embedded in the metadata.")
@click.option("--no-rewrite", is_flag=True, help="Keep int8 HARD_SWISH as converted (no XNNPACK decomposition).")
@click.option("--ort", is_flag=True, help="Also write the ORT format (.ort, what onnxruntime Mobile loads on "
              "Android / iOS) of every ONNX artifact, and the required-operators config of a reduced build.")
@click.option("--rgb-input", is_flag=True, help="Grayscale models: export with an RGB input and a fixed RGB-to-gray "
              "front end (BT.601), so phone APIs that only take RGB images (MediaPipe Tasks) can load them.")
@model_file_flags
@validation_flags
@click.option("--jobs", type=click.IntRange(1), metavar="N",
              help="Conversions at once (this process + worker processes); default: the free CPU cores minus "
                   "one, as memory allows (on 2 cores: one after the other); 1: one after the other.")
@click.option("-q", "--quiet", is_flag=True, help="No progress lines.")
@debug_option
def export(model, want, all_, io_type, calibration, calib_samples, out_dir, input_size, classes, alpha, width_items,
           weights, mean, std, scale, bgr, opset, nchw, dynamic_batch, seed, no_validate, fallback, max_size_ratio,
           keep_float, int8_ranges, target, class_labels, output_kinds, model_version, no_rewrite, ort, rgb_input, custom_objects,
           unsafe_deserialization, data, samples, atol, min_sqnr, min_top1, labels, jobs, quiet):
    """Export MODEL (zoo name, .keras, .h5 or SavedModel folder) to TFLite / ONNX and validate it.

    Your own model: --custom-objects FILE.py for unregistered custom layers, --unsafe-deserialization for Lambda
    layers, --input-size for an open input size."""
    from edgeconv.cli.output import print_validation, print_warnings
    from edgeconv.console import print_table
    from edgeconv.errors import ValidationFailed
    from edgeconv.options import ExportOptions
    from edgeconv.pipeline.export import convert_summary, export as run_export
    from edgeconv.precisions import ALL_KEYS

    width = ({} if alpha is None else {"alpha": alpha}) | dict(width_items)
    opts = ExportOptions(
        precisions=tuple(ALL_KEYS) if all_ else tuple(want), out_dir=out_dir, calibration=calibration,
        calib_samples=calib_samples, io_type=io_type, batch_size=None if dynamic_batch else 1,
        input_size=input_size, classes=classes, width=width, weights=weights,
        preprocessing=preprocessing_from(mean, std, scale, bgr), opset=opset, nchw=nchw, seed=seed,
        validate=not no_validate, validation=validation_options(data, samples, atol, min_sqnr, min_top1, labels),
        fallback=fallback, max_size_ratio=max_size_ratio, keep_float=tuple(keep_float), int8_ranges=int8_ranges, quiet=quiet, target=target, class_labels=class_labels,
        model_version=model_version, rewrite=not no_rewrite, ort=ort, rgb_input=rgb_input, custom_objects=tuple(custom_objects),
        unsafe_deserialization=unsafe_deserialization, output_kinds=[(k, str(v)) for k, v in output_kinds],
        jobs=jobs,
        command=" ".join(shlex.quote(a) for a in ["edgeconv", *sys.argv[1:]]))
    with native_output():
        result = run_export(model, opts)
    print_warnings(result.warnings)
    cols, rows = convert_summary(result)
    print_table(f"{result.name} -> {result.out_dir}", cols, rows, right_align={"MB", "vs fp32", "convert s"})
    if result.calibration_note:
        click.echo(f"calibration: {result.calibration_note}")
    if result.validation is not None:
        print_validation(result.validation)
        if not result.validation.passed:
            raise ValidationFailed(f"validation failed: {result.validation.summary_line()} "
                                   f"(see {result.out_dir / 'report.md'})")
