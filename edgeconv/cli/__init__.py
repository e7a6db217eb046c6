"""The command line: thin. Each command is one module that parses, calls the library (same names), prints.

Error path (the only place exceptions become exit codes):
- :class:`~edgeconv.errors.EdgeconvError` (the user's problem) -> ``Error: <one line>``, its exit code (1, or 2 for
  usage errors); click's own usage errors -> one line, exit 2.
- anything else is a bug -> ``Error: internal error: <type>: <first line> (run with --debug for the traceback)``,
  exit 1; never reported as a usage error.
- ``--debug`` (on the root or any command) or ``EDGECONV_DEBUG=1``: full tracebacks, and native (TensorFlow, LiteRT,
  converter) output is not silenced.

Heavy libraries are imported inside the commands, so ``edgeconv --help`` is instant.
"""
from __future__ import annotations

import os
import sys
import traceback

import click

from edgeconv import __version__
from edgeconv.cli.params import debug_option, is_debug

__all__ = ["main"]


class _Group(click.Group):
    """Turns errors into one line on stderr and an exit code (see the module docstring)."""

    def invoke(self, ctx):
        from edgeconv.errors import EdgeconvError, first_line

        try:
            return super().invoke(ctx)
        except EdgeconvError as e:
            if is_debug(ctx):
                traceback.print_exc()
            click.echo(f"Error: {first_line(e)}", err=True)
            ctx.exit(e.exit_code)
        except click.UsageError as e:  # click's own (bad option values, missing arguments): one line, exit 2
            if is_debug(ctx):
                raise
            click.echo(f"Error: {first_line(e.format_message())}", err=True)
            ctx.exit(2)
        except (click.exceptions.Exit, click.exceptions.Abort, click.ClickException, KeyboardInterrupt):
            raise
        except Exception as e:  # noqa: BLE001 - a bug: one line, exit 1, never a usage error
            if is_debug(ctx):
                raise
            click.echo(f"Error: internal error: {type(e).__name__}: {first_line(e)} (this is a bug in edgeconv; "
                       f"run with --debug for the traceback)", err=True)
            ctx.exit(1)


@click.group(cls=_Group, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="edgeconv")
@debug_option
def main():
    """Export Keras image models to TFLite and ONNX, and prove them against the Keras reference."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")  # before any TensorFlow import: no C++ info/warning lines


def _register() -> None:
    from edgeconv.cli import bench, export, inspect, sweep, validate, zoo

    main.add_command(zoo.zoo)
    main.add_command(export.export)
    main.add_command(validate.validate)
    main.add_command(bench.bench)
    main.add_command(inspect.inspect_cmd)
    main.add_command(sweep.sweep)


_register()

if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
