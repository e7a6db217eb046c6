"""Wall-clock timing of single calls, the one way edgeconv measures latency (bench, fallback, benchmarks/)."""
from __future__ import annotations

import time

import numpy as np

__all__ = ["time_call", "median_p90"]


def time_call(fn, runs: int, warmup: int) -> list[float]:
    """Call ``fn`` ``warmup`` times untimed, then ``runs`` times; the wall time of each timed call in ms."""
    for _ in range(warmup):
        fn()
    out = []
    for _ in range(runs):
        t0 = time.perf_counter()
        fn()
        out.append((time.perf_counter() - t0) * 1e3)
    return out


def median_p90(ms: list[float]) -> tuple[float, float]:
    return float(np.median(ms)), float(np.percentile(ms, 90))
