"""Shared CLI pieces: click parameter types, the --debug flag, flags generated from the formats and target tables,
and the validation options every command that validates takes. No heavy import here."""
from __future__ import annotations

import contextlib
import json
import os

import click

from edgeconv.options import ValidationOptions

__all__ = ["debug_option", "is_debug", "native_output", "KeyValue", "NumberList", "InputSize", "precision_flags",
           "validation_flags", "validation_options", "model_file_flags"]


def _set_debug(ctx, param, value):
    if value:
        ctx.meta["edgeconv.debug"] = True
    return value


def debug_option(f):
    """``--debug`` on the root and on every command (users type it at the end)."""
    return click.option("--debug", is_flag=True, expose_value=False, is_eager=True, callback=_set_debug,
                        help="Show full tracebacks and the native libraries' output (also EDGECONV_DEBUG=1).")(f)


def is_debug(ctx: click.Context | None = None) -> bool:
    ctx = ctx or click.get_current_context(silent=True)
    return os.environ.get("EDGECONV_DEBUG", "") not in ("", "0") or bool(ctx and ctx.meta.get("edgeconv.debug"))


@contextlib.contextmanager
def native_output():
    """Silence what TensorFlow / the converters / LiteRT print from C++ while the library works (the library itself
    never redirects the process's output); with --debug everything is shown."""
    if is_debug():
        yield
        return
    from edgeconv.console import quiet_native

    with quiet_native():
        yield


class KeyValue(click.ParamType):
    """``KEY=VALUE`` -> (key, value) with VALUE parsed as JSON when it is JSON (numbers, true/false), else a string."""

    name = "KEY=VALUE"

    def convert(self, value, param, ctx):
        if isinstance(value, tuple):
            return value
        key, sep, raw = str(value).partition("=")
        if not sep or not key.strip():
            self.fail(f"takes KEY=VALUE (e.g. --width groups=3), got {value!r}", param, ctx)
        try:
            parsed = json.loads(raw.lower() if raw.lower() in ("true", "false") else raw)
        except json.JSONDecodeError:
            parsed = raw
        return key.strip(), parsed


class NumberList(click.ParamType):
    """One number or three comma-separated numbers (per-channel mean / std)."""

    name = "N[,N,N]"

    def convert(self, value, param, ctx):
        if isinstance(value, tuple):
            return value
        try:
            vals = tuple(float(v) for v in str(value).split(","))
        except ValueError:
            vals = ()
        if len(vals) not in (1, 3):
            self.fail(f"takes one number or three comma-separated numbers, got {value!r}", param, ctx)
        return vals


class InputSize(click.ParamType):
    """``H`` (square) or ``HxW`` -> int or (H, W)."""

    name = "H|HxW"

    def convert(self, value, param, ctx):
        from edgeconv.errors import UsageError
        from edgeconv.options import parse_input_size

        if isinstance(value, (int, tuple)):
            return value
        try:
            return parse_input_size(str(value))
        except UsageError as e:
            self.fail(str(e).removeprefix("--input-size "), param, ctx)


def model_file_flags(f):
    """How a user's model file (and the Keras reference saved from it) is loaded: export and validate alike."""
    for opt in reversed([
        click.option("--custom-objects", "custom_objects", multiple=True, metavar="FILE.py|MODULE",
                     help="Python file (or importable module) defining the model's custom layers / functions; "
                          "imported before loading, recorded in the manifest (repeatable)."),
        click.option("--unsafe-deserialization", is_flag=True,
                     help="Allow Lambda layers: Keras' safe mode off, which runs Python code stored in the model "
                          "file. Only for files you trust."),
    ]):
        f = opt(f)
    return f


def precision_flags(f):
    """One flag per row of the formats table (``--fp16``, ``--onnx-int8``, ...), all into ``want``."""
    from edgeconv.precisions import PRECISIONS

    for p in reversed(list(PRECISIONS.values())):
        f = click.option(p.flag, "want", flag_value=p.key, multiple=True, help=p.help)(f)
    return f


def validation_flags(f):
    for opt in reversed([
        click.option("--data", type=click.Path(), help="Held-out inputs (image folder, .npy, .npz); default: the "
                     "embedded photo set's validation split (never the calibration samples)."),
        click.option("--samples", type=click.IntRange(1), default=200, show_default=True,
                     help="Number of held-out inputs."),
        click.option("--atol", type=float, help="Override the absolute tolerance of float artifacts."),
        click.option("--min-sqnr", type=float, help="Override the minimum SQNR (dB) of quantized artifacts."),
        click.option("--min-top1", type=click.FloatRange(0, 1), help="Override the minimum top-1 agreement (0-1)."),
        click.option("--labels", type=click.Path(), help="Labels (.npy / .txt, one per input) to report accuracy."),
    ]):
        f = opt(f)
    return f


def validation_options(data, samples, atol, min_sqnr, min_top1, labels, **more) -> ValidationOptions:
    return ValidationOptions(data=data, samples=samples, atol=atol, min_sqnr=min_sqnr, min_top1=min_top1,
                             labels=labels, **more)
