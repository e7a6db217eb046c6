"""Independent conversions of one export, run at the same time in worker processes.

TF's TFLite converter holds the GIL (and is not thread-safe: two conversions in threads of one process crash it), so
concurrency means processes. A worker is ``python -m edgeconv.pipeline.workers``: it imports TensorFlow as soon as
it starts (while the export loads, calibrates and traces in the parent), then loads the export's byte-deterministic
Keras reference (``<name>.keras``, the model the parent converts) and runs
:func:`edgeconv.pipeline.export.convert_one` for the precisions it is sent, writing into the same staging folder.
The same converter on the same SavedModel and calibration inputs gives the same bytes in any process
(``tests/test_workers.py`` checks parallel against sequential byte for byte).

Workers are plain subprocesses speaking length-prefixed pickles over their stdin / a private copy of their stdout
(fd 1 itself goes to stderr, where TF's native logging lands), not ``multiprocessing``: spawn-based pools re-import
the caller's ``__main__``, which breaks library calls from unguarded scripts.

How many (:func:`worker_count`): conversions at once = this process + workers, at most the CPU cores this process
may use that other work does not keep busy (:func:`free_cores`, the load average) minus one, because the export's
own process keeps more than one core busy at times (TensorFlow's thread pools) and a worker's TensorFlow import costs
~5 s of CPU: on 2 cores, MobileNetV3-Small's ``--fp16 --int8 --onnx`` export took 28.2 s with a worker and 24.3 s
without (CPU 44 s vs 25 s; benchmarks/export_time.py, 2026-12-02), the number of independent conversions, and what
the available memory holds: each worker costs about
``WORKER_BASE_BYTES`` (TensorFlow + the converter) plus ``WORKER_MODEL_FACTOR`` x the SavedModel's size (the
converter holds the graph, its variables and the MLIR module's constants several times over; ~6x measured on
MobileNets, 8x with margin), and 1 GB is left to the parent. A ResNet-152 (230 MB of variables) then needs ~2.6 GB
per worker; a machine with less free memory converts it in this process only. ``ExportOptions.jobs`` overrides the
core bound (1 = sequential).
"""
from __future__ import annotations

import os
import pickle
import struct
import subprocess
import sys
from pathlib import Path

__all__ = ["worker_count", "WorkerPool", "available_memory", "free_cores"]

WORKER_BASE_BYTES = 900 * 2 ** 20
WORKER_MODEL_FACTOR = 8
PARENT_RESERVE_BYTES = 2 ** 30
MIN_PARAMS = 500_000  # below: a TFLite conversion takes ~1 s, less than a worker's start (TF import, ~4 s)


def cpu_count() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # pragma: no cover - not Linux
        return os.cpu_count() or 1


def free_cores() -> int:
    """The cores this process may use minus those other work keeps busy (the 1-minute load average beyond this
    process's own 1, rounded): ``make -l``'s rule. On a machine already running other jobs (a test runner, a sweep,
    a CI neighbour) an automatic export then converts in this process, instead of paying each worker's TensorFlow
    import (~4 s of CPU) for cores that are not free. At least 1."""
    try:
        others = max(0.0, os.getloadavg()[0] - 1.0)
    except (AttributeError, OSError):  # pragma: no cover - not Unix
        others = 0.0
    return max(1, cpu_count() - int(others + 0.5))


def available_memory() -> int | None:
    """Bytes of memory available to new processes (Linux ``MemAvailable``), None when unknown."""
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return None


def _dir_bytes(path: Path) -> int:
    return sum(f.stat().st_size for f in Path(path).rglob("*") if f.is_file())


def worker_count(tasks: int, jobs: int | None, saved_model: Path | None = None, params: int | None = None
                 ) -> tuple[int, str]:
    """-> (worker processes to start, why). ``tasks`` is the number of conversions that could run apart; ``params``
    the model's parameter count: automatically (``jobs`` None) a model under :data:`MIN_PARAMS` gets none (its
    conversions take less than a worker's start)."""
    lanes = max(1, free_cores() - 1) if jobs is None else jobs
    want = max(0, min(lanes, tasks) - 1)
    if want == 0:
        return 0, "sequential" if jobs == 1 else f"{tasks} conversion(s), {lanes} lane(s)"
    if jobs is None and params is not None and params < MIN_PARAMS:
        return 0, f"small model ({params:,} parameters): converted faster than a worker starts"
    avail = available_memory()
    if avail is not None and saved_model is not None:
        per = WORKER_BASE_BYTES + WORKER_MODEL_FACTOR * _dir_bytes(saved_model)
        fit = max(0, (avail - PARENT_RESERVE_BYTES) // per)
        if fit < want:
            return int(fit), (f"memory: {avail / 2 ** 30:.1f} GB available holds {fit} worker(s) of "
                              f"~{per / 2 ** 30:.1f} GB")
    return want, f"{want + 1} conversions at once ({'--jobs' if jobs else f'{lanes} free core(s)'})"


def _send(stream, obj) -> None:
    data = pickle.dumps(obj, protocol=pickle.HIGHEST_PROTOCOL)
    stream.write(struct.pack("<Q", len(data)) + data)
    stream.flush()


def _recv(stream):
    head = stream.read(8)
    if len(head) < 8:
        raise EOFError("worker closed its pipe")
    (n,) = struct.unpack("<Q", head)
    return pickle.loads(stream.read(n))


class WorkerPool:
    """``size`` worker processes, started at once so TensorFlow's import overlaps the parent's work. ``init`` sends
    what every conversion needs; ``submit`` / ``collect`` move one precision at a time."""

    def __init__(self, size: int):
        import edgeconv

        root = str(Path(edgeconv.__file__).resolve().parent.parent)
        env = dict(os.environ, PYTHONPATH=os.pathsep.join([root, os.environ.get("PYTHONPATH", "")]).rstrip(os.pathsep))
        self.procs = [subprocess.Popen([sys.executable, "-m", "edgeconv.pipeline.workers"], stdin=subprocess.PIPE,
                                       stdout=subprocess.PIPE, env=env) for _ in range(size)]
        self.busy: dict[int, object] = {}  # worker index -> key of the precision it converts
        self.started: set[int] = set()  # workers that said they have imported TensorFlow
        self.initialized: set[int] = set()  # workers that got the export's payload (:meth:`init`)
        self.dead: set[int] = set()  # workers that exited before they started
        self.payload = None

    def __len__(self) -> int:
        return len(self.procs)

    def init(self, payload) -> None:
        """What every conversion of this export needs; sent to a worker with its first conversion (a worker still
        importing TensorFlow is not waited for)."""
        self.payload, self.initialized = payload, set()

    def idle(self, wait: bool = False) -> list[int]:
        """Workers ready for a conversion: started (TensorFlow imported) and not busy. Without ``wait`` this never
        blocks: until a worker has started, the export's own process converts (a small model may be done before any
        worker is); with ``wait`` (an explicit ``--jobs``) it waits for every worker to start."""
        import select

        waiting = [i for i in range(len(self.procs)) if i not in self.started | self.dead]
        while waiting:
            r, _, _ = select.select([self.procs[i].stdout for i in waiting], [], [], None if wait else 0)
            for i in waiting:
                if self.procs[i].stdout in r:
                    try:
                        status, _ = _recv(self.procs[i].stdout)
                    except EOFError:  # it could not start (its stderr says why): convert without it
                        status = "dead"
                    (self.started if status == "started" else self.dead).add(i)
            waiting = [i for i in waiting if i not in self.started | self.dead] if wait else []
        return [i for i in sorted(self.started) if i not in self.busy]

    def submit(self, i: int, key, task) -> None:
        if i not in self.initialized:
            _send(self.procs[i].stdin, ("init", self.payload))
            self.initialized.add(i)
        _send(self.procs[i].stdin, ("convert", task))
        self.busy[i] = key

    def ready(self) -> list[int]:
        """Busy workers whose answer is waiting (non-blocking)."""
        import select

        if not self.busy:
            return []
        r, _, _ = select.select([self.procs[i].stdout for i in self.busy], [], [], 0)
        return [i for i in self.busy if self.procs[i].stdout in r]

    def collect(self, i: int):
        """-> (key, result); re-raises what the worker raised (an EdgeconvError stays one)."""
        key = self.busy.pop(i)
        try:
            status, value = _recv(self.procs[i].stdout)
        except EOFError:
            from edgeconv.errors import InternalError

            raise InternalError(f"the conversion worker for {key} died (exit {self.procs[i].poll()})") from None
        if status == "error":
            raise value
        return key, value

    def shrink(self, size: int) -> None:
        """Keep ``size`` workers (the memory bound, known once the model is traced); stop the others."""
        extra, self.procs = self.procs[size:], self.procs[:size]
        self.started &= set(range(size))
        self.dead &= set(range(size))
        _stop(extra)

    def release(self) -> None:
        """Tell every worker to exit without waiting for it: a worker with TensorFlow loaded takes 1-2 s to exit,
        time the export spends validating instead; :meth:`close` reaps them."""
        for p in self.procs:
            try:
                p.stdin.close()
            except OSError:
                pass

    def close(self) -> None:
        _stop(self.procs)
        self.procs = []
        self.busy = {}
        self.started = set()


def _stop(procs) -> None:
    """Close each worker's input (it exits after its current conversion) and wait for it; kill after 10 s."""
    for p in procs:
        try:
            p.stdin.close()
        except OSError:
            pass
    for p in procs:
        try:
            p.wait(timeout=10)
        except subprocess.TimeoutExpired:
            p.kill()
            p.wait()
        if p.stdout is not None:
            p.stdout.close()


def _serve(proto_in, proto_out) -> None:  # pragma: no cover - runs in the worker process
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    import tensorflow  # noqa: F401 - the slow import, done while the parent still prepares
    from tensorflow.lite.python import lite  # noqa: F401

    _send(proto_out, ("started", None))
    state: dict = {}
    while True:
        try:
            kind, payload = _recv(proto_in)
        except EOFError:
            return
        try:
            if kind == "init":
                state.clear()
                state.update(payload)
                continue
            from edgeconv.pipeline.export import convert_in_worker

            result = ("ok", convert_in_worker(state, payload))
        except BaseException as e:  # noqa: BLE001 - handed back to the parent, which decides
            try:
                pickle.dumps(e)
                result = ("error", e)
            except Exception:  # noqa: BLE001 - an exception that does not pickle becomes a plain one
                result = ("error", RuntimeError(f"{type(e).__name__}: {e}"))
        _send(proto_out, result)


def main() -> None:  # pragma: no cover - the worker process
    proto_out = os.fdopen(os.dup(1), "wb")
    os.dup2(2, 1)  # native and Python prints go to stderr, never into the protocol
    sys.stdout = sys.stderr
    _serve(sys.stdin.buffer, proto_out)


if __name__ == "__main__":  # pragma: no cover
    main()
