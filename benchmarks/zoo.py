"""Table 5: the whole zoo as a compatibility matrix. Every zoo model at a reduced input (its minimum, at least 32)
and its narrow test width, exported to every precision and validated; one row per model with the verdict of each
artifact (PASS / NOT JUDGED / FAIL / ERR: the conversion failed / - not attempted), time, and the first error.

Models run in parallel processes (``--jobs``), each with a time limit (``--timeout``). When the all-precisions
export fails, each precision is exported on its own to find which step breaks.

    python3 benchmarks/zoo.py --jobs 2                       # every zoo model
    python3 benchmarks/zoo.py --quick                        # one tiny model, fp32 + int8
"""
from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
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
    p.add_argument("--resume", action="store_true", help="skip models that already have a row in OUT/zoo_rows/")
    p.add_argument("--assemble", action="store_true", help="only build the table from OUT/zoo_rows/")
    p.add_argument("--quick", action="store_true")
    p.add_argument("--out", type=Path, default=common.RESULTS)
    p.add_argument("--one", help=argparse.SUPPRESS)  # child process: one model
    p.add_argument("--work", type=Path, help=argparse.SUPPRESS)
    return p.parse_args(argv)


def _err(e: Exception) -> str:
    return f"{type(e).__name__}: {(str(e).splitlines() or [''])[0]}"[:240]


def child(args) -> dict:
    """Export + validate one model; when the all-in-one export fails, one precision at a time."""
    from edgeconv import models
    from edgeconv.options import ValidationOptions
    from edgeconv.pipeline.export import export

    name = args.one
    info = models.model_info(name)
    size = max(args.size, info.min_input_size)
    kw = dict(out_dir=args.work, input_size=size, width=dict(info.small_kwargs), calib_samples=args.samples,
              validation=ValidationOptions(samples=args.samples), quiet=True)
    keys = args.precisions
    cells, error, t0 = {}, None, time.perf_counter()
    try:
        res = export(name, precisions=keys, **kw)
        cells = {a.key: a.verdict for a in res.validation.artifacts}
        bad = [a for a in res.validation.artifacts if not a.passed]
        if bad:
            error = f"{bad[0].file}: {'; '.join(bad[0].reasons[:1])}"[:240]
        params = res.manifest.model["params"]
    except Exception as e:  # noqa: BLE001 - a model that fails is a row of the matrix
        errors, params = [], None
        for k in keys:
            if k == "fp32":
                continue
            try:
                r = export(name, precisions=[k], **kw)
                cells.update({a.key: a.verdict for a in r.validation.artifacts})
            except Exception as e2:  # noqa: BLE001
                cells[k] = "ERR"
                errors.append(f"{k}: {_err(e2)}")
        cells.setdefault("fp32", "ERR")
        error = "; ".join(errors) or _err(e)
    return {"model": name, "size": size, "width": info.small_kwargs, "params": params, "cells": cells,
            "error": error, "seconds": time.perf_counter() - t0}


def run_child(name: str, args, work: Path) -> dict:
    cmd = [sys.executable, str(Path(__file__).resolve()), "--one", name, "--work", str(work / name),
           "--size", str(args.size), "--samples", str(args.samples), "--precisions", *args.precisions]
    t0 = time.perf_counter()
    try:
        p = subprocess.run(cmd, capture_output=True, text=True, timeout=args.timeout)
    except subprocess.TimeoutExpired:
        return {"model": name, "cells": {}, "error": f"timeout after {args.timeout:.0f} s",
                "seconds": time.perf_counter() - t0, "size": None, "params": None}
    lines = [ln for ln in p.stdout.splitlines() if ln.startswith("{")]
    if p.returncode != 0 or not lines:
        tail = (p.stderr.strip().splitlines() or ["?"])[-1][:240]
        return {"model": name, "cells": {}, "error": f"process exit {p.returncode}: {tail}",
                "seconds": time.perf_counter() - t0, "size": None, "params": None}
    out = json.loads(lines[-1])
    print(f"{name}: {out['cells']} {out['seconds']:.0f} s", flush=True)
    return out


def main(argv=None) -> dict:
    args = parse(argv)
    from edgeconv.precisions import ALL_KEYS

    from edgeconv import models

    if args.one:
        args.precisions = args.precisions or list(ALL_KEYS)
        from edgeconv.console import quiet_native

        with quiet_native():
            out = child(args)
        print(json.dumps(out), flush=True)
        return out
    if args.quick:
        names, args.precisions, args.samples = [common.QUICK_MODEL[0]], ["fp32", "int8"], 8
    else:
        pats = args.models or ["*"]
        names = sorted({n for p in pats for n in models.list_models(p)})
        args.precisions = args.precisions or list(ALL_KEYS)
    keys = [k for k in ALL_KEYS if k in args.precisions]
    names.sort(key=lambda n: models.model_info(n).params)  # light models first: a cut-off run still says most
    row_dir = args.out / ("zoo_rows" + ("_quick" if args.quick else ""))
    row_dir.mkdir(parents=True, exist_ok=True)
    todo = [] if args.assemble else [n for n in names if not (args.resume and (row_dir / f"{n}.json").exists())]

    def one(n: str, tmp: Path) -> dict:
        from edgeconv.fileio import atomic_write_json

        r = run_child(n, args, tmp)
        atomic_write_json(row_dir / f"{n}.json", r)  # each row as soon as it is known
        return r

    t0 = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="edgeconv-bench-z-") as tmp:
        with ThreadPoolExecutor(max_workers=max(1, args.jobs)) as pool:
            list(pool.map(lambda n: one(n, Path(tmp)), todo))
    wall = time.perf_counter() - t0
    results = []
    for n in names:
        f = row_dir / f"{n}.json"
        results.append(json.loads(f.read_text()) if f.exists() else
                       {"model": n, "cells": {}, "error": "not run (time limit of this benchmark session)",
                        "seconds": 0.0, "size": None, "params": None})
    rows = []
    for r in results:
        ok = r["cells"] and all(r["cells"].get(k) in ("PASS", "NOT JUDGED") for k in keys)
        rows.append([r["model"], None if r.get("size") is None else f"{r['size']}x{r['size']}",
                     ", ".join(f"{k}={v}" for k, v in (r.get("width") or {}).items()) or "default",
                     r.get("params"), *[r["cells"].get(k, "-") for k in keys], "ok" if ok else "FAILED",
                     round(r["seconds"], 1), r["error"] or "-"])
    n_ok = sum(1 for r in rows if r[-3] == "ok")
    cols = ["model", "input", "width", "params", *keys, "result", "s", "error"]
    common.write_results("table5_zoo" + ("_quick" if args.quick else ""),
                         f"Table 5: zoo compatibility matrix ({n_ok} of {len(rows)} models ok)", cols, rows,
                         command=common.command_line(), out=args.out, extra={"raw": results, "wall_seconds": wall},
                         notes=[f"{len(names)} models, --jobs {args.jobs}, wall time of the last invocation "
                                f"{wall:.0f} s, rows kept in {row_dir.name}/",
                                f"{args.samples} calibration / validation samples from the embedded photo set; "
                                "random weights, so quantized artifacts are NOT JUDGED (expected); float artifacts "
                                "are judged by atol",
                                "ok = every artifact exported, ran and passed (or was not judged)"])
    return {"rows": rows, "results": results, "keys": keys}


if __name__ == "__main__":
    main()
