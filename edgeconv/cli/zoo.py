"""``edgeconv zoo list``: the zoo registry as a table or JSON."""
from __future__ import annotations

import json

import click

from edgeconv.cli.params import debug_option, native_output

__all__ = ["zoo"]


@click.group()
def zoo():
    """The model zoo."""


def _pretrained(row: dict) -> str:
    """"imagenet (224)" / "imagenet (128/160/192/224)" / "-": the weights keras.applications publishes for the
    model and the input sizes they exist for."""
    if not row.get("pretrained"):
        return "-"
    sizes = row.get("pretrained_input_sizes") or []
    return f"{row['pretrained']} ({'/'.join(map(str, sizes))})" if sizes else row["pretrained"]


@zoo.command("list")
@click.argument("pattern", required=False)
@click.option("--json", "as_json", is_flag=True, help="Print a JSON list instead of a table.")
@debug_option
def zoo_list(pattern, as_json):
    """List zoo models (optionally matching PATTERN, e.g. 'resnet*')."""
    from edgeconv.models import zoo_rows

    with native_output():  # TensorFlow's C++ start-up lines
        rows = zoo_rows(pattern)
    if as_json:
        click.echo(json.dumps(rows, indent=2))
        return
    from edgeconv.console import print_table

    print_table(
        "edgeconv zoo",
        ["name", "family", "params", "default input", "preprocessing", "sensitive activations", "pretrained"],
        [[r["name"], r["family"], f"{r['params']:,}", "x".join(map(str, r["input_shape"])),
          r["preprocessing"]["name"], ", ".join(r["sensitive_activations"]) or "-", _pretrained(r)] for r in rows],
        right_align={"params"},
    )
