"""``edgeconv sweep``: :func:`edgeconv.sweep.run_sweep` over models x input sizes x precisions; exit 1 when any
artifact is not ok."""
from __future__ import annotations

import click

from edgeconv.cli.params import debug_option, native_output

__all__ = ["sweep"]


def _precisions(ctx, param, value):
    from edgeconv.precisions import PRECISIONS

    keys = [v.strip() for v in value.split(",") if v.strip()]
    bad = [k for k in keys if k not in PRECISIONS]
    if bad or not keys:
        raise click.BadParameter(f"unknown precision {bad[0] if bad else value!r}; choose from "
                                 f"{', '.join(PRECISIONS)}", ctx, param)
    return keys


@click.command()
@click.argument("models", nargs=-1)
@click.option("--models-file", type=click.Path(), help="Zoo names, patterns or model files, one per line.")
@click.option("--precisions", default="fp32", show_default=True, callback=_precisions,
              help="Comma-separated: fp32,fp16,dynamic,int8,int16x8,onnx,onnx_int8 (fp32 is always exported).")
@click.option("--input-size", "input_sizes", metavar="H|HxW[,...]",
              help="Input size(s), comma-separated (one cell per model and size); default: each model's own.")
@click.option("--out", "out_dir", type=click.Path(), default="sweep", show_default=True)
@click.option("--jobs", type=click.IntRange(1), default=1, show_default=True,
              help="Cells at once on this machine (a local Ray cluster started by --ray auto gets this many CPUs).")
@click.option("--timeout", type=click.FloatRange(min=0, min_open=True), help="Seconds per cell (default: none).")
@click.option("--memory", "memory_gb", type=click.FloatRange(min=0, min_open=True),
              help="Local memory budget in GB (default: 80% of what is available); a cell starts only when its "
                   "estimate fits next to the running ones.")
@click.option("--resume", is_flag=True, help="Skip cells whose published folder is complete for the same options.")
@click.option("--ray", "ray_address", metavar="ADDRESS|auto",
              help="Run each cell as a Ray task on this cluster (auto: the one on this machine, or a new local one).")
@click.option("--cpus-per-cell", type=click.FloatRange(min=0, min_open=True), default=1.0, show_default=True,
              help="CPUs each Ray task declares.")
@click.option("--bench", is_flag=True, help="Also time every artifact (median single-image latency, 1 thread).")
@click.option("--narrow", is_flag=True, help="Zoo models at their narrow test width (fast compatibility sweeps).")
@click.option("--weights", metavar="imagenet|random|FILE", help="Zoo models' weights (default: ImageNet where it fits).")
@click.option("--samples", type=click.IntRange(1), default=200, show_default=True, help="Held-out validation inputs.")
@click.option("--calib-samples", type=click.IntRange(1), default=200, show_default=True)
@click.option("--seed", type=int, default=0, show_default=True)
@debug_option
def sweep(models, models_file, precisions, input_sizes, out_dir, jobs, timeout, memory_gb, resume, ray_address,
          cpus_per_cell, bench, narrow, weights, samples, calib_samples, seed):
    """Export and validate MODELS (zoo names, patterns such as 'mobilenet*', model files) at every input size to
    every precision: one folder per model, plus sweep.json / sweep.md / sweep.csv with one row per artifact."""
    from edgeconv.console import print_table
    from edgeconv.errors import ValidationFailed
    from edgeconv.sweep import SweepOptions, expand_models, parse_sizes, plan, run_sweep
    from edgeconv.sweep.record import table

    opts = SweepOptions(out_dir=out_dir, jobs=jobs, timeout=timeout, memory_gb=memory_gb, resume=resume,
                        ray=ray_address, cpus_per_cell=cpus_per_cell).check()
    with native_output():
        cells = plan(expand_models(models, models_file), precisions, parse_sizes(input_sizes), narrow=narrow,
                     weights=weights, samples=samples, calib_samples=calib_samples, seed=seed, bench=bench)
    click.echo(f"{len(cells)} cells into {out_dir}/", err=True)

    def done(cell, res):
        what = res["status"] + (f" ({res['step']})" if res.get("step") else "")
        took = "" if res.get("seconds") is None else f" {res['seconds']:.0f} s"
        click.echo(f"{cell.key}: {what}{took}" + (f": {res['error']}" if res.get("error") else ""), err=True)

    result = run_sweep(cells, opts, on_done=done)  # the native libraries run (and print) in the workers: logs/
    headers, body = table(result.rows)
    print_table(f"edgeconv sweep: {result.summary_line()}", headers, body)
    click.echo(f"{', '.join(str(f) for f in result.files)}; {result.backend}; {result.wall_seconds:.0f} s", err=True)
    if not result.ok:
        raise ValidationFailed(f"sweep: {result.summary_line()} (see {result.files[1]})")
