"""``edgeconv bench``: :func:`edgeconv.runtime.bench.bench` on an export folder."""
from __future__ import annotations

import json

import click

from edgeconv.cli.params import debug_option, native_output

__all__ = ["bench"]


@click.command()
@click.argument("folder", type=click.Path())
@click.option("--threads", type=click.IntRange(1), default=1, show_default=True, help="Runtime threads.")
@click.option("--runs", type=click.IntRange(1), default=50, show_default=True, help="Timed runs per artifact.")
@click.option("--warmup", type=click.IntRange(0), default=5, show_default=True, help="Untimed runs first.")
@click.option("--no-keras", is_flag=True, help="Do not time the Keras reference (no speed-up column).")
@click.option("--revalidate", is_flag=True, help="Validate again instead of reading report.json.")
@click.option("--json", "as_json", is_flag=True, help="Print JSON instead of a table.")
@debug_option
def bench(folder, threads, runs, warmup, no_keras, revalidate, as_json):
    """Benchmark an export FOLDER: status, size, agreement, latency (median / p90) and speed-up vs Keras."""
    from edgeconv.runtime.bench import bench as run_bench, table_columns, table_rows

    with native_output():
        report = run_bench(folder, threads=threads, runs=runs, warmup=warmup, keras=not no_keras, revalidate=revalidate)
    if as_json:
        click.echo(json.dumps(report.to_dict(), indent=2))
        return
    from edgeconv.console import print_table

    print_table(f"{report.model} {'x'.join(map(str, report.input_shape))}, {threads} thread(s), "
                f"{runs} runs after {warmup} warm-up", table_columns(), table_rows(report),
                right_align={"MB", "SQNR dB", "top-1 agr", "accuracy", "median ms", "p90 ms", "speed-up"})
    click.echo(f"quality: {report.quality_source}; Keras reference timed as a tf.function")
    for n in report.notes:
        click.echo(f"note: {n}")
