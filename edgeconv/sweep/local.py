"""The local backend: a bounded, memory-aware pool of worker processes, one fresh process per cell.

Why not ``concurrent.futures.ProcessPoolExecutor``: when one of its workers dies (the out-of-memory killer, a
segfault in a converter) it marks the whole pool broken and fails every pending future. Here each cell gets its own
``multiprocessing`` process (spawned: TensorFlow is not fork-safe), so a dead worker is one row and the sweep goes
on; a fresh process per cell also gives each cell TensorFlow's memory back to the system when it ends.

Scheduling: at most ``jobs`` cells run at once, and a cell starts only when its memory estimate
(:func:`edgeconv.sweep.plan.estimate_memory`) fits next to the running ones under the budget; a cell too big for the
budget on its own runs alone. Smaller cells further down the list may start first while a big one waits.

Faults, each recorded as the cell's outcome: the cell raises (``failed``, from :func:`edgeconv.sweep.cell.run_cell`);
it runs past ``timeout`` (``timeout``: SIGTERM, which unwinds the export so its staging folder is removed, then
SIGKILL after a grace period); its process dies (``oom`` when the kernel's out-of-memory killer's count went up,
else ``killed`` with the signal or exit code and the last line of its log). Ctrl-C stops the running cells the
same way and re-raises: published folders are complete (the export publishes atomically) and no staging folder
is left.
"""
from __future__ import annotations

import importlib
import json
import multiprocessing
import multiprocessing.connection
import os
import shutil
import signal
import sys
import tempfile
import time
from pathlib import Path

from edgeconv.sweep.cell import outcome
from edgeconv.sweep.plan import Cell, estimate_memory

__all__ = ["run_local", "CELL_TARGET", "TERM_GRACE"]

CELL_TARGET = "edgeconv.sweep.cell:run_cell"
TERM_GRACE = 10.0  # seconds between SIGTERM and SIGKILL
OUTCOME = "outcome.json"
LOG = "cell.log"
PARTIAL_PREFIX = ".edgeconv-partial-"  # edgeconv.pipeline.export's staging folders


def _die_with_parent() -> None:
    """Linux: the kernel sends SIGKILL to this process when the sweep (or the Ray worker) that started it dies."""
    try:
        import ctypes

        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        pass


def _child(target: str, cell: dict, out_root: str, tmp: str) -> None:
    """The worker process of one cell (its own process: stdout/stderr, temp folder and signals are its own)."""
    _die_with_parent()
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))  # unwind: the export's finally removes its staging
    log = os.open(os.path.join(tmp, LOG), os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
    os.dup2(log, 1)
    os.dup2(log, 2)
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    tempfile.tempdir = tmp  # the trace's temp folders go where the parent removes them, even after a SIGKILL
    module, func = target.split(":")
    result = getattr(importlib.import_module(module), func)(Cell.from_dict(cell), Path(out_root))
    with open(os.path.join(tmp, OUTCOME + ".part"), "w") as f:
        json.dump(result, f)
    os.replace(os.path.join(tmp, OUTCOME + ".part"), os.path.join(tmp, OUTCOME))


def oom_kills() -> int | None:
    """The kernel's count of out-of-memory kills in this cgroup (v2 ``memory.events`` or v1
    ``memory.oom_control``); None when neither is readable."""
    for f in ("/sys/fs/cgroup/memory.events", "/sys/fs/cgroup/memory/memory.oom_control"):
        try:
            for line in Path(f).read_text().splitlines():
                if line.startswith("oom_kill "):
                    return int(line.split()[1])
        except (OSError, ValueError):
            continue
    return None


class _Running:
    """One started cell."""

    def __init__(self, cell: Cell, out_root: Path, target: str):
        self.cell = cell
        self.memory = estimate_memory(cell)
        self.tmp = Path(tempfile.mkdtemp(prefix="edgeconv-sweep-cell-"))
        self.oom_before = oom_kills()
        ctx = multiprocessing.get_context("spawn")
        self.proc = ctx.Process(target=_child, args=(target, cell.to_dict(), str(out_root), str(self.tmp)),
                                name=f"edgeconv-sweep {cell.key}")
        self.start = time.perf_counter()
        self.proc.start()
        self.timed_out = False

    def stop(self) -> None:
        """SIGTERM (the export unwinds and removes its staging folder), SIGKILL after :data:`TERM_GRACE` s."""
        if self.proc.is_alive():
            self.proc.terminate()
            self.proc.join(TERM_GRACE)
        if self.proc.is_alive():
            self.proc.kill()
            self.proc.join()

    def log_tail(self, n: int = 40) -> str:
        try:
            return "\n".join(Path(self.tmp, LOG).read_text(errors="replace").splitlines()[-n:])
        except OSError:
            return ""

    def result(self, timeout: float | None) -> dict:
        seconds = time.perf_counter() - self.start
        self.proc.join()
        if self.timed_out:
            return outcome(self.cell, "timeout", None, f"timeout after {timeout:g} s", seconds)
        f = self.tmp / OUTCOME
        if f.exists():
            return json.loads(f.read_text())
        code = self.proc.exitcode
        lines = [ln for ln in self.log_tail().splitlines() if ln.strip()]
        last = lines[-1].strip()[:300] if lines else ""
        after = oom_kills()
        if code == -signal.SIGKILL and None not in (after, self.oom_before) and after > self.oom_before:
            return outcome(self.cell, "oom", None, "killed by the kernel's out-of-memory killer", seconds)
        how = f"signal {signal.Signals(-code).name}" if code is not None and code < 0 else f"exit code {code}"
        return outcome(self.cell, "killed", None, f"worker process died ({how})" + (f": {last}" if last else ""),
                       seconds)

    def cleanup(self, log_dir: Path | None) -> None:
        if log_dir is not None and (self.tmp / LOG).exists():
            from edgeconv.fileio import atomic_write_bytes

            atomic_write_bytes(log_dir / f"{self.cell.key.replace('@', '_')}.log", (self.tmp / LOG).read_bytes())
        shutil.rmtree(self.tmp, ignore_errors=True)


def remove_partial(out_root: Path, since: float) -> list[Path]:
    """Staging folders an export left behind because its process was killed (created since ``since``, epoch s).
    Called when none of this sweep's cells runs."""
    removed = []
    for d in [out_root, *[p for p in out_root.iterdir() if p.is_dir()]] if out_root.is_dir() else []:
        for p in d.glob(PARTIAL_PREFIX + "*"):
            try:
                if p.stat().st_mtime >= since - 1:
                    shutil.rmtree(p, ignore_errors=True)
                    removed.append(p)
            except OSError:
                pass
    return removed


def run_local(cells: list[Cell], out_root: Path, *, jobs: int = 1, timeout: float | None = None,
              memory_budget: int | None = None, target: str = CELL_TARGET, on_start=None, on_done=None,
              log_dir: Path | None = None) -> list[dict]:
    """Run ``cells`` (exported into ``out_root``) on at most ``jobs`` worker processes under ``memory_budget``
    bytes; -> one outcome per cell, in the order they finished. ``on_start(cell, pid)`` and
    ``on_done(cell, outcome)`` are called in this process as cells start and end. ``target``
    (``"module:function"``) is what a worker runs for a cell (default :func:`edgeconv.sweep.cell.run_cell`)."""
    out_root = Path(out_root)
    since = time.time()
    pending = list(cells)
    running: list[_Running] = []
    done: list[dict] = []

    def finish(r: _Running) -> None:
        res = r.result(timeout)
        r.cleanup(log_dir)
        running.remove(r)
        done.append(res)
        if on_done is not None:
            on_done(r.cell, res)

    try:
        while pending or running:
            used = sum(r.memory for r in running)
            for cell in list(pending):
                if len(running) >= max(1, jobs):
                    break
                need = estimate_memory(cell)
                if running and memory_budget is not None and used + need > memory_budget:
                    continue  # wait for memory; a smaller cell further down may fit now
                r = _Running(cell, out_root, target)
                running.append(r)
                pending.remove(cell)
                used += need
                if on_start is not None:
                    on_start(cell, r.proc.pid)
            now = time.perf_counter()
            wait = 1.0 if timeout is None else max(0.05, min(timeout - (now - r.start) for r in running))
            multiprocessing.connection.wait([r.proc.sentinel for r in running], timeout=min(wait, 1.0))
            for r in list(running):
                if not r.proc.is_alive():
                    finish(r)
                elif timeout is not None and time.perf_counter() - r.start > timeout:
                    r.timed_out = True
                    r.stop()
                    finish(r)
    except BaseException:  # Ctrl-C (KeyboardInterrupt) or a bug: stop the workers, keep what is published
        for r in list(running):
            r.stop()
            r.cleanup(None)
        running.clear()
        remove_partial(out_root, since)
        raise
    remove_partial(out_root, since)
    return done
