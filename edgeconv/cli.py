"""The command line: thin. It parses, calls the library (same names), prints. Heavy imports stay inside commands."""
from __future__ import annotations

import json
import sys

import click

from . import __version__


class _Group(click.Group):
    """Turns library errors into one line on stderr and an exit code, never a traceback."""

    def invoke(self, ctx):
        from .errors import EdgeconvError

        try:
            return super().invoke(ctx)
        except EdgeconvError as e:
            click.echo(f"Error: {e}", err=True)
            ctx.exit(e.exit_code)
        except ValueError as e:  # models.UnknownModelError and the zoo builders' argument checks
            from models import UnknownModelError

            if isinstance(e, UnknownModelError) or type(e) is ValueError:
                click.echo(f"Error: {e}", err=True)
                ctx.exit(2)
            raise


@click.group(cls=_Group, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="edgeconv")
def main():
    """Export Keras image models to TFLite and ONNX, and prove them against the Keras reference."""
    import os

    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")  # before any TensorFlow import: no C++ info/warning lines


@main.group(cls=_Group)
def zoo():
    """The model zoo."""


@zoo.command("list")
@click.argument("pattern", required=False)
@click.option("--json", "as_json", is_flag=True, help="Print a JSON list instead of a table.")
def zoo_list(pattern, as_json):
    """List zoo models (optionally matching PATTERN, e.g. 'resnet*')."""
    from .console import quiet_native
    from .zoo import zoo_rows

    with quiet_native():  # TensorFlow's C++ start-up lines
        rows = zoo_rows(pattern)
    if as_json:
        click.echo(json.dumps(rows, indent=2))
        return
    from .console import print_table

    print_table(
        "edgeconv zoo",
        ["name", "family", "params", "default input", "preprocessing", "sensitive activations"],
        [[r["name"], r["family"], f"{r['params']:,}", "x".join(map(str, r["input_shape"])),
          r["preprocessing"]["name"], ", ".join(r["sensitive_activations"]) or "-"] for r in rows],
        right_align={"params"},
    )


def _parse_width(alpha, width_items) -> dict:
    """``--alpha 0.75 --width depth_multiplier=2`` -> {"alpha": 0.75, "depth_multiplier": 2}."""
    from .errors import UsageError

    width = {} if alpha is None else {"alpha": alpha}
    for item in width_items:
        key, sep, raw = item.partition("=")
        if not sep or not key:
            raise UsageError(f"--width takes KEY=VALUE (e.g. --width groups=3), got {item!r}")
        try:
            value = json.loads(raw.lower() if raw.lower() in ("true", "false") else raw)
        except json.JSONDecodeError:
            value = raw
        width[key.strip()] = value
    return width


def _parse_preprocessing(mean, std, scale, bgr):
    """--mean/--std/--scale/--bgr -> models.Preprocessing for user models (None when none was given)."""
    if mean is None and std is None and scale is None and not bgr:
        return None
    from models import Preprocessing

    from .errors import UsageError

    def floats(text, what):
        try:
            vals = tuple(float(v) for v in str(text).split(","))
        except ValueError:
            raise UsageError(f"--{what} takes one number or three comma-separated numbers, got {text!r}") from None
        if len(vals) not in (1, 3):
            raise UsageError(f"--{what} takes one number or three comma-separated numbers, got {text!r}")
        return vals

    std_v = floats(std, "std") if std is not None else (1.0,)
    if any(v == 0 for v in std_v):
        raise UsageError("--std must not be 0")
    return Preprocessing("custom", scale=1.0 if scale is None else float(scale),
                         mean=floats(mean, "mean") if mean is not None else (0.0,), std=std_v, bgr=bgr)


def _validate_options(data, samples, atol, min_sqnr, min_top1, labels) -> dict:
    opts = {"data": data, "samples": samples, "atol": atol, "min_sqnr": min_sqnr, "min_top1": min_top1,
            "labels": labels}
    return {k: v for k, v in opts.items() if v is not None}


def _tolerance_options(f):
    for opt in reversed([
        click.option("--data", type=click.Path(), help="Held-out inputs (image folder, .npy, .npz); default: the "
                     "embedded photo set's validation split (never the calibration samples)."),
        click.option("--samples", type=click.IntRange(1), help="Number of held-out inputs [default: 200]."),
        click.option("--atol", type=float, help="Override the absolute tolerance of float artifacts."),
        click.option("--min-sqnr", type=float, help="Override the minimum SQNR (dB) of quantized artifacts."),
        click.option("--min-top1", type=click.FloatRange(0, 1), help="Override the minimum top-1 agreement (0-1)."),
        click.option("--labels", type=click.Path(), help="Labels (.npy / .txt, one per input) to report accuracy."),
    ]):
        f = opt(f)
    return f


def _print_validation(report) -> None:
    from .console import print_table
    from .report import detail_lines, table_columns, table_rows

    print_table("validation against the Keras reference", table_columns(), table_rows(report))
    for w in report.warnings:
        click.echo(f"warning: {w}", err=True)
    for line in detail_lines(report):
        click.echo(line)
    click.echo(f"{'PASS' if report.passed else 'FAIL'}: {report.summary_line()}")


@main.command()
@click.argument("model")
@click.option("--fp32", "want", flag_value="fp32", multiple=True, help="float32 TFLite (always written).")
@click.option("--fp16", "want", flag_value="fp16", multiple=True, help="float16 weights.")
@click.option("--dynamic", "want", flag_value="dynamic", multiple=True, help="Dynamic-range int8 weights.")
@click.option("--int8", "want", flag_value="int8", multiple=True, help="Full integer int8, calibrated.")
@click.option("--int16x8", "want", flag_value="int16x8", multiple=True, help="int16 activations, int8 weights.")
@click.option("--onnx", "want", flag_value="onnx", multiple=True, help="float32 ONNX through tf2onnx.")
@click.option("--onnx-int8", "want", flag_value="onnx_int8", multiple=True, help="Static int8 ONNX (QDQ).")
@click.option("--all", "all_", is_flag=True, help="Every precision and format above.")
@click.option("--io", "io_type", type=click.Choice(["int", "float"]), default="int", show_default=True,
              help="Input/output type of full-int8 TFLite.")
@click.option("--calibration", type=click.Path(), help="Image folder, .npy or .npz; default: embedded photo set.")
@click.option("--calib-samples", type=int, default=200, show_default=True)
@click.option("--out", "out_dir", type=click.Path(), default="artifacts", show_default=True)
@click.option("--input-size", type=int, help="Zoo models: square input size.")
@click.option("--classes", type=int, help="Zoo models: number of classes.")
@click.option("--alpha", type=float, help="Zoo models: width multiplier (MobileNets).")
@click.option("--width", "width_items", multiple=True, metavar="KEY=VALUE",
              help="Zoo models: any width knob of the family (e.g. groups=3, width_coefficient=0.5).")
@click.option("--weights", type=click.Path(), help="Weights file to load into a zoo model.")
@click.option("--mean", help="User models: per-channel mean (one or three comma-separated numbers).")
@click.option("--std", help="User models: per-channel std.")
@click.option("--scale", type=float, help="User models: pixel scale applied before mean/std (e.g. 0.00392157).")
@click.option("--bgr", is_flag=True, help="User models: the model expects BGR channel order.")
@click.option("--opset", type=int, default=17, show_default=True, help="ONNX opset.")
@click.option("--nchw", is_flag=True, help="ONNX input in NCHW layout.")
@click.option("--dynamic-batch", is_flag=True, help="Keep the batch dimension open (default: fixed batch 1).")
@click.option("--seed", type=int, default=0, show_default=True)
@click.option("--no-validate", is_flag=True, help="Skip the validation against the Keras reference.")
@click.option("--fallback", type=click.Choice(["none", "auto"]), default="none", show_default=True,
              help="auto: when int8 misses its target, keep the worst layers in float and re-convert.")
@click.option("--keep-float", multiple=True, metavar="LAYER", help="Keep this layer in float in int8 (repeatable).")
@click.option("--target", type=click.Choice(["cpu", "gpu", "npu"]), help="Device class defaults: cpu = XNNPACK-"
              "friendly int8, gpu = fp16 checked for the GPU delegate, npu = full int8 with int8 I/O.")
@click.option("--class-labels", type=click.Path(), help="Class names, one per line: embedded in every .tflite "
              "and written as labels.txt.")
@click.option("--model-version", default="1", show_default=True, help="Version string embedded in the metadata.")
@click.option("--no-rewrite", is_flag=True, help="Keep int8 HARD_SWISH as converted (no XNNPACK decomposition).")
@_tolerance_options
@click.option("-q", "--quiet", is_flag=True, help="No progress lines.")
def export(model, want, all_, io_type, calibration, calib_samples, out_dir, input_size, classes, alpha, width_items,
           weights, mean, std, scale, bgr, opset, nchw, dynamic_batch, seed, no_validate, fallback, keep_float,
           target, class_labels, model_version, no_rewrite, data, samples, atol, min_sqnr, min_top1, labels, quiet):
    """Export MODEL (zoo name, .keras, .h5 or SavedModel folder) to TFLite / ONNX and validate it."""
    from .console import print_table
    from .export import convert_summary, export as run_export
    from .precisions import ALL_KEYS

    keys = list(ALL_KEYS) if all_ else list(want)
    result = run_export(
        model, precisions=keys, out_dir=out_dir, calibration=calibration, calib_samples=calib_samples,
        io_type=io_type, batch_size=None if dynamic_batch else 1, input_size=input_size, classes=classes,
        width=_parse_width(alpha, width_items), weights=weights,
        preprocessing=_parse_preprocessing(mean, std, scale, bgr), opset=opset, nchw=nchw, seed=seed,
        validate=not no_validate, validate_options=_validate_options(data, samples, atol, min_sqnr, min_top1, labels),
        fallback=fallback, keep_float=list(keep_float), quiet=quiet, target=target, class_labels=class_labels,
        model_version=model_version, rewrite=not no_rewrite)
    for w in result.warnings:
        click.echo(f"warning: {w}", err=True)
    cols, rows = convert_summary(result)
    print_table(f"{result.name} -> {result.out_dir}", cols, rows, right_align={"MB", "vs fp32", "convert s"})
    if result.calibration_note:
        click.echo(f"calibration: {result.calibration_note}")
    if result.validation is not None:
        _print_validation(result.validation)
        if not result.validation.passed:
            from .errors import ValidationFailed

            raise ValidationFailed(f"validation failed: {result.validation.summary_line()} "
                                   f"(see {result.out_dir / 'report.md'})")


@main.command()
@click.argument("path", type=click.Path())
@_tolerance_options
@click.option("--layers", is_flag=True, help="Also compare every TFLite tensor with the Keras layer outputs.")
@click.option("--seed", type=int, default=0, show_default=True)
def validate(path, data, samples, atol, min_sqnr, min_top1, labels, layers, seed):
    """Validate an export folder (or one artifact in it) against its Keras reference: exit 0 pass, 1 fail."""
    from .console import quiet_native
    from .errors import ValidationFailed
    from .validate import validate as run_validation

    with quiet_native():
        report = run_validation(path, layers=layers, seed=seed,
                                **_validate_options(data, samples, atol, min_sqnr, min_top1, labels))
    _print_validation(report)
    if not report.passed:
        raise ValidationFailed(f"validation failed: {report.summary_line()}")


@main.command()
@click.argument("folder", type=click.Path())
@click.option("--threads", type=click.IntRange(1), default=1, show_default=True, help="Runtime threads.")
@click.option("--runs", type=click.IntRange(1), default=50, show_default=True, help="Timed runs per artifact.")
@click.option("--warmup", type=click.IntRange(0), default=5, show_default=True, help="Untimed runs first.")
@click.option("--no-keras", is_flag=True, help="Do not time the Keras reference (no speed-up column).")
@click.option("--revalidate", is_flag=True, help="Validate again instead of reading report.json.")
@click.option("--json", "as_json", is_flag=True, help="Print JSON instead of a table.")
def bench(folder, threads, runs, warmup, no_keras, revalidate, as_json):
    """Benchmark an export FOLDER: status, size, agreement, latency (median / p90) and speed-up vs Keras."""
    from .bench import bench as run_bench, table_columns, table_rows

    report = run_bench(folder, threads=threads, runs=runs, warmup=warmup, keras=not no_keras, revalidate=revalidate)
    if as_json:
        click.echo(json.dumps(report.to_dict(), indent=2))
        return
    from .console import print_table

    print_table(f"{report.model} {'x'.join(map(str, report.input_shape))}, {threads} thread(s), "
                f"{runs} runs after {warmup} warm-up", table_columns(), table_rows(report),
                right_align={"MB", "SQNR dB", "top-1 agr", "accuracy", "median ms", "p90 ms", "speed-up"})
    click.echo(f"quality: {report.quality_source}; Keras reference timed as a tf.function")
    for n in report.notes:
        click.echo(f"note: {n}")


@main.command("inspect")
@click.argument("file", type=click.Path())
@click.option("--json", "as_json", is_flag=True, help="Print JSON instead of tables.")
@click.option("--no-delegates", is_flag=True, help="Skip the XNNPACK and GPU-delegate checks (faster).")
def inspect_cmd(file, as_json, no_delegates):
    """Inspect a .tflite / .onnx FILE: I/O and quantization, ops, XNNPACK / GPU coverage, sizes, metadata."""
    from .console import quiet_native
    from .inspect import inspect_artifact

    with quiet_native():  # TensorFlow's C++ start-up lines
        rep = inspect_artifact(file, xnnpack=not no_delegates, gpu=not no_delegates)
    if as_json:
        click.echo(json.dumps(rep.to_dict(), indent=2))
        return
    from .console import print_table

    def q(s):
        qq = s.get("quantization")
        return f"scale {qq['scale']:.6g}, zero point {qq['zero_point']}" if qq else "-"

    print_table(f"{rep.path} I/O", ["kind", "name", "shape", "dtype", "quantization"],
                [[k, s["name"], "x".join(map(str, s["shape"])), s["dtype"], q(s)]
                 for k, specs in (("input", rep.inputs), ("output", rep.outputs)) for s in specs])
    xn = (rep.xnnpack or {}).get("by_op", {})
    print_table("ops", ["op", "count"] + (["XNNPACK"] if xn else []),
                [[op, n] + ([f"{xn[op]['delegated']}/{xn[op]['total']}"] if op in xn else []) for op, n in
                 rep.ops.items()], right_align={"count", "XNNPACK"})
    print_table("constant bytes by type", ["type", "bytes"], [[t, f"{b:,}"] for t, b in rep.size_by_type.items()],
                right_align={"bytes"})
    for line in rep.summary_lines():
        click.echo(line)
    if rep.metadata:
        click.echo(json.dumps(rep.metadata, indent=2))


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
