"""``edgeconv sweep``: a matrix of models x input sizes x precisions, each cell exported, validated (and timed), on
this machine (a bounded, memory-aware pool of worker processes: :mod:`edgeconv.sweep.local`) or on a Ray cluster
(:mod:`edgeconv.sweep.ray_backend`).

    >>> from edgeconv.sweep import plan, expand_models, run_sweep, SweepOptions
    >>> cells = plan(expand_models(["mobilenet*"]), ["fp32", "int8"], [(96, 96)])
    >>> result = run_sweep(cells, SweepOptions(out_dir="sweep", jobs=2))
    >>> result.rows[0]["status"], result.files

Output: one folder per model as ``edgeconv export`` writes it, plus ``sweep.json`` / ``sweep.md`` / ``sweep.csv``
(:mod:`edgeconv.sweep.record`) and ``logs/`` (each cell's worker output).
"""
from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path

from edgeconv.errors import UsageError
from edgeconv.sweep.plan import Cell, estimate_memory, expand_models, memory_budget, parse_sizes, plan
from edgeconv.sweep.record import TIMING, cell_rows, complete, load_previous, summary, write_files

__all__ = ["Cell", "SweepOptions", "SweepResult", "plan", "expand_models", "parse_sizes", "run_sweep",
           "estimate_memory", "TIMING"]


@dataclass(frozen=True)
class SweepOptions:
    """How a sweep runs (what it runs is the list of :class:`Cell`). ``jobs``: cells at once on this machine;
    ``timeout``: seconds per cell (None: no limit); ``memory_gb``: the local pool's memory budget (None: 80% of the
    memory available); ``resume``: skip cells whose published folder is complete for the same options
    (:func:`edgeconv.sweep.record.complete`); ``ray``: None (local), a cluster address or ``"auto"``;
    ``cpus_per_cell``: the CPUs a Ray task declares."""

    out_dir: str | Path = "sweep"
    jobs: int = 1
    timeout: float | None = None
    memory_gb: float | None = None
    resume: bool = False
    ray: str | None = None
    cpus_per_cell: float = 1.0
    target: str | None = None  # "module:function" run for each cell (tests); default edgeconv.sweep.cell.run_cell

    def check(self) -> "SweepOptions":
        if self.jobs < 1:
            raise UsageError(f"--jobs must be >= 1, got {self.jobs}")
        if self.timeout is not None and self.timeout <= 0:
            raise UsageError(f"--timeout must be > 0 seconds, got {self.timeout:g}")
        if self.cpus_per_cell <= 0:
            raise UsageError(f"--cpus-per-cell must be > 0, got {self.cpus_per_cell:g}")
        return self


@dataclass
class SweepResult:
    out_dir: Path
    rows: list[dict]
    cells: list[dict]  # {"cell": Cell.to_dict(), "outcome": ...} per cell, in plan order
    files: list[Path]
    backend: str
    wall_seconds: float
    resumed: list[str] = field(default_factory=list)  # keys of cells skipped by --resume
    notes: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return bool(self.rows) and all(r["status"] == "ok" for r in self.rows)

    def summary_line(self) -> str:
        return summary(self.rows)


def run_sweep(cells: list[Cell], options: SweepOptions | None = None, *, on_start=None, on_done=None) -> SweepResult:
    """Run ``cells`` (:func:`plan`) and record them; returns when every cell has a row. ``on_start(cell, pid)``
    (local backend) and ``on_done(cell, outcome)`` are called as cells start and end."""
    opts = (options or SweepOptions()).check()
    out = Path(opts.out_dir)
    keys = [c.key for c in cells]
    if len(set(keys)) != len(keys):
        raise UsageError(f"the sweep has the same cell twice: {sorted(k for k in keys if keys.count(k) > 1)[0]}")
    out.mkdir(parents=True, exist_ok=True)
    logs = out / "logs"
    logs.mkdir(exist_ok=True)
    previous = load_previous(out) if opts.resume else {}
    outcomes: dict[str, dict] = {}
    resumed = []
    for c in cells:
        prev = (previous.get(c.key) or {}).get("outcome")
        if opts.resume and complete(c, out) and (prev is None or prev["status"] == "ok") and (
                not c.bench or (prev and prev.get("latency_ms"))):
            outcomes[c.key] = {**(prev or {"key": c.key, "status": "ok", "step": None, "error": None,
                                             "seconds": None, "peak_mb": None, "latency_ms": {}}), "resumed": True}
            resumed.append(c.key)
    todo = [c for c in cells if c.key not in outcomes]
    t0 = time.perf_counter()
    notes: list[str] = []
    if opts.ray:
        from edgeconv.sweep.ray_backend import connect

        backend = "ray: " + connect(opts.ray, num_cpus=opts.jobs)
    else:
        budget = memory_budget(opts.memory_gb)
        backend = f"local: {opts.jobs} worker process(es), memory budget {budget / 1e9:.1f} GB"
    notes.append(f"backend {backend}")
    if resumed:
        notes.append(f"--resume: {len(resumed)} of {len(cells)} cells were complete and kept")

    def record() -> SweepResult:
        ordered = [c for c in cells if c.key in outcomes]
        rows = [r for c in ordered for r in cell_rows(c, outcomes[c.key], out)]
        entries = [{"cell": c.to_dict(), "command": c.command(), "outcome": outcomes[c.key]} for c in ordered]
        wall = time.perf_counter() - t0
        meta = {"backend": backend, "jobs": opts.jobs, "timeout": opts.timeout, "wall_seconds": round(wall, 1),
                "planned": len(cells), "resumed": resumed}
        files = write_files(out, entries, rows, meta, notes)
        return SweepResult(out, rows, entries, files, backend, wall, resumed, notes)

    def done(cell: Cell, res: dict) -> None:
        outcomes[cell.key] = res
        record()
        if on_done is not None:
            on_done(cell, res)

    if opts.ray:
        from edgeconv.sweep.ray_backend import run_ray

        run_ray(todo, out, timeout=opts.timeout, cpus_per_cell=opts.cpus_per_cell, target=opts.target,
                on_done=done, log_dir=logs)
    else:
        from edgeconv.sweep.local import CELL_TARGET, run_local

        run_local(todo, out, jobs=opts.jobs, timeout=opts.timeout, memory_budget=budget,
                  target=opts.target or CELL_TARGET, on_start=on_start, on_done=done, log_dir=logs)
    return record()
