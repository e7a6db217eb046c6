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


@main.group(cls=_Group)
def zoo():
    """The model zoo."""


@zoo.command("list")
@click.argument("pattern", required=False)
@click.option("--json", "as_json", is_flag=True, help="Print a JSON list instead of a table.")
def zoo_list(pattern, as_json):
    """List zoo models (optionally matching PATTERN, e.g. 'resnet*')."""
    from .zoo import zoo_rows

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


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
