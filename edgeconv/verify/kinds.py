"""What each output of a model is, and which rule judges it.

An output is judged as class scores (top-1 agreement, accuracy) only when it is class scores: computed by a softmax,
declared so (``--output-kind NAME=scores``, e.g. logits), the one output of a model exported with class labels, or
the one (N, C >= 2) output of a single-output model (a classifier: what edgeconv always assumed of those). Every
other output -- box regression, landmarks, embeddings, a sigmoid, raw features -- is judged by SQNR, cosine
similarity and its largest error relative to the reference's range, never by an arg-max that means nothing for it.

The kinds are decided once at export (:func:`infer_outputs`) and recorded in the manifest (``model.outputs``), so
``edgeconv validate`` judges every output by the rule the export chose; the report says which rule judged which
output and why that kind.
"""
from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Mapping

from edgeconv.errors import UsageError

__all__ = ["OUTPUT_KINDS", "OutputInfo", "infer_outputs", "tolerance_for_kind", "parse_output_kinds", "rule_text"]

# scores: class scores (softmax probabilities or logits); the others are judged alike, and named for the reader
OUTPUT_KINDS = ("scores", "regression", "landmarks", "embedding")
KIND_WORDS = {"scores": "class scores", "regression": "regression", "landmarks": "landmarks",
              "embedding": "embedding"}

# Tolerances of a non-score output, in place of top-1 agreement (which needs class scores): the mean per-sample
# cosine similarity and the largest absolute error relative to the reference's range (max - min over the output).
# SQNR / atol stay the precision's (edgeconv.verify.compare.default_tolerance). Measured (benchmarks/multi_output.py,
# RESULTS.md table 7) on held-out data of the digits two-head model (``blob``: 4 standardized stroke statistics) and
# of MTCNN's ONet (``box`` 4, ``landmarks`` 10) on face crops:
#   fp16: cosine >= 0.99999, max error <= 0.16% of the range
#   dynamic / int16x8: cosine >= 0.9993, max error <= 3.4%
#   int8 (TFLite and ONNX, edgeconv's and the plain TF recipe): cosine 0.987-0.9999, max error 1.4-9.7%; SQNR 29.6 dB
#     (blob), 35.5 dB (landmarks), but 17.6-19.2 dB on ONet's box offsets, which the 20 dB int8 floor fails
# The cosine floor catches a head that points the wrong way on many samples, the range floor one sample far off;
# both leave the verdict on a sound int8 head to SQNR.
NON_SCORE_QUANT = {"min_cosine": 0.98, "max_rel_error": 0.25}
NON_SCORE_FLOAT = {"min_cosine": 0.9999}


@dataclass(frozen=True)
class OutputInfo:
    """One output: its name (as every artifact names it), shape without the batch, kind and why that kind."""

    name: str
    shape: tuple
    kind: str
    source: str  # "declared" | "softmax" | "class labels" | "single output" | "not a softmax" | "not class-shaped"

    @property
    def is_scores(self) -> bool:
        return self.kind == "scores"

    @property
    def size(self) -> int | None:
        """Values per sample (classes of a score output); None for a dynamic shape."""
        n = 1
        for s in self.shape:
            if s is None or int(s) < 0:
                return None
            n *= int(s)
        return n

    def to_dict(self) -> dict:
        return {"name": self.name, "shape": [-1 if s is None else int(s) for s in self.shape], "kind": self.kind,
                "kind_source": self.source}

    @classmethod
    def from_dict(cls, d: dict) -> "OutputInfo":
        return cls(d["name"], tuple(d.get("shape") or ()), d["kind"], d.get("kind_source", "recorded"))


def parse_output_kinds(items) -> dict[str, str]:
    """``{"boxes": "regression"}``, ``[("boxes", "regression")]`` or ``["boxes=regression"]`` -> a dict; an unknown
    kind is a UsageError."""
    if not items:
        return {}
    pairs = items.items() if isinstance(items, Mapping) else [
        tuple(str(i).split("=", 1)) if isinstance(i, str) else tuple(i) for i in items]
    out: dict[str, str] = {}
    for pair in pairs:
        if len(pair) != 2 or not str(pair[0]).strip():
            raise UsageError(f"--output-kind takes NAME=KIND (e.g. boxes=regression), got {'='.join(map(str, pair))!r}")
        name, kind = str(pair[0]).strip(), str(pair[1]).strip().lower()
        if kind not in OUTPUT_KINDS:
            raise UsageError(f"--output-kind {name}={kind}: the kind must be one of {', '.join(OUTPUT_KINDS)}")
        out[name] = kind
    return out


def _is_softmax(tensor) -> bool:
    layer = getattr(getattr(tensor, "_keras_history", None), "operation", None)
    act = getattr(getattr(layer, "activation", None), "__name__", "") or ""
    return "softmax" in act or type(layer).__name__ == "Softmax"


def infer_outputs(model, declared: Mapping[str, str] | None = None, labels: int | None = None) -> list[OutputInfo]:
    """Every output of the Keras ``model`` with its kind (see the module docstring). ``declared``: the user's
    ``{output name: kind}`` (a name the model does not have is a UsageError listing the names it has); ``labels``:
    how many class labels the export embeds (they mark the one output of that size as class scores)."""
    from edgeconv.runtime.runners import keras_output_names

    names = keras_output_names(model)
    declared = dict(declared or {})
    unknown = sorted(set(declared) - set(names))
    if unknown:
        raise UsageError(f"--output-kind {unknown[0]}: the model has no output of that name; its outputs are "
                         f"{', '.join(names)}")
    shapes = [tuple(t.shape[1:]) for t in model.outputs]
    class_shaped = [len(s) == 1 and s[0] is not None and int(s[0]) >= 2 for s in shapes]
    labelled = [i for i, s in enumerate(shapes) if labels and class_shaped[i] and int(s[0]) == labels]
    infos = []
    for i, (name, shape, t) in enumerate(zip(names, shapes, model.outputs)):
        if name in declared:
            kind, source = declared[name], "declared"
        elif class_shaped[i] and _is_softmax(t):
            kind, source = "scores", "softmax"
        elif len(labelled) == 1 and labelled[0] == i:
            kind, source = "scores", "class labels"
        elif len(names) == 1 and class_shaped[i]:
            kind, source = "scores", "single output"
        else:
            kind, source = "regression", "not a softmax" if class_shaped[i] else "not class-shaped"
        if kind == "scores" and not class_shaped[i]:
            raise UsageError(f"output {name} has shape {shape}: class scores need one axis of at least 2 classes")
        infos.append(OutputInfo(name, shape, kind, source))
    return infos


SOURCE_WORDS = {"declared": "declared with --output-kind", "softmax": "a softmax",
                "class labels": "the class labels fit it", "single output": "the single output of a classifier",
                "not a softmax": "not a softmax; --output-kind NAME=scores for logits",
                "not class-shaped": "not an (N, classes) output", "recorded": "recorded in the manifest"}


def tolerance_for_kind(tol, kind: str):
    """The artifact's tolerance (:func:`edgeconv.verify.compare.tolerance_for`) adapted to one output's kind: class
    scores keep it; any other kind drops top-1 agreement and is held to cosine similarity (and, when quantized, to
    its largest error relative to the reference's range) on top of the SQNR / atol it already has."""
    if kind == "scores":
        return tol
    extra = NON_SCORE_QUANT if tol.min_sqnr is not None else NON_SCORE_FLOAT
    return replace(tol, min_top1=None, **{k: v for k, v in extra.items() if getattr(tol, k) is None})


def rule_text(kind: str, source: str, tol) -> str:
    """"regression (declared with --output-kind): SQNR>=20dB cosine>=0.98 max error<=25% of range"."""
    return f"{KIND_WORDS.get(kind, kind)} ({SOURCE_WORDS.get(source, source)}): {tol.describe()}"
