"""``edgeconv inspect``: :func:`edgeconv.inspect.inspect_artifact` as tables or JSON."""
from __future__ import annotations

import json

import click

from edgeconv.cli.params import debug_option, native_output

__all__ = ["inspect_cmd"]


@click.command("inspect")
@click.argument("file", type=click.Path())
@click.option("--json", "as_json", is_flag=True, help="Print JSON instead of tables.")
@click.option("--no-delegates", is_flag=True, help="Skip the XNNPACK and GPU-delegate checks (faster).")
@debug_option
def inspect_cmd(file, as_json, no_delegates):
    """Inspect a .tflite / .onnx FILE: I/O and quantization, ops, XNNPACK / GPU coverage, sizes, metadata."""
    from edgeconv.inspect import inspect_artifact

    with native_output():  # TensorFlow's C++ start-up lines
        rep = inspect_artifact(file, xnnpack=not no_delegates, gpu=not no_delegates)
    if as_json:
        click.echo(json.dumps(rep.to_dict(), indent=2))
        return
    from edgeconv.console import print_table

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
