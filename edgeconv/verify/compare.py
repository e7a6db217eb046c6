"""Metrics and per-precision tolerances: one artifact's outputs against the Keras reference (Polygraphy-style).

:func:`compare_outputs` computes, per output, max/mean abs error, cosine similarity, SQNR and PSNR in dB and top-1 /
top-5 agreement (plus accuracy when labels are given), then applies a :class:`Tolerance`: every check is one
pass/fail line. Float artifacts are judged by an absolute tolerance; quantized ones by SQNR and top-1 agreement,
because an int8 softmax is off by a few quantization steps everywhere and an atol says nothing about that.
"""
from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field, replace

import numpy as np

__all__ = ["Tolerance", "Check", "OutputComparison", "Comparison", "default_tolerance", "tolerance_for",
           "compare_outputs", "sqnr_db", "psnr_db", "topk_agreement", "rel_error"]


@dataclass(frozen=True)
class Tolerance:
    """What an artifact must meet. ``None`` = not checked.

    ``atol``/``rtol``: every element must satisfy ``|got - ref| <= atol + rtol * |ref|`` (numpy ``allclose`` rule).
    ``min_sqnr``: signal-to-quantization-noise ratio in dB. ``min_top1``: fraction of samples whose arg-max agrees
    with the reference (class-score outputs only). ``min_cosine``: mean per-sample cosine similarity.
    ``max_rel_error``: the largest absolute error as a fraction of the reference's range (max - min of the output;
    regression / landmark / embedding outputs, :mod:`edgeconv.verify.kinds`).
    """

    atol: float | None = None
    rtol: float | None = None
    min_sqnr: float | None = None
    min_top1: float | None = None
    min_cosine: float | None = None
    max_rel_error: float | None = None

    def to_dict(self) -> dict:
        return {k: v for k, v in asdict(self).items() if v is not None}

    @classmethod
    def from_dict(cls, d: dict) -> "Tolerance":
        return cls(**{k: d[k] for k in ("atol", "rtol", "min_sqnr", "min_top1", "min_cosine", "max_rel_error")
                     if k in d})

    def describe(self) -> str:
        """Short, for tables: "atol 1e-4 + rtol 1e-4", "SQNR>=20dB top-1>=90%"."""
        parts = []
        if self.atol is not None:
            parts.append(f"atol {_short(self.atol)}" + (f" + rtol {_short(self.rtol)}" if self.rtol else ""))
        if self.min_sqnr is not None:
            parts.append(f"SQNR>={self.min_sqnr:g}dB")
        if self.min_top1 is not None:
            parts.append(f"top-1>={_percent(self.min_top1)}")
        if self.min_cosine is not None:
            parts.append(f"cosine>={self.min_cosine:g}")
        if self.max_rel_error is not None:
            parts.append(f"max error<={_percent(self.max_rel_error)} of range")
        return " ".join(parts) or "no checks"


def _percent(v: float) -> str:
    """0.9 -> "90%", 0.995 -> "99.5%"."""
    return f"{v * 100:.2f}".rstrip("0").rstrip(".") + "%"


def _short(v: float) -> str:
    """1e-4 rather than 0.0001."""
    return f"{v:g}" if v >= 1e-3 or v == 0 else f"{v:.0e}".replace("e-0", "e-")


# Default tolerances, measured on the trained tiny MobileNetV3-style digits model of tests/conftest.py (397 held-out
# digits, softmax output, LiteRT with and without XNNPACK, onnxruntime):
#   fp32 TFLite / ONNX: max abs error 5e-6 / 3e-6 (SQNR 122 dB)    -> atol 1e-4 (+ rtol 1e-4 for large logits)
#   fp16 TFLite: max abs 9.0e-3, SQNR 52.8 dB, top-1 100%            -> atol 5e-2 + rtol 1e-2 (5x margin)
#   dynamic: SQNR 44-49 dB, top-1 100%; int16x8: SQNR 42.5 dB, top-1 99.75% (28.0 dB on a model with a 50x
#     outlier channel, top-1 99.75%)                                 -> SQNR >= 25 dB, top-1 >= 95%
#   int8 TFLite: SQNR 29.9-30.1 dB, top-1 99.0-99.5%; ONNX int8 (QDQ): 30.5 dB, 99.2%
#                                                                    -> SQNR >= 20 dB, top-1 >= 90%
# and int8 artifacts that must fail: the same graph with the weights of a second training run (seed 1): SQNR 14.9 dB,
# top-1 96.5% (both nets are right on most digits, so only SQNR catches it); int8 of a model with one 50x outlier
# channel (float output unchanged): 13.4 dB, 94.2%; int8 of an untrained model: 0.5 dB, 10.8%.
_FLOAT = {"fp32": (1e-4, 1e-4), "fp16": (5e-2, 1e-2)}
_QUANT = {"dynamic": (25.0, 0.95), "int16x8": (25.0, 0.95), "int8": (20.0, 0.90)}


def default_tolerance(precision: str, format: str = "tflite") -> Tolerance:
    """The tolerance an artifact of ``precision`` ("fp32", "fp16", "dynamic", "int8", "int16x8") and ``format``
    ("tflite", "onnx") must meet by default."""
    if precision in _FLOAT:
        atol, rtol = _FLOAT[precision]
        return Tolerance(atol=atol, rtol=rtol)
    if precision in _QUANT:
        sqnr, top1 = _QUANT[precision]
        return Tolerance(min_sqnr=sqnr, min_top1=top1)
    raise ValueError(f"no default tolerance for {format} {precision}")


def tolerance_for(precision: str, format: str = "tflite", *, atol: float | None = None,
                  min_sqnr: float | None = None, min_top1: float | None = None) -> Tolerance:
    """:func:`default_tolerance` with the user's overrides: ``atol`` replaces the atol (and drops the rtol) of float
    artifacts,
    ``min_sqnr`` the SQNR floor of quantized ones, ``min_top1`` the top-1 floor of every artifact."""
    tol = default_tolerance(precision, format)
    if atol is not None and tol.atol is not None:
        tol = replace(tol, atol=float(atol), rtol=0.0)  # the user's atol is the whole bound
    if min_sqnr is not None and tol.min_sqnr is not None:
        tol = replace(tol, min_sqnr=float(min_sqnr))
    if min_top1 is not None:
        tol = replace(tol, min_top1=float(min_top1))
    return tol


def sqnr_db(ref: np.ndarray, got: np.ndarray) -> float:
    """10 log10(signal power / error power); +inf when identical, -inf for an all-zero reference with an error."""
    ref64, err = np.asarray(ref, np.float64), np.asarray(got, np.float64) - np.asarray(ref, np.float64)
    signal, noise = float(np.sum(ref64 ** 2)), float(np.sum(err ** 2))
    if noise == 0:
        return math.inf
    if signal == 0:
        return -math.inf
    return 10.0 * math.log10(signal / noise)


def psnr_db(ref: np.ndarray, got: np.ndarray) -> float:
    """10 log10(peak^2 / MSE); the peak is the reference's range (max - min), or its max |value| if larger."""
    ref64 = np.asarray(ref, np.float64)
    mse = float(np.mean((np.asarray(got, np.float64) - ref64) ** 2))
    peak = max(float(ref64.max() - ref64.min()), float(np.abs(ref64).max())) if ref64.size else 0.0
    if mse == 0:
        return math.inf
    if peak == 0:
        return -math.inf
    return 10.0 * math.log10(peak ** 2 / mse)


def _cosine(ref: np.ndarray, got: np.ndarray) -> float:
    """Mean per-sample cosine similarity (two all-zero samples count as 1)."""
    a = np.asarray(ref, np.float64).reshape(len(ref), -1)
    b = np.asarray(got, np.float64).reshape(len(got), -1)
    na, nb = np.linalg.norm(a, axis=1), np.linalg.norm(b, axis=1)
    dot = np.sum(a * b, axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        cos = np.where((na == 0) & (nb == 0), 1.0, dot / (na * nb))
    return float(np.mean(np.nan_to_num(cos, nan=0.0)))


def _is_scores(y: np.ndarray) -> bool:
    """Class scores: (N, C) with C >= 2, so arg-max agreement means something."""
    return y.ndim == 2 and y.shape[1] >= 2


def topk_agreement(ref: np.ndarray, got: np.ndarray, k: int = 1) -> float | None:
    """Fraction of samples whose reference top-1 class is among ``got``'s top-``k``; None for non-score outputs."""
    if not _is_scores(ref) or ref.shape[1] < k:
        return None
    ref_top1 = np.argmax(ref, axis=1)
    if k == 1:
        return float(np.mean(np.argmax(got, axis=1) == ref_top1))
    topk = np.argsort(-got, axis=1, kind="stable")[:, :k]
    return float(np.mean(np.any(topk == ref_top1[:, None], axis=1)))


# Checks that hold for any weights (the artifact ran and gave finite outputs of the right shape), as opposed to the
# quality thresholds (atol, sqnr, top1, cosine) that only a trained model can be held to.
STRUCTURAL_CHECKS = ("shape", "finite")


@dataclass
class Check:
    name: str  # "atol" | "sqnr" | "top1" | "cosine" | "rel_error" | "finite" | "shape"
    passed: bool
    reason: str  # one line, e.g. "max abs error 3.1e-02 > atol 1e-04 (512 of 3970 elements off)"

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> "Check":
        return cls(d["name"], bool(d["passed"]), d["reason"])


@dataclass
class OutputComparison:
    index: int
    name: str
    shape: tuple
    max_abs: float
    mean_abs: float
    cosine: float
    sqnr_db: float
    psnr_db: float
    top1_agreement: float | None
    top5_agreement: float | None
    accuracy_ref: float | None = None
    accuracy: float | None = None
    checks: list[Check] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    kind: str = "scores"  # edgeconv.verify.kinds.OUTPUT_KINDS
    rule: str = ""  # which rule judged it, in words (edgeconv.verify.kinds.rule_text)
    rel_error: float | None = None  # max abs error / the reference's range
    tolerance: Tolerance | None = None  # this output's tolerance (the artifact's, adapted to the kind)

    @property
    def passed(self) -> bool:
        return all(c.passed for c in self.checks)

    @property
    def reasons(self) -> list[str]:
        """One line per failed check."""
        return [c.reason for c in self.checks if not c.passed]

    def to_dict(self) -> dict:
        d = {k: _json_float(v) for k, v in asdict(self).items() if k not in ("checks", "tolerance")}
        d["tolerance"] = None if self.tolerance is None else self.tolerance.to_dict()
        d["shape"] = list(self.shape)
        d["passed"] = self.passed
        d["checks"] = [c.to_dict() for c in self.checks]
        return d

    @classmethod
    def from_dict(cls, d: dict) -> "OutputComparison":
        floats = {k: _from_json_float(d.get(k)) for k in ("max_abs", "mean_abs", "cosine", "sqnr_db", "psnr_db")}
        return cls(index=int(d["index"]), name=d["name"], shape=tuple(d["shape"]), **floats,
                   top1_agreement=d.get("top1_agreement"), top5_agreement=d.get("top5_agreement"),
                   accuracy_ref=d.get("accuracy_ref"), accuracy=d.get("accuracy"),
                   checks=[Check.from_dict(c) for c in d.get("checks", [])], notes=list(d.get("notes", [])),
                   kind=d.get("kind", "scores"), rule=d.get("rule", ""),
                   rel_error=_from_json_float(d.get("rel_error")),
                   tolerance=None if d.get("tolerance") is None else Tolerance.from_dict(d["tolerance"]))


@dataclass
class Comparison:
    outputs: list[OutputComparison]
    tolerance: Tolerance
    samples: int

    @property
    def passed(self) -> bool:
        return all(o.passed for o in self.outputs)

    @property
    def reasons(self) -> list[str]:
        return self.reasons_for()

    def reasons_for(self, only: tuple | None = None) -> list[str]:
        """One line per failed check (only the checks named in ``only``, when given), prefixed by the output's
        name on multi-output models."""
        multi = len(self.outputs) > 1
        return [f"output {o.name}: {c.reason}" if multi else c.reason for o in self.outputs for c in o.checks
                if not c.passed and (only is None or c.name in only)]

    def to_dict(self) -> dict:
        return {"passed": self.passed, "samples": self.samples, "tolerance": self.tolerance.to_dict(),
                "outputs": [o.to_dict() for o in self.outputs]}

    @classmethod
    def from_dict(cls, d: dict) -> "Comparison":
        return cls([OutputComparison.from_dict(o) for o in d["outputs"]], Tolerance.from_dict(d["tolerance"]),
                   int(d["samples"]))


def _json_float(v):
    """JSON has no inf/nan: keep them readable as strings."""
    if isinstance(v, float) and not math.isfinite(v):
        return "inf" if v > 0 else ("-inf" if v < 0 else "nan")
    return v


def _from_json_float(v):
    """The inverse of :func:`_json_float`."""
    return float(v) if isinstance(v, str) else v


def rel_error(ref: np.ndarray, max_abs: float) -> float:
    """The largest absolute error as a fraction of the reference's range (max - min), or of its max |value| when
    that is larger (an output that is nearly constant); inf when the reference is all zeros and the error is not."""
    ref64 = np.asarray(ref, np.float64)
    span = max(float(ref64.max() - ref64.min()), float(np.abs(ref64).max())) if ref64.size else 0.0
    if not math.isfinite(max_abs):
        return math.nan
    return max_abs / span if span > 0 else (0.0 if max_abs == 0 else math.inf)


def _checks(ref: np.ndarray, got: np.ndarray, tol: Tolerance, max_abs: float, sqnr: float, top1: float | None,
            cosine: float, rel: float | None = None) -> list[Check]:
    checks: list[Check] = []
    if not np.all(np.isfinite(got)):
        bad = int(np.size(got) - np.count_nonzero(np.isfinite(got)))
        checks.append(Check("finite", False, f"{bad} of {got.size} output values are NaN or inf"))
        return checks
    if tol.atol is not None:
        bound = tol.atol + (tol.rtol or 0.0) * np.abs(ref)
        off = int(np.count_nonzero(np.abs(got.astype(np.float64) - ref) > bound))
        limit = f"atol {tol.atol:g}" + (f" + rtol {tol.rtol:g}" if tol.rtol else "")
        checks.append(Check("atol", off == 0, f"max abs error {max_abs:.3g} {'<=' if off == 0 else '>'} {limit}"
                            + (f" ({off} of {got.size} elements off)" if off else "")))
    if tol.min_sqnr is not None:
        ok = sqnr >= tol.min_sqnr
        checks.append(Check("sqnr", ok, f"SQNR {sqnr:.1f} dB {'>=' if ok else '<'} {tol.min_sqnr:g} dB"))
    if tol.min_top1 is not None:
        if top1 is None:
            checks.append(Check("top1", True, "top-1 agreement not applicable (output is not class scores)"))
        else:
            ok = top1 >= tol.min_top1
            checks.append(Check("top1", ok, f"top-1 agreement {top1:.2%} {'>=' if ok else '<'} {tol.min_top1:.2%}"))
    if tol.min_cosine is not None:
        ok = cosine >= tol.min_cosine
        checks.append(Check("cosine", ok, f"cosine {cosine:.5f} {'>=' if ok else '<'} {tol.min_cosine:g}"))
    if tol.max_rel_error is not None and rel is not None:
        ok = rel <= tol.max_rel_error
        checks.append(Check("rel_error", ok, f"max error {_percent(rel)} of the output's range "
                                             f"{'<=' if ok else '>'} {_percent(tol.max_rel_error)}"))
    return checks


def _load_labels(labels, n: int) -> np.ndarray | None:
    if labels is None:
        return None
    y = np.asarray(labels).reshape(-1)
    if len(y) != n:
        from edgeconv.errors import EdgeconvError

        raise EdgeconvError(f"{len(y)} labels for {n} inputs: labels must match the inputs one to one")
    return y.astype(np.int64)


def compare_outputs(ref: list[np.ndarray], got: list[np.ndarray], tol: Tolerance, labels=None,
                    names: list[str] | None = None, outputs: list | None = None) -> Comparison:
    """Compare ``got`` with the reference ``ref`` output by output and apply ``tol``.

    ``labels`` (N,) integer classes, optional: adds accuracy of the reference and of ``got`` for score outputs.
    ``outputs``: one :class:`edgeconv.verify.kinds.OutputInfo` per output (name and kind): each output is judged by
    its kind's rule (:func:`edgeconv.verify.kinds.tolerance_for_kind`); without it, an (N, C >= 2) output is class
    scores and any other a regression output.
    """
    from edgeconv.verify.kinds import OutputInfo, rule_text, tolerance_for_kind
    from edgeconv.errors import EdgeconvError

    ref, got = [np.asarray(r) for r in ref], [np.asarray(g) for g in got]
    if len(ref) != len(got):
        raise EdgeconvError(f"the artifact has {len(got)} outputs, the reference {len(ref)}")
    n = len(ref[0]) if ref else 0
    y = _load_labels(labels, n)
    outs = []
    for i, (r, g) in enumerate(zip(ref, got)):
        name = names[i] if names and i < len(names) else f"output_{i}"
        info = outputs[i] if outputs and i < len(outputs) else OutputInfo(
            name, tuple(r.shape[1:]), "scores" if _is_scores(r) else "regression",
            "single output" if _is_scores(r) else "not class-shaped")
        name = info.name if outputs else name
        otol = tolerance_for_kind(tol, info.kind)
        if r.shape != g.shape:
            if r.size == g.size:  # e.g. (N, 1, 1, C) vs (N, C): same values
                g = g.reshape(r.shape)
            else:
                oc = OutputComparison(i, name, tuple(g.shape), math.nan, math.nan, math.nan, math.nan, math.nan,
                                      None, None, kind=info.kind, rule=rule_text(info.kind, info.source, otol),
                                      tolerance=otol)
                oc.checks = [Check("shape", False, f"output shape {tuple(g.shape)} != reference {tuple(r.shape)}")]
                outs.append(oc)
                continue
        r64, g64 = r.astype(np.float64), g.astype(np.float64)
        err = np.abs(g64 - r64)
        finite = bool(np.all(np.isfinite(err)))
        max_abs = float(err.max()) if err.size and finite else math.nan
        mean_abs = float(err.mean()) if err.size and finite else math.nan
        cosine, sqnr, psnr = _cosine(r64, g64), sqnr_db(r64, g64), psnr_db(r64, g64)
        scores = info.is_scores and _is_scores(r)
        top1, top5 = (topk_agreement(r, g, 1), topk_agreement(r, g, 5)) if scores else (None, None)
        acc_ref = acc = None
        if y is not None and scores:
            acc_ref = float(np.mean(np.argmax(r, 1) == y))
            acc = float(np.mean(np.argmax(g, 1) == y))
        rel = rel_error(r64, max_abs)
        oc = OutputComparison(i, name, tuple(r.shape), max_abs, mean_abs, cosine, sqnr, psnr, top1, top5,
                              acc_ref, acc, kind=info.kind, rule=rule_text(info.kind, info.source, otol),
                              rel_error=rel, tolerance=otol)
        oc.checks = _checks(r64, g64, otol, max_abs, sqnr, top1, cosine, rel)
        if len(r64) > 1 and np.allclose(r64, r64[:1], rtol=0, atol=1e-7 * max(1.0, float(np.abs(r64).max()))):
            oc.notes.append("the reference output is the same for every input (untrained weights?): "
                            "agreement figures mean little")
        outs.append(oc)
    return Comparison(outs, tol, n)
