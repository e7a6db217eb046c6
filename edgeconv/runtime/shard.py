"""Run one artifact on a large input set in ``jobs`` worker processes: the inputs are cut into contiguous shards,
each worker runs its shard with the same runner, and the outputs are concatenated in input order.

Exact by construction: a fixed-batch-1 artifact (every export by default) is run one input at a time whatever the
process, so the concatenated outputs are the very arrays a single-process run computes, and the caller compares
them once (:func:`edgeconv.verify.validate.validate`: every metric is then computed as in the single-process run).
An artifact with an open batch is run whole batches at a time, and a kernel may compute differently with another
batch size: it is run in this process, unsharded.

The inputs reach the workers through one ``.npy`` file each worker memory-maps (no pickled copy per worker).
Workers are spawned (TensorFlow and LiteRT are not fork-safe) and import only numpy and the artifact's runtime.
With ``ray=True`` (``ray.init`` done by the caller) the shards are Ray tasks instead: the artifact's bytes and each
shard go through Ray's object store, so the nodes need no shared file system.
"""
from __future__ import annotations

import tempfile
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from pathlib import Path

import numpy as np

from edgeconv.errors import EdgeconvError

__all__ = ["run_sharded", "shard_bounds"]


def shard_bounds(n: int, jobs: int) -> list[tuple[int, int]]:
    """``jobs`` contiguous, near-equal [start, stop) ranges covering ``range(n)`` (fewer when n < jobs)."""
    jobs = max(1, min(jobs, n))
    edges = [round(i * n / jobs) for i in range(jobs + 1)]
    return [(a, b) for a, b in zip(edges, edges[1:]) if b > a]


def _run_shard(path: str, x_file: str, start: int, stop: int, runner_kw: dict) -> list[np.ndarray]:
    from edgeconv.runtime.runners import runner_for

    x = np.load(x_file, mmap_mode="r")
    return runner_for(path, **runner_kw).run(np.asarray(x[start:stop]))


def _run_shard_bytes(name: str, data: bytes, x: np.ndarray, runner_kw: dict) -> list[np.ndarray]:
    """A Ray task: the artifact is written to a temporary file under its own name (the runner goes by suffix)."""
    from edgeconv.runtime.runners import runner_for

    with tempfile.TemporaryDirectory(prefix="edgeconv-shard-") as tmp:
        p = Path(tmp) / name
        p.write_bytes(data)
        return runner_for(p, **runner_kw).run(np.asarray(x))


def _run_on_ray(path: Path, x: np.ndarray, bounds, runner_kw: dict) -> list[list[np.ndarray]]:
    import ray

    task = ray.remote(num_cpus=runner_kw.get("num_threads", 1), max_retries=0)(_run_shard_bytes)
    data = ray.put(path.read_bytes())
    refs = [task.remote(path.name, data, ray.put(np.ascontiguousarray(x[a:b], np.float32)), runner_kw)
            for a, b in bounds]
    try:
        return ray.get(refs)
    except ray.exceptions.RayError as e:
        raise EdgeconvError(f"{path.name}: a Ray validation task failed: {type(e).__name__}") from None


def run_sharded(path, x: np.ndarray, *, jobs: int = 1, ray: bool = False, **runner_kw) -> list[np.ndarray]:
    """The artifact's outputs on ``x`` (what ``runner_for(path, **runner_kw).run(x)`` returns: ``num_threads``,
    ``layout``, ``output_names``), computed by ``jobs`` processes (``ray``: ``jobs`` Ray tasks)."""
    from edgeconv.runtime.runners import runner_for

    runner = runner_for(path, **runner_kw)
    bounds = shard_bounds(len(x), jobs)
    batch = runner.inputs[0].shape[0] if runner.inputs and runner.inputs[0].shape else -1
    if len(bounds) < 2 or batch != 1:
        return runner.run(x)
    del runner
    if ray:
        return [np.concatenate(outs, axis=0) for outs in zip(*_run_on_ray(Path(path), x, bounds, runner_kw))]
    import multiprocessing

    with tempfile.TemporaryDirectory(prefix="edgeconv-shards-") as tmp:
        x_file = str(Path(tmp) / "x.npy")
        np.save(x_file, np.ascontiguousarray(x, np.float32))
        with ProcessPoolExecutor(len(bounds), mp_context=multiprocessing.get_context("spawn")) as pool:
            futures = [pool.submit(_run_shard, str(path), x_file, a, b, runner_kw) for a, b in bounds]
            try:
                parts = [f.result() for f in futures]
            except BrokenProcessPool:
                raise EdgeconvError(f"{Path(path).name}: a validation worker process died (out of memory?); "
                                    f"run with fewer --jobs") from None
    return [np.concatenate(outs, axis=0) for outs in zip(*parts)]
