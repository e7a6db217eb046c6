"""int8 that misses its target -> better activation ranges, then the fewest layers kept in float that reach it.

Everything re-quantizes one calibration (:mod:`edgeconv.tflite.calibrate`: the export's float model calibrated once,
then TF's MLIR quantizer with a denylist; ~0.2 s per attempt on the fixtures; an export hands the int8 artifact's own
calibration in, :func:`edgeconv.pipeline.convert.calibrated`). :func:`auto_fallback`:

1. round 0: the plain int8 (the user's ``--keep-float`` layers in float). It is the floor: no result that is less
   accurate (top-1 agreement, accuracy when labels are given) or has a lower SQNR is ever returned.
2. activation ranges: every :data:`edgeconv.tflite.calibrate.CANDIDATES` policy (converter min/max, percentile and
   MSE clipping, cross-layer equalization), no size or speed cost; the best one on the validation data is kept for
   what follows.
3. layer ranking by measured effect: each candidate layer is kept in float *alone* (with its neighbours: a tensor
   with an outlier-stretched range only skips int8 when its writer and its readers are float) and the output SQNR
   gain is measured (on 64 validation samples). Layers are then tried best-first, one per round, and a layer stays
   float only when the whole validation set confirms it raises the SQNR (a float island re-quantizes its output,
   which can cost more than it saves: measured -1.1 dB on one training of the tests' tiny model), until the target
   is met, the size budget
   (``max_size_ratio`` x the fp32 file) or the latency budget (``max_latency_ratio`` x fp32) would be exceeded, or
   ``max_rounds`` is reached. Each history row says what the layer bought (dB) and cost (KB, ms).
4. int16x8 of the whole model only when no int8 passed, and only within both budgets: it is about 30x slower than
   fp32 on XNNPACK (RESULTS.md table 4), so with the default latency budget it is measured, reported and refused.
   A model LiteRT cannot run as int16x8 (ViT: int16 SQUARED_DIFFERENCE in LiteRT 2.3) gets that as its verdict.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

from edgeconv.errors import EdgeconvError, UsageError
from edgeconv.verify.compare import Tolerance, _json_float, compare_outputs

__all__ = ["FallbackResult", "auto_fallback", "convert_with_keep_float", "latency_ms"]

#: Default budgets: a fallback file at most half the fp32 file (int8 is ~1/4 of it, so half the weights may go
#: float) and at most 3x the latency of the slower of fp32 and the plain int8 (int16x8 is ~30x fp32 on XNNPACK,
#: RESULTS.md table 4: refused).
MAX_SIZE_RATIO = 0.5
MAX_LATENCY_RATIO = 3.0
MAX_CANDIDATES = 48  # layers whose float effect is measured one by one (the LayerReport's worst first)


@dataclass
class FallbackResult:
    model_bytes: bytes
    kept_float: list[str]  # Keras layer names kept in float
    passed: bool
    history: list[dict] = field(default_factory=list)  # round, action, kept_float, sqnr_db, top1, bytes, latency
    precision: str = "int8"  # "int16x8" when the whole-model int16x8 was what passed
    nodes: list[str] = field(default_factory=list)  # TFLite node names kept float (the denylist)
    stats: str = "minmax"  # the activation-range policy of the returned int8
    budget: dict = field(default_factory=dict)  # fp32 bytes / latency and the limits derived from them

    def history_dicts(self) -> list[dict]:
        return [dict(h) for h in self.history]

    def to_dict(self) -> dict:
        return {"passed": self.passed, "precision": self.precision, "kept_float": self.kept_float,
                "nodes": self.nodes, "stats": self.stats, "budget": dict(self.budget),
                "history": self.history_dicts()}

    def summary(self) -> str:
        if not self.history:
            return "no fallback round ran"
        first = self.history[0]
        last = next((h for h in self.history if h.get("chosen")), first)
        what = (f"kept {len(self.kept_float)} layer(s) in float: {', '.join(self.kept_float)}" if self.kept_float
                else f"switched to {self.precision}" if self.precision != "int8"
                else policy_text(self.stats) if self.stats != "minmax" else "nothing kept in float")
        cost = (f"size {first['bytes'] / 1e3:.1f} -> {last['bytes'] / 1e3:.1f} KB, "
                f"latency {first['latency_ms']:.2f} -> {last['latency_ms']:.2f} ms, "
                f"SQNR {_db(first['sqnr_db'])} -> {_db(last['sqnr_db'])} dB")
        verdict = "passed" if self.passed else "still failing (the plain int8 is kept)" if last is first else \
            "still failing"
        return f"{verdict} after {len(self.history) - 1} attempt(s); {what}; {cost}"


def policy_text(stats: str) -> str:
    """How a report names a :data:`edgeconv.tflite.calibrate.STATS_POLICIES` choice."""
    return "cross-layer equalized ('cle')" if stats == "cle" else f"activation ranges '{stats}'"


def _db(v) -> str:
    return f"{v:.1f}" if isinstance(v, (int, float)) else str(v)


def latency_ms(model_bytes: bytes, x: np.ndarray, runs: int = 10, num_threads: int = 1) -> float:
    """Median single-input latency on LiteRT (XNNPACK on, as on a phone's CPU), after one warm-up run."""
    from edgeconv.runtime.runners import LiteRTRunner
    from edgeconv.runtime.timing import time_call

    r = LiteRTRunner(model_bytes, num_threads=num_threads)
    x1 = np.ascontiguousarray(x[:1], np.float32)
    return float(np.median(time_call(lambda: r.run(x1), runs, warmup=1)))


def convert_with_keep_float(saved_model_dir, calibration_x: np.ndarray, keep_float, io_type: str = "int",
                            calibrated=None) -> bytes:
    """int8 TFLite with the named layers (Keras layer names or TFLite node names) left in float.
    ``calibrated``: an :class:`edgeconv.tflite.calibrate.Calibrated` to reuse instead of calibrating again."""
    from edgeconv.tflite.calibrate import calibrate

    cal = calibrated or calibrate(saved_model_dir, calibration_x, io_type)
    return cal.quantize(denylist=list(keep_float), io_type=io_type)


def _evaluate(model_bytes: bytes, x, reference_outputs, tolerance: Tolerance, labels=None, outputs=None):
    """``outputs`` (OutputInfo per reference output): matched by name, each held to its kind's tolerance."""
    from edgeconv.runtime.runners import LiteRTRunner

    names = None if not outputs else [o.name for o in outputs]
    got = LiteRTRunner(model_bytes, output_names=names).run(x)
    return compare_outputs(reference_outputs, got, tolerance, labels=labels, outputs=outputs)


def _worst(cmp) -> tuple[float, float, float]:
    """(lowest SQNR, lowest top-1 agreement, lowest accuracy) over the outputs; missing figures count as 1."""
    sq = min(o.sqnr_db for o in cmp.outputs)
    top1 = min((o.top1_agreement for o in cmp.outputs if o.top1_agreement is not None), default=1.0)
    acc = min((o.accuracy for o in cmp.outputs if o.accuracy is not None), default=1.0)
    return sq, top1, acc


def _no_worse(cmp, floor) -> bool:
    """At least as accurate and as faithful as the plain int8 (``floor`` = its :func:`_worst`)."""
    sq, top1, acc = _worst(cmp)
    return sq >= floor[0] and top1 >= floor[1] and acc >= floor[2]


class _Attempts:
    """Evaluates candidate models and keeps the history rows."""

    def __init__(self, x, ref, tol, labels, budget):
        self.x, self.ref, self.tol, self.labels, self.budget = x, ref, tol, labels, budget
        self.history: list[dict] = []

    def row(self, action: str, model: bytes, cmp, kept: list[str], nodes: list[str], **extra) -> dict:
        sq, top1, acc = _worst(cmp)
        h = {"round": len(self.history), "action": action, "kept_float": kept, "nodes": list(nodes),
             "sqnr_db": round(sq, 2) if math.isfinite(sq) else _json_float(sq), "top1": top1,
             "accuracy": None if not any(o.accuracy is not None for o in cmp.outputs) else acc,
             "passed": cmp.passed, "reasons": cmp.reasons, "bytes": len(model),
             "latency_ms": round(latency_ms(model, self.x), 3), **extra}
        h["within_budget"] = (h["bytes"] <= self.budget["max_bytes"]
                              and h["latency_ms"] <= self.budget["max_latency_ms"])
        self.history.append(h)
        return h


def auto_fallback(saved_model_dir, calibration_x: np.ndarray, validation_x: np.ndarray, reference_outputs,
                  tolerance: Tolerance, *, keep_float=(), io_type: str = "int", max_rounds: int = 12,
                  layer_report=None, try_int16x8: bool = True, labels=None, max_size_ratio: float = MAX_SIZE_RATIO,
                  max_latency_ratio: float = MAX_LATENCY_RATIO, calibrated=None,
                  max_candidates: int = MAX_CANDIDATES, outputs=None, policies=None,
                  ranges: str = "minmax") -> FallbackResult:
    """Make the int8 meet ``tolerance`` on ``validation_x`` (against ``reference_outputs``, the Keras outputs) at
    the smallest cost, never returning anything less accurate than the plain int8 (module docstring).

    ``labels``: held-out labels, so accuracy is part of "no worse". ``calibrated``: a
    :class:`edgeconv.tflite.calibrate.Calibrated` of the same SavedModel to reuse. ``history`` has one row per
    attempt (SQNR, top-1, size, median latency on LiteRT/XNNPACK 1 thread, ``gain_db`` for kept layers, ``chosen``
    on the returned one). ``outputs`` (:class:`edgeconv.verify.kinds.OutputInfo` per reference output) makes the
    target per output: each is matched by name and held to its own kind's tolerance. ``policies``: the
    activation-range policies round 2 tries (default: every :data:`edgeconv.tflite.calibrate.CANDIDATES` one);
    ``ranges``: the policy of the plain int8 (round 0, the floor: the export's ``--int8-ranges``; "auto" as
    :meth:`~edgeconv.tflite.calibrate.Calibrated.quantize` resolves it).
    """
    from edgeconv.tflite.calibrate import CANDIDATES, calibrate

    if max_rounds < 1:
        raise UsageError(f"max_rounds must be >= 1, got {max_rounds}")
    if ranges not in (*CANDIDATES, "auto"):
        raise UsageError(f"ranges must be one of {(*CANDIDATES, 'auto')}, got {ranges!r}")
    if policies is not None and not set(policies) <= set(CANDIDATES):
        raise UsageError(f"policies must be among {CANDIDATES}, got {sorted(set(policies) - set(CANDIDATES))}")
    if not 0 < max_size_ratio:
        raise UsageError(f"max_size_ratio must be > 0, got {max_size_ratio}")
    x = np.asarray(validation_x, np.float32)
    cal = calibrated or calibrate(saved_model_dir, calibration_x, io_type)
    ranges = cal.best_stats() if ranges == "auto" else ranges  # what quantize(stats="auto") made
    fp32 = cal.model  # the calibrated model is the float model (plus min/max fields)
    budget = {"fp32_bytes": len(fp32), "max_bytes": int(max_size_ratio * len(fp32)),
              "fp32_latency_ms": round(latency_ms(fp32, x), 3)}
    budget["max_latency_ms"] = math.inf  # set from the plain int8's latency below
    att = _Attempts(x, reference_outputs, tolerance, labels, budget)
    base = cal.resolve(list(keep_float))
    names = lambda nodes: sorted({cal.layer_of(n) for n in nodes})  # noqa: E731

    def attempt(action, nodes, stats="minmax", precision="int8", **extra):
        model = cal.quantize(denylist=nodes, stats=stats, io_type=io_type, precision=precision)
        cmp = _evaluate(model, x, reference_outputs, tolerance, labels, outputs)
        return model, cmp, att.row(action, model, cmp, names(nodes), nodes, stats=stats, precision=precision,
                                   **extra)

    plain, cmp0, row0 = attempt("int8" + (" with --keep-float" if base else "")
                                + (f", {policy_text(ranges)}" if ranges != "minmax" else ""), base, stats=ranges)
    floor = _worst(cmp0)
    # the latency budget is relative to the slower of fp32 and the plain int8 (on tiny inputs int8 can be slower
    # than fp32: fixed per-op costs), so noise in sub-0.1 ms timings cannot refuse every attempt
    budget["max_latency_ms"] = round(max_latency_ratio * max(budget["fp32_latency_ms"], row0["latency_ms"]), 3)
    row0["within_budget"] = row0["bytes"] <= budget["max_bytes"]
    if not row0["within_budget"]:
        budget["note"] = (f"the plain int8 is already {row0['bytes'] / len(fp32):.2f}x the fp32 file: no float layer "
                          f"fits within max_size_ratio {max_size_ratio:g}")

    def done(model, nodes, row, stats="minmax", precision="int8", passed=True):
        row["chosen"] = True
        return FallbackResult(model, names(nodes), passed, att.history, precision, list(nodes), stats, budget)

    if cmp0.passed:
        return done(plain, base, row0, ranges)

    def acceptable(cmp, row) -> bool:
        return cmp.passed and _no_worse(cmp, floor) and row["within_budget"]

    # 2. activation ranges: free (same size, same speed)
    stats, best_sq = ranges, floor[0]
    for s in [p for p in (CANDIDATES if policies is None else policies) if p not in ("minmax", ranges)]:
        model, cmp, row = attempt(f"int8, {policy_text(s)}", base, stats=s)
        if acceptable(cmp, row):
            return done(model, base, row, s)
        if _no_worse(cmp, floor) and _worst(cmp)[0] > best_sq + 0.1:
            stats, best_sq = s, _worst(cmp)[0]

    # 3. rank candidate layers by what keeping each one float (with its neighbours) buys, measured
    units, seen = [], set(base)
    for n in _candidates(cal, layer_report, base)[:max_candidates]:
        unit = [m for m in cal.with_neighbours([n]) if m not in seen]
        if unit:
            units.append((n, unit))
            seen |= set(unit)
    x_rank = x[:64]  # the ranking only orders the layers; the verdicts below use all of validation_x
    ref_rank = [r[:64] for r in reference_outputs]
    start = min(o.sqnr_db for o in _evaluate(cal.quantize(base, stats=stats, io_type=io_type), x_rank, ref_rank,
                                                 tolerance, outputs=outputs).outputs)
    gains = []
    for n, unit in units:
        m = cal.quantize(base + unit, stats=stats, io_type=io_type)
        sq = min(o.sqnr_db for o in _evaluate(m, x_rank, ref_rank, tolerance, outputs=outputs).outputs)
        gains.append((sq - start, len(m), n, unit))
    gains = [g for g in gains if g[0] > 0]
    gains.sort(key=lambda g: (-g[0], g[1]))

    nodes, prev_sq = list(base), best_sq
    for rnd, (gain, _, n, unit) in enumerate(gains[:max_rounds]):
        trial = nodes + unit
        # named by what the unit keeps float (a candidate already kept by an earlier unit adds only its neighbours)
        model, cmp, row = attempt(f"keep {', '.join(names(unit))} float ({len(unit)} node(s))", trial, stats=stats,
                                  gain_db=None)
        sq = _worst(cmp)[0]
        row["gain_db"] = round(sq - prev_sq, 2) if math.isfinite(sq) else None
        if not row["within_budget"]:
            row["action"] += ": over the size/latency budget, not kept"
            break
        if acceptable(cmp, row):
            return done(model, trial, row, stats)
        # a unit is kept only when the whole validation set says it helps (the ranking saw 64 samples, and a float
        # island adds its own re-quantization): the fewest float layers, each one paying for itself
        if not (math.isfinite(sq) and sq > prev_sq + 0.05 and _no_worse(cmp, floor)):
            row["action"] += ": no gain on the validation data, not kept"
            continue
        nodes, prev_sq = trial, sq

    # 4. int16x8, whole model, last resort
    if try_int16x8:
        try:
            model, cmp, row = attempt("int16x8 (whole model)", [], precision="int16x8")
        except (EdgeconvError, RuntimeError, ValueError) as e:  # LiteRT refuses to prepare / run the file
            att.history.append({"round": len(att.history), "action": "int16x8 (whole model)", "kept_float": [],
                                "nodes": [], "sqnr_db": "nan", "top1": None, "accuracy": None, "passed": False,
                                "reasons": [f"int16x8 cannot run here: {e}"], "bytes": 0, "latency_ms": 0.0,
                                "within_budget": False, "precision": "int16x8"})
        else:
            if not row["within_budget"]:
                row["action"] += ": over the latency/size budget, not chosen"
            elif acceptable(cmp, row):
                return done(model, [], row, precision="int16x8")
    return done(plain, base, row0, ranges, passed=False)


def _candidates(cal, layer_report, base) -> list[str]:
    """Nodes to measure, most promising first: the LayerReport's worst layers (their own error's cost to the
    output), then every other node in graph order."""
    ranked: list[str] = []
    nodes = [n for n in cal.nodes() if n not in base]
    if layer_report is not None:
        for s in layer_report.worst(len(layer_report.layers)):
            ranked += [n for n in nodes if (n == s.tensor or cal.layer_of(n) == s.layer) and n not in ranked]
    return ranked + [n for n in nodes if n not in ranked]
