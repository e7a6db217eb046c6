"""One cell, in the process that runs it: export -> validate (-> bench) through the library's Python API.

:func:`run_cell` never raises for the cell's own failures: a step that raises becomes an outcome with the step's
name and the error's first line (``MemoryError``: status ``oom``). The outcome is plain JSON, so it crosses process
and Ray boundaries unchanged; the rows are made from it and the published folder (:mod:`edgeconv.sweep.record`).
"""
from __future__ import annotations

import resource
import time
from dataclasses import replace
from pathlib import Path

from edgeconv.errors import EdgeconvError, first_line
from edgeconv.sweep.plan import Cell

__all__ = ["run_cell", "outcome", "BENCH_RUNS", "BENCH_WARMUP"]

BENCH_RUNS = 30
BENCH_WARMUP = 3


def outcome(cell: Cell, status: str, step: str | None = None, error: str | None = None, seconds: float = 0.0,
            **extra) -> dict:
    """The record of one cell run. ``status``: ok / failed (``step`` says which: export, validate, bench) /
    timeout / oom / killed."""
    return {"key": cell.key, "status": status, "step": step, "error": error, "seconds": round(seconds, 2),
            "peak_mb": extra.pop("peak_mb", None), "latency_ms": extra.pop("latency_ms", {}), **extra}


def _error_line(e: BaseException) -> str:
    line = first_line(e) if isinstance(e, EdgeconvError) else f"{type(e).__name__}: {first_line(e)}"
    return line[:300]


def _peak_mb() -> float:
    return round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)  # Linux: kilobytes


def run_cell(cell: Cell, out_root: Path) -> dict:
    """Export ``cell`` into ``out_root`` (its folder: :meth:`Cell.folder`), validate it (report.json in the
    folder) and, with ``cell.bench``, time every artifact (LiteRT / onnxruntime, one thread).

    When the export of all precisions fails, each precision is tried alone with fp32 to find which break; the
    others are then exported, validated and published, and the outcome's ``broken`` names each broken precision
    with its error (its ``command`` is the export that was published)."""
    from edgeconv.pipeline.export import export
    from edgeconv.verify.validate import validate

    t0 = time.perf_counter()
    step = "export"
    latency: dict[str, float] = {}
    broken: dict[str, str] = {}
    try:
        try:
            result = export(cell.model, cell.export_options(out_root))
        except Exception as e:  # noqa: BLE001 - which precision breaks? (the others are still worth having)
            broken = _broken_precisions(cell, e)
            if not broken or len(broken) == len(cell.precisions) - 1:
                raise
            cell = replace(cell, precisions=tuple(p for p in cell.precisions if p not in broken))
            result = export(cell.model, cell.export_options(out_root))
        step = "validate"
        validate(result.out_dir, cell.validation_options())
        if cell.bench:
            from edgeconv.runtime.bench import bench

            step = "bench"
            rep = bench(result.out_dir, runs=BENCH_RUNS, warmup=BENCH_WARMUP, keras=False)
            latency = {r.file: round(r.median_ms, 3) for r in rep.rows if r.median_ms is not None}
    except MemoryError as e:
        return outcome(cell, "oom", step, _error_line(e) or "MemoryError", time.perf_counter() - t0,
                       peak_mb=_peak_mb())
    except Exception as e:  # noqa: BLE001 - a cell that fails is a row of the sweep, not the end of it
        return outcome(cell, "failed", step, _error_line(e), time.perf_counter() - t0, peak_mb=_peak_mb(),
                       latency_ms=latency)
    extra = {"broken": broken, "command": cell.command()} if broken else {}
    return outcome(cell, "ok", None, None, time.perf_counter() - t0, peak_mb=_peak_mb(), latency_ms=latency,
                   **extra)


def _broken_precisions(cell: Cell, error: Exception) -> dict[str, str]:
    """The export of several precisions failed: export fp32 with each other precision alone (into a scratch folder,
    nothing published) -> {precision: its error line} of those that fail. Empty when fp32 alone fails (nothing
    can be exported) or no precision fails alone."""
    import tempfile

    from edgeconv.pipeline.export import export

    others = [p for p in cell.precisions if p != "fp32"]
    if len(others) < 2:
        return {}
    out: dict[str, str] = {}
    with tempfile.TemporaryDirectory(prefix="edgeconv-sweep-isolate-") as tmp:
        for p in others:
            try:
                export(cell.model, replace(cell.export_options(Path(tmp)), precisions=("fp32", p), out_dir=tmp))
            except Exception as e:  # noqa: BLE001
                out[p] = _error_line(e)
    return out
