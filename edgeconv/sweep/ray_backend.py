"""The Ray backend (``edgeconv[ray]``): each cell one Ray task with declared CPU and memory needs.

The task runs the cell exactly as the local backend does (:func:`edgeconv.sweep.local.run_local` with one cell: a
fresh worker process, the same timeout and fault records) into a temporary folder on whichever node Ray chose, and
returns the outcome together with the bytes of every file of the cell's folder. The driver publishes them into
``OUT/<name>/`` atomically (staged next to it, renamed into place with ``manifest.json`` last), so the workers need
no shared file system and the artifacts are byte-for-byte what the local backend writes.

A task Ray itself loses is recorded too: ``ray.exceptions.OutOfMemoryError`` (Ray's memory monitor killed the
worker) -> ``oom``; ``WorkerCrashedError`` / ``NodeDiedError`` / ``ObjectLostError`` -> ``killed``; any other
``RayError`` -> ``failed`` (step ``ray``). Tasks are not retried (``max_retries=0``): a failure is a row, not a
silent second attempt. Ctrl-C cancels every task that has not finished.
"""
from __future__ import annotations

import os
import shutil
import tempfile
import time
from pathlib import Path

from edgeconv.errors import first_line
from edgeconv.runtime.cluster import connect, ray_module as _ray
from edgeconv.sweep.cell import outcome
from edgeconv.sweep.plan import Cell, estimate_memory

__all__ = ["run_ray", "connect", "publish_files"]


def _task(cell_dict: dict, timeout, target: str):
    """Runs on a Ray worker: the cell in its own process, into a temporary folder; -> (outcome, files, log)."""
    from edgeconv.sweep.local import run_local

    cell = Cell.from_dict(cell_dict)
    tmp = Path(tempfile.mkdtemp(prefix="edgeconv-sweep-ray-"))
    try:
        logs = tmp / "logs"
        logs.mkdir()
        (res,) = run_local([cell], tmp / "out", jobs=1, timeout=timeout, target=target, log_dir=logs)
        folder = cell.folder(tmp / "out")
        files = ({p.name: p.read_bytes() for p in folder.iterdir() if p.is_file() and not p.name.startswith(".")}
                 if folder.is_dir() else {})
        log = b"".join(p.read_bytes() for p in logs.iterdir())
        return res, files, log
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def publish_files(files: dict[str, bytes], final: Path) -> None:
    """Stage ``files`` next to ``final`` and rename them into it, ``manifest.json`` last; files of an older export
    there that this one does not have are removed (as :func:`edgeconv.pipeline.export.publish` does)."""
    from edgeconv.fileio import atomic_write_bytes

    final.parent.mkdir(parents=True, exist_ok=True)
    stage = Path(tempfile.mkdtemp(prefix=".edgeconv-partial-", dir=final.parent))
    try:
        for name, data in files.items():
            atomic_write_bytes(stage / name, data)
        final.mkdir(exist_ok=True)
        old = {p.name for p in final.iterdir() if p.is_file()} if (final / "manifest.json").exists() else set()
        for name in sorted(files, key=lambda n: n == "manifest.json"):
            os.replace(stage / name, final / name)
        for name in old - set(files):
            (final / name).unlink(missing_ok=True)
    finally:
        shutil.rmtree(stage, ignore_errors=True)


def _lost(cell: Cell, e: Exception, seconds: float) -> dict:
    ray = _ray()
    exc = ray.exceptions
    if isinstance(e, exc.OutOfMemoryError):
        return outcome(cell, "oom", None, f"Ray's memory monitor killed the task: {first_line(e)}"[:300], seconds)
    lost = tuple(getattr(exc, n) for n in ("WorkerCrashedError", "NodeDiedError", "ObjectLostError",
                                           "ActorDiedError", "LocalRayletDiedError") if hasattr(exc, n))
    if isinstance(e, lost):
        return outcome(cell, "killed", None, f"{type(e).__name__}: {first_line(e)}"[:300], seconds)
    return outcome(cell, "failed", "ray", f"{type(e).__name__}: {first_line(e)}"[:300], seconds)


def run_ray(cells: list[Cell], out_root: Path, *, timeout: float | None = None, cpus_per_cell: float = 1,
            target: str | None = None, on_done=None, log_dir: Path | None = None) -> list[dict]:
    """Run every cell as a Ray task (``ray.init`` must have been called: :func:`connect`); publish each cell's
    files under ``out_root`` as its task finishes. -> outcomes in the order they finished."""
    from edgeconv.fileio import atomic_write_bytes
    from edgeconv.sweep.local import CELL_TARGET

    ray = _ray()
    remote = ray.remote(max_retries=0)(_task)
    # Ray never schedules a task that declares more memory than any node has: cap the estimate at the largest node
    node_mem = max((n["Resources"].get("memory", 0) for n in ray.nodes() if n.get("Alive")), default=0)
    refs = {}
    for cell in cells:
        need = estimate_memory(cell)
        if node_mem:
            need = min(need, int(node_mem))
        ref = remote.options(num_cpus=cpus_per_cell, memory=need, name=f"edgeconv-sweep {cell.key}").remote(
            cell.to_dict(), timeout, target or CELL_TARGET)
        refs[ref] = (cell, time.perf_counter())
    done = []
    try:
        while refs:
            ready, _ = ray.wait(list(refs), num_returns=1, timeout=1.0)
            for ref in ready:
                cell, t0 = refs.pop(ref)
                try:
                    res, files, log = ray.get(ref)
                    if files:
                        publish_files(files, cell.folder(out_root))
                    if log_dir is not None and log:
                        atomic_write_bytes(log_dir / f"{cell.key.replace('@', '_')}.log", log)
                except ray.exceptions.RayError as e:
                    res = _lost(cell, e, time.perf_counter() - t0)
                done.append(res)
                if on_done is not None:
                    on_done(cell, res)
    except BaseException:
        for ref in refs:
            ray.cancel(ref, force=True)
        raise
    return done
