"""Table 5: the whole zoo as a compatibility matrix, made by ``edgeconv sweep`` (:mod:`edgeconv.sweep`). Every zoo
model at a reduced input (its minimum, at least ``--size``) and its narrow test width, exported to every precision
and validated; one row per model with the verdict of each artifact (PASS / NOT JUDGED / FAIL / ERR: the conversion
failed / - not attempted), time, and the first error.

The sweep does the work: one worker process per model (``--jobs``, memory-aware), a time limit per model
(``--timeout``), ``--resume``, ``--ray ADDRESS|auto``; when the all-precisions export fails, each precision is
exported on its own to find which breaks. Its own record (one row per artifact) is in ``OUT/zoo_sweep/sweep.md``;
this script only pivots it into the table of RESULTS.md.

    python3 benchmarks/zoo.py --jobs 2 --timeout 420         # every zoo model (50 min wall on 2 cores that also ran the tests)
    python3 benchmarks/zoo.py --quick                        # one tiny model, fp32 + int8
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path

import common


def parse(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--models", nargs="*", help="zoo names or patterns (default: all)")
    p.add_argument("--jobs", type=int, default=1)
    p.add_argument("--timeout", type=float, default=900, help="seconds per model")
    p.add_argument("--size", type=int, default=32, help="input size, raised to each model's minimum")
    p.add_argument("--samples", type=int, default=20, help="calibration and validation samples")
    p.add_argument("--precisions", nargs="*", help="default: every precision")
    p.add_argument("--resume", action="store_true", help="keep models whose folder is complete (edgeconv sweep --resume)")
    p.add_argument("--ray", help="run on a Ray cluster (ADDRESS or auto)")
    p.add_argument("--quick", action="store_true")
    p.add_argument("--out", type=Path, default=common.RESULTS)
    return p.parse_args(argv)


def cells(names: list[str], keys: list[str], size: int, samples: int):
    """One sweep cell per model: its narrow width, the input size raised to its minimum."""
    from edgeconv import models
    from edgeconv.sweep import Cell

    out = []
    for n in names:
        info = models.model_info(n)
        s = max(size, info.min_input_size)
        out.append(Cell(n, tuple(keys), (s, s), tuple(sorted(info.small_kwargs.items())), samples=samples,
                        calib_samples=samples, params=int(info.params)))
    return sorted(out, key=lambda c: c.params)  # light models first: a cut-off run still says most


def main(argv=None) -> dict:
    args = parse(argv)
    from edgeconv import models
    from edgeconv.precisions import ALL_KEYS
    from edgeconv.sweep import SweepOptions, run_sweep

    if args.quick:
        names, keys, args.samples = [common.QUICK_MODEL[0]], ["fp32", "int8"], 8
    else:
        names = sorted({n for p in (args.models or ["*"]) for n in models.list_models(p)})
        keys = [k for k in ALL_KEYS if k in (args.precisions or ALL_KEYS)]
    todo = cells(names, keys, args.size, args.samples)
    out = args.out / ("zoo_sweep" + ("_quick" if args.quick else ""))
    res = run_sweep(todo, SweepOptions(out_dir=out, jobs=args.jobs, timeout=args.timeout, resume=args.resume,
                                       ray=args.ray),
                    on_done=lambda c, r: print(f"{c.key}: {r['status']} {r.get('error') or ''}", flush=True))
    rows = []
    for c in todo:
        mine = [r for r in res.rows if r["cell"] == c.key]
        manifest = c.folder(out) / "manifest.json"
        params = json.loads(manifest.read_text())["model"]["params"] if manifest.exists() else None
        verdict = {r["precision"]: r["verdict"] or "ERR" for r in mine if r["status"] in ("ok", "failed")}
        bad = [r for r in mine if r["status"] != "ok"]
        ok = bool(mine) and not bad
        rows.append([c.name, c.size_text, ", ".join(f"{k}={v}" for k, v in c.width) or "default", params,
                     *[verdict.get(k, "-") for k in keys], "ok" if ok else "FAILED", mine[0]["seconds"] if mine else 0,
                     (f"{bad[0]['precision']}: {bad[0]['status']}" + (f" ({bad[0]['step']})" if bad[0]["step"] else "")
                      + (f": {bad[0]['error']}" if bad[0]["error"] else "")) if bad else "-"])
    n_ok = sum(1 for r in rows if r[-3] == "ok")
    cols = ["model", "input", "width", "params", *keys, "result", "s", "error"]
    common.write_results("table5_zoo" + ("_quick" if args.quick else ""),
                         f"Table 5: zoo compatibility matrix ({n_ok} of {len(rows)} models ok)", cols, rows,
                         command=common.command_line(), out=args.out,
                         extra={"sweep": str(out / "sweep.json"), "wall_seconds": res.wall_seconds},
                         notes=[f"{len(names)} models, edgeconv sweep ({res.backend}), wall time of the last "
                                f"invocation {res.wall_seconds:.0f} s; one row per artifact in {out.name}/sweep.md",
                                f"{args.samples} calibration / validation samples from the embedded photo set; "
                                "random weights, so quantized artifacts are NOT JUDGED (expected); float artifacts "
                                "are judged by atol",
                                "ok = every artifact exported, ran and passed (or was not judged)"])
    return {"rows": rows, "sweep": res, "keys": keys}


if __name__ == "__main__":
    main()
