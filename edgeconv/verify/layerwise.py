"""Layer-wise comparison: every TFLite tensor against the Keras layer output it computes.

LiteRT runs the artifact with ``experimental_preserve_all_tensors`` (XNNPACK off, so no tensor is fused away inside a
delegate) and every op output is dequantized with its own scale / zero point.

Every match is proven on float: a Keras layer is matched to a TFLite tensor only when that tensor, in the fp32
.tflite of the same export, equals the layer's Keras output at >= 60 dB SQNR (float rounding). Names only propose
candidates: a Keras 3 export names a tensor after every TF op the converter fused into it
(``.../b1_se_hsigmoid_1/Relu6;.../b1_se_hsigmoid_1/add;.../b1_se_expand_1/BiasAdd``: the SE conv with the
hard-sigmoid's ``+3`` and ReLU6 folded in), and the deepest layer named there need not be the one whose value the
tensor holds. Layers no float tensor equals (a conv before its BN, an SE conv whose tensor already carries ``+3`` and
ReLU6) are reported "not comparable (fused into X)" and never ranked. Quantized files keep the fp32 file's tensor
names (the int8 h-swish decomposition keeps its output's name), so the proven map applies to int8 / fp16 / int16x8.
On an fp32 artifact the report is a self-test of the matcher: every matched layer must be at float rounding.

Two errors per matched layer:
- *accumulated*: the TFLite tensor vs the Keras reference run on the same input (rmse, max abs error, SQNR). This is
  what the user sees at the end of the network.
- *local*: the TFLite tensor vs the Keras layer (and any unmatched layers fused into it) run in float on the TFLite
  values of its inputs. This isolates the error the layer itself adds, as TF's QuantizationDebugger does; divided by
  the tensor's quantization scale it gives TF's rule of thumb (``rmse/scale`` about 0.29 = pure rounding is healthy,
  above 0.7 is suspect).

Ranking (:data:`RANKED_BY`): a layer's own error (TFLite value minus the Keras layer run on the TFLite inputs) is
added to the float Keras activation of that layer alone, the float model runs on to the output, and the output's
SQNR against the pure float output says what that layer costs. Lower = worse. A final softmax is looked through (the
logits are measured; the softmax layer itself by its own error): a confident softmax flattens every inner error.
``LayerReport.worst`` and the int8 fallback's ranking use this order; rmse/scale stays as the local "suspect" rule of
thumb. On fp32 artifacts no ranking is computed (every error is float rounding).
"""
from __future__ import annotations

import io
import json
import math
import re
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from edgeconv.verify.compare import _json_float, sqnr_db
from edgeconv.errors import EdgeconvError
from edgeconv.fileio import atomic_write_bytes

HEALTHY_RMSE_SCALE = 0.29  # 1/sqrt(12): the rmse of rounding to a uniform grid, in steps
SUSPECT_RMSE_SCALE = 0.7
SENSITIVE = ("relu6", "hard_swish", "hard_sigmoid", "squeeze_excite")
_SKIP_OPS = {"QUANTIZE", "DEQUANTIZE", "DELEGATE"}
PROOF_SQNR_DB = 60.0  # a float tensor this close to a Keras layer output computes it (float32 rounding: 80-140 dB)
PROOF_SAMPLES = 4  # inputs the matches are proven on
LOCAL_RANKING = "local SQNR (fp32: every error is float rounding, the output ranking is not computed)"
RANKED_BY = ("output SQNR with only this layer's own error injected into the float model, measured on the logits "
             "when the model ends in a softmax (lower = costs more)")
KERAS_SCOPE_SUFFIX = re.compile(r"_\d+$")

__all__ = ["LayerStat", "LayerReport", "compare_layers", "HEALTHY_RMSE_SCALE", "SUSPECT_RMSE_SCALE",
           "PROOF_SQNR_DB", "RANKED_BY", "SelfTestFailed"]


class SelfTestFailed(EdgeconvError):
    """An fp32 artifact's layer report found a matched layer beyond float rounding: the matcher (or the file) is
    wrong. ``validate`` fails the fp32 artifact with it instead of printing a report nobody should trust."""


@dataclass
class LayerStat:
    depth: int  # index in the Keras model's operations (graph order)
    layer: str  # Keras layer name
    layer_class: str
    activation: str | None
    tensor: str  # TFLite output tensor name (= the QuantizationDebugger "node" name)
    op: str  # TFLite op that produced it
    dtype: str
    shape: tuple
    scale: float | None  # quantization scale of the tensor (None: float tensor)
    rmse: float  # accumulated: vs the Keras reference
    max_abs: float
    sqnr_db: float
    local_rmse: float | None  # local: vs the Keras layer run on the TFLite inputs
    local_sqnr_db: float | None
    rmse_scale: float | None  # local_rmse / scale (TF QuantizationDebugger's rule of thumb)
    flags: list[str] = field(default_factory=list)
    matched_by: str = "name"  # how the candidate was found: "name" | "output" | "shape"; every match is proven
    output_sqnr_db: float | None = None  # output SQNR with only this layer's own error injected (the ranking)
    proof_sqnr_db: float | None = None  # the fp32 file's tensor vs this Keras layer (>= PROOF_SQNR_DB)
    # multi-output models: {output name: SQNR there with only this layer's error}; output_sqnr_db is the lowest
    output_sqnr_by: dict | None = None

    @property
    def suspect(self) -> bool:
        return self.rmse_scale is not None and self.rmse_scale > SUSPECT_RMSE_SCALE

    def to_dict(self) -> dict:
        d = asdict(self)
        d["shape"] = list(self.shape)
        d["suspect"] = self.suspect
        if self.output_sqnr_by is not None:
            d["output_sqnr_by"] = {k: _json_float(v) for k, v in self.output_sqnr_by.items()}
        return {k: _json_float(v) if k != "output_sqnr_by" else v for k, v in d.items()}


def _error_key(s: LayerStat) -> float:
    """Bigger = worse: minus the output SQNR the layer's own error leaves (:data:`RANKED_BY`); without it
    rmse/scale for quantized tensors, else minus the local (or accumulated) SQNR."""
    if s.output_sqnr_db is not None:
        v = s.output_sqnr_db
        return -v if math.isfinite(v) else (-1e9 if v > 0 else 1e9)
    if s.rmse_scale is not None:
        return s.rmse_scale
    v = s.local_sqnr_db if s.local_sqnr_db is not None else s.sqnr_db
    return -v if math.isfinite(v) else (-1e9 if v > 0 else 1e9)


PLOT_PX = (1400, 640)  # the layer plot's size in pixels, whatever the depth
MODEL_EXPLORER_GRAPH = "main"  # the graph id Model Explorer gives the subgraph of a TF 2.21 .tflite


@dataclass
class LayerReport:
    artifact: str
    layers: list[LayerStat]
    samples: int
    unmatched_layers: list[str]  # Keras layers without a proven TFLite tensor (keys of ``not_comparable``)
    plot_file: str | None = None
    error: str | None = None  # why no layer could be compared (the report is then empty)
    node_data_file: str | None = None  # Model Explorer overlay (:meth:`write_node_data`)
    not_comparable: dict[str, str] = field(default_factory=dict)  # layer -> why ("fused into X", ...)
    self_test: str | None = None  # fp32 artifacts: the matcher's self-test verdict
    self_test_failed: bool = False  # ``error`` is a failed fp32 self-test (:class:`SelfTestFailed`)
    ranked_by: str = RANKED_BY

    def worst(self, n: int = 5) -> list[LayerStat]:
        """The ``n`` layers whose own error costs the output most (:data:`RANKED_BY`)."""
        return sorted(self.layers, key=_error_key, reverse=True)[:n]

    def layer(self, name: str) -> LayerStat:
        for s in self.layers:
            if s.layer == name:
                return s
        raise KeyError(name)

    def flagged(self, flag: str) -> list[LayerStat]:
        return [s for s in self.layers if flag in s.flags]

    def summary(self, n: int = 3) -> str:
        if self.error:
            return f"no layer-wise comparison: {self.error}"
        worst = ", ".join(f"{s.layer} ({_fmt_err(s)})" for s in self.worst(n))
        suspects = sum(s.suspect for s in self.layers)
        head = f"{self.self_test}; " if self.self_test else ""
        which = "lowest" if self.ranked_by == LOCAL_RANKING else "worst for the output"
        return (f"{head}{len(self.layers)} layers matched (proven on fp32), {len(self.not_comparable)} not "
                f"comparable (fused), {suspects} suspect (rmse/scale > {SUSPECT_RMSE_SCALE}); {which}: {worst}")

    def to_dict(self) -> dict:
        return {"artifact": self.artifact, "samples": self.samples, "plot": self.plot_file,
                "node_data": self.node_data_file, "error": self.error,
                "worst": [s.layer for s in self.worst(5)], "ranked_by": self.ranked_by,
                "self_test": self.self_test, "unmatched_layers": self.unmatched_layers,
                "not_comparable": dict(self.not_comparable),
                "layers": [s.to_dict() for s in self.layers]}

    def node_data(self, graph_id: str = MODEL_EXPLORER_GRAPH) -> dict:
        """Google Model Explorer's node data: each matched TFLite tensor (Model Explorer's node id for .tflite
        files is the full tensor name) with its SQNR against Keras in dB, coloured red (worst) to green (best).
        Model Explorer spreads ``gradient`` stops over the range of the values."""
        results = {s.tensor: {"value": round(_finite(s.sqnr_db), 3)} for s in self.layers}
        return {graph_id: {"results": results, "gradient": [
            {"stop": 0.0, "bgColor": "#c62828"}, {"stop": 0.5, "bgColor": "#f9a825"},
            {"stop": 1.0, "bgColor": "#2e7d32"}]}}

    def write_node_data(self, path) -> Path:
        """Write :meth:`node_data` as JSON for ``model-explorer FILE.tflite --node_data_paths=<path>``."""
        path = Path(path)
        atomic_write_bytes(path, (json.dumps(self.node_data(), indent=1) + "\n").encode("utf-8"))
        self.node_data_file = path.name
        return path

    def plot(self, path, label_worst: int = 5) -> Path:
        """A PNG (at most :data:`PLOT_PX` pixels) of the error by depth: what each layer's own error costs the
        output (the ranking) above, the accumulated SQNR vs Keras below, the ``label_worst`` worst layers named,
        ReLU6 / h-swish / hard-sigmoid / squeeze-excite layers marked. The full graph view is the Model Explorer
        overlay (:meth:`write_node_data`)."""
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        path = Path(path)
        xs = [s.depth for s in self.layers]
        ranked = any(s.output_sqnr_db is not None for s in self.layers)
        fig, (ax1, ax2) = plt.subplots(2, 1, figsize=(PLOT_PX[0] / 100, PLOT_PX[1] / 100), sharex=True)
        if ranked:
            y1 = [_finite(s.output_sqnr_db) for s in self.layers]
            ax1.set_ylabel("output SQNR, only this\nlayer's error (dB)")
        else:
            y1 = [_finite(s.local_sqnr_db) for s in self.layers]
            ax1.set_ylabel("local SQNR (dB)")
        y2 = [_finite(s.sqnr_db) for s in self.layers]
        ax1.plot(xs, y1, "-", color="0.6", lw=1)
        ax1.scatter(xs, y1, color="0.4", s=8, zorder=2)
        ax2.plot(xs, y2, "-", color="0.6", lw=1)
        ax2.scatter(xs, y2, color="0.4", s=8, zorder=2)
        ax2.set_ylabel("SQNR vs Keras (dB),\naccumulated")
        ax2.set_xlabel("depth (Keras graph order)")
        markers = {"squeeze_excite": ("*", "tab:purple"), "relu6": ("s", "tab:blue"),  # SE first: others on top
                   "hard_swish": ("D", "tab:red"), "hard_sigmoid": ("^", "tab:orange")}
        for flag, (m, c) in markers.items():
            idx = [i for i, s in enumerate(self.layers) if flag in s.flags]
            if idx:
                size = 70 if flag == "squeeze_excite" else 25
                ax1.scatter([xs[i] for i in idx], [y1[i] for i in idx], marker=m, color=c, s=size, zorder=3,
                            label=flag)
                ax2.scatter([xs[i] for i in idx], [y2[i] for i in idx], marker=m, color=c, s=size, zorder=3)
        pos = {id(s): i for i, s in enumerate(self.layers)}
        for k, s in enumerate(self.worst(label_worst)):
            i = pos[id(s)]
            if math.isfinite(y1[i]):
                ax1.annotate(f"{k + 1}. {s.layer}", (xs[i], y1[i]), xytext=(8 + 4 * k, 14 + 11 * k),
                             textcoords="offset points", fontsize=8, color="tab:red",
                             bbox=dict(boxstyle="round,pad=0.15", fc="white", ec="none", alpha=0.8),
                             arrowprops=dict(arrowstyle="-", color="tab:red", lw=0.6))
        handles, labels = ax1.get_legend_handles_labels()
        what = "ranked by output cost" if ranked else "local error"
        ax1.set_title(f"{self.artifact}: {len(self.layers)} layers ({what}, worst labelled), "
                      f"{len(self.not_comparable)} fused / not comparable, {self.samples} inputs", fontsize=10,
                      loc="left")
        fig.tight_layout(rect=(0, 0, 1, 0.97))
        if handles:
            fig.legend(handles, labels, fontsize=8, loc="upper right", ncol=len(handles), frameon=False)
        buf = io.BytesIO()
        fig.savefig(buf, format="png", dpi=100)
        plt.close(fig)
        atomic_write_bytes(path, buf.getvalue())
        self.plot_file = path.name
        return path


def _finite(v: float | None) -> float:
    if v is None:
        return np.nan
    return v if math.isfinite(v) else (150.0 if v > 0 else np.nan)


def _fmt_err(s: LayerStat) -> str:
    if s.output_sqnr_db is not None:
        local = f", rmse/scale {s.rmse_scale:.2f}" if s.rmse_scale is not None else ""
        return f"output SQNR {s.output_sqnr_db:.1f} dB{local}"
    if s.rmse_scale is not None:
        return f"rmse/scale {s.rmse_scale:.2f}"
    v = s.local_sqnr_db if s.local_sqnr_db is not None else s.sqnr_db
    return f"SQNR {v:.1f} dB"


# --- Keras side ---------------------------------------------------------------------------------------------------

def _activation_name(layer) -> str | None:
    act = getattr(layer, "activation", None)
    if act is None:
        return None
    return getattr(act, "__name__", type(act).__name__)


def _flags(layer, op: str, inbound_shapes: list[tuple]) -> list[str]:
    name, cls = layer.name.lower(), type(layer).__name__.lower()
    act = (_activation_name(layer) or "").lower()
    flags = []
    if act == "relu6" or (cls == "relu" and getattr(layer, "max_value", None) == 6):
        flags.append("relu6")
    if op == "HARD_SWISH" or act in ("hard_swish", "hard_silu") or "hswish" in cls or "hardswish" in cls:
        flags.append("hard_swish")
    if "hard_sigmoid" in act or "hsigmoid" in cls or "hardsigmoid" in cls:
        flags.append("hard_sigmoid")
    spatial = [s for s in inbound_shapes if len(s) == 4]
    broadcast_se = (cls == "multiply" and len(spatial) == 2
                    and {s[1] * s[2] == 1 for s in spatial} == {True, False})
    if broadcast_se or "squeeze_excite" in name or re.search(r"(^|_)se(_|$)", name):
        flags.append("squeeze_excite")
    return flags


def _keras_graph(model):
    """[(layer, depth, node)] in execution order for a functional / Sequential Keras model."""
    if not hasattr(model, "_nodes_by_depth"):
        raise EdgeconvError(f"layer-wise comparison needs a functional or Sequential Keras model, "
                            f"{type(model).__name__} is neither")
    # model.operations, not model.layers: Keras 3 records ``x + 3.0`` on a KerasTensor (the hard-sigmoid of
    # keras.applications' MobileNetV3) as an operation that is not a Layer, and the layers after it need its output.
    order = {id(op): i for i, op in enumerate(getattr(model, "operations", model.layers))}
    nodes = []
    for depth in sorted(model._nodes_by_depth, reverse=True):  # noqa: SLF001 (Keras' own graph order)
        for node in model._nodes_by_depth[depth]:  # noqa: SLF001
            op = node.operation
            if op is None or node.is_input or id(op) not in order:
                continue
            nodes.append((op, order[id(op)], node))
    return nodes


def _run_graph(model, nodes, x, substitute: dict | None = None, tensors_out: dict | None = None):
    """Run the Keras graph on ``x``; returns {layer name: output}. With ``substitute`` ({layer name: array}) the
    outputs of those layers are replaced by the given values before their consumers run ("local" mode), and the
    returned dict holds what each layer computed from its (substituted) inputs. ``tensors_out`` receives every
    graph tensor ({id(KerasTensor): value}) for :func:`_inject`."""
    import keras

    tensors = {id(t): keras.ops.convert_to_tensor(x) for t in model.inputs} if tensors_out is None else tensors_out
    tensors.update({id(t): keras.ops.convert_to_tensor(x) for t in model.inputs})
    computed = {}
    for layer, _, node in nodes:
        if any(id(t) not in tensors for t in node.input_tensors):
            continue
        args, kwargs = node.arguments.fill_in(tensors)
        out = layer(*args, **kwargs)
        outs = out if isinstance(out, (list, tuple)) else [out]
        if len(outs) == 1:
            computed[layer.name] = np.asarray(outs[0], np.float32)
        for t, y in zip(node.outputs, outs):
            tensors[id(t)] = y
        if substitute and layer.name in substitute and len(node.outputs) == 1:
            tensors[id(node.outputs[0])] = keras.ops.convert_to_tensor(substitute[layer.name])
    return computed


# --- TFLite side --------------------------------------------------------------------------------------------------

def _layer_names_in(tensor_name: str, known: dict[str, int]) -> list[str]:
    """Keras layer names mentioned in a TFLite tensor name (Keras' export adds a ``_1`` suffix to each scope)."""
    found = []
    for piece in tensor_name.split(";"):
        for comp in piece.split("/"):
            for cand in (KERAS_SCOPE_SUFFIX.sub("", comp), comp):
                if cand in known:
                    found.append(cand)
                    break
    return found


def _dequantized(runner, detail) -> np.ndarray:
    t = runner.tensor(detail["index"])
    q = detail.get("quantization_parameters") or {}
    scales, zps = q.get("scales", np.array([])), q.get("zero_points", np.array([]))
    if np.issubdtype(t.dtype, np.integer) and len(scales):
        from edgeconv.runtime.runners import dequantize

        return dequantize(t, scales, zps, q.get("quantized_dimension", 0))
    return np.asarray(t, np.float32)


def _op_outputs(runner) -> list[tuple[int, str]]:
    """[(tensor index, op name)] of every computing op's outputs, in execution order."""
    return [(t, op["op_name"]) for op in runner.ops() if op["op_name"] not in _SKIP_OPS for t in op["outputs"]]


def _run_all(runner, x: np.ndarray, indices) -> dict[int, np.ndarray]:
    """Dequantized values of ``indices`` over every input of ``x`` (one invoke per batch of the file)."""
    details = {d["index"]: d for d in runner.tensors()}
    got = {i: [] for i in indices}
    step = 1 if runner.batch_size == 1 else len(x)
    for i in range(0, len(x), step):
        runner.set_input(x[i:i + step])  # quantizes int inputs like run() does
        runner.invoke()
        for t in indices:
            got[t].append(_dequantized(runner, details[t]))
    return {k: np.concatenate(v, axis=0) for k, v in got.items()}


@dataclass(frozen=True)
class _Proof:
    tensor: str  # TFLite tensor name (shared by the fp32 file and its quantized siblings)
    output_index: int | None  # position among the model outputs when the tensor is one
    how: str  # "name" | "output" | "shape": how the candidate was found
    sqnr_db: float  # the float file's tensor vs the Keras layer


def _float_artifact(keras_model) -> bytes:
    """The fp32 .tflite of the same trace edgeconv exports (same tensor names as its int8 / fp16 siblings)."""
    import tempfile

    from edgeconv.pipeline.trace import trace
    from edgeconv.tflite.convert import convert_tflite

    with tempfile.TemporaryDirectory(prefix="edgeconv-layers-") as d:
        return convert_tflite(trace(keras_model, d), "fp32")


def _prove(float_runner, model, nodes, x: np.ndarray) -> tuple[dict[str, _Proof], dict[str, str]]:
    """Match Keras layers to TFLite tensors, keeping only matches the float file proves: the tensor's fp32 value
    equals the Keras layer's output at >= :data:`PROOF_SQNR_DB`. Candidates are every computing op's output of the
    same size (named after the layer, a model output, or neither); one tensor goes to one layer, the deepest that
    holds it, a computing layer before an inference-time identity (a Dropout after it holds the same value).
    Returns ({layer: proof}, {layer: why not})."""
    import keras

    layers = [(layer, depth, node) for layer, depth, node in nodes
              if isinstance(layer, keras.layers.Layer) and len(node.outputs) == 1]
    known = {layer.name: depth for layer, depth, _ in layers}
    ref = _run_graph(model, nodes, x)
    outs = _op_outputs(float_runner)
    details = {d["index"]: d for d in float_runner.tensors()}
    out_idx = [d["index"] for d in float_runner.output_details]
    out_layers = [t._keras_history.operation.name for t in model.outputs]  # noqa: SLF001
    vals = _run_all(float_runner, x, [t for t, _ in outs])
    order = {t: i for i, (t, _) in enumerate(outs)}
    named = {t: set(_layer_names_in(details[t]["name"], known)) for t, _ in outs}
    proven: dict[str, list[tuple]] = {}
    why: dict[str, str] = {}
    for layer, _, _ in layers:
        r = ref.get(layer.name)
        if r is None:
            continue
        r64 = r.astype(np.float64)
        if not np.any(r64):
            why[layer.name] = "constant zero on these inputs"
            continue
        cands = []
        for t, _ in outs:
            v = vals[t]
            if v.size != r.size:
                continue
            q = sqnr_db(r, v.reshape(r.shape))
            if q >= PROOF_SQNR_DB:
                is_out = t in out_idx and out_layers[out_idx.index(t)] == layer.name
                how = "name" if layer.name in named[t] else "output" if is_out else "shape"
                cands.append(({"name": 0, "output": 1, "shape": 2}[how], -order[t], t, how, q))
        if cands:
            proven[layer.name] = sorted(cands, key=lambda c: c[:2])
    claimed: dict[int, str] = {}
    result: dict[str, _Proof] = {}
    identity = (keras.layers.Dropout, keras.layers.GaussianNoise, keras.layers.GaussianDropout,
                keras.layers.AlphaDropout, keras.layers.ActivityRegularization, keras.layers.Identity)
    # deepest first, a layer that computes something before an inference-time identity (Dropout) holding its value
    for layer, _, _ in sorted(layers, key=lambda n: (isinstance(n[0], identity), -n[1])):
        for _, _, t, how, q in proven.get(layer.name, []):
            if t in claimed:
                why.setdefault(layer.name, f"same tensor as {claimed[t]}")
                continue
            claimed[t] = layer.name
            why.pop(layer.name, None)
            result[layer.name] = _Proof(details[t]["name"], out_idx.index(t) if t in out_idx else None, how, q)
            break
    # Every other layer is fused into the first matched layer downstream of it (conv -> BN -> ReLU6 is one op).
    consumers: dict[str, list[str]] = {}
    producer = {}
    for layer, _, node in nodes:
        for t in node.outputs:
            producer[id(t)] = layer.name
    for layer, _, node in nodes:
        for t in node.input_tensors:
            if id(t) in producer:
                consumers.setdefault(producer[id(t)], []).append(layer.name)
    for layer, _, _ in layers:
        if layer.name in result or layer.name in why:
            continue
        seen, frontier, into = set(), list(consumers.get(layer.name, [])), None
        while frontier and into is None:
            nxt = []
            for n in frontier:
                if n in result:
                    into = n
                    break
                if n not in seen:
                    seen.add(n)
                    nxt += consumers.get(n, [])
            frontier = nxt
        why[layer.name] = f"fused into {into}" if into else "no TFLite tensor holds its value"
    return result, why


def _is_fp32(runner) -> bool:
    """A float32 file: no quantized tensor and no float16 constant (an fp16 file dequantizes its weights)."""
    for d in runner.tensors():
        q = d.get("quantization_parameters") or {}
        if np.dtype(d["dtype"]) == np.float16 or len(q.get("scales", [])):
            return False
    return True


def _ranking_targets(model, nodes) -> list:
    """The tensors the ranking measures: the model outputs, or a softmax output's input (the logits). A confident
    softmax hides what happens before it (measured on a trained MobileNetV3Small: every inner layer's int8 error
    alone costs the probabilities > 110 dB, the logits 39-49 dB), yet it is what the next harder input pays."""
    import keras

    producer = {id(t): (layer, node) for layer, _, node in nodes for t in node.outputs}
    targets = []
    for t in model.outputs:
        layer, node = producer.get(id(t), (None, None))
        softmax = isinstance(layer, keras.layers.Softmax) or (
            isinstance(layer, keras.layers.Activation) and _activation_name(layer) == "softmax")
        targets.append(node.input_tensors[0] if softmax and len(node.input_tensors) == 1 else t)
    return targets


def _inject(model, nodes, ref_tensors: dict, layer_name: str, value, targets) -> list[np.ndarray]:
    """``targets`` (KerasTensors) of the float Keras graph with ``layer_name``'s output replaced by ``value``: only
    the layers downstream of it run again, everything else is the reference run's (``ref_tensors``:
    {id(KerasTensor): value})."""
    import keras

    tensors = dict(ref_tensors)
    dirty = set()
    for layer, _, node in nodes:
        if layer.name == layer_name and len(node.outputs) == 1:
            tensors[id(node.outputs[0])] = keras.ops.convert_to_tensor(value)
            dirty.add(id(node.outputs[0]))
            continue
        if not any(id(t) in dirty for t in node.input_tensors):
            continue
        args, kwargs = node.arguments.fill_in(tensors)
        out = layer(*args, **kwargs)
        outs = out if isinstance(out, (list, tuple)) else [out]
        for t, y in zip(node.outputs, outs):
            tensors[id(t)] = y
            dirty.add(id(t))
    return [np.asarray(tensors[id(t)], np.float32) for t in targets]


def compare_layers(keras_model, tflite_bytes_or_path, x: np.ndarray, *, max_samples: int = 16,
                   artifact: str | None = None, float_tflite=None) -> LayerReport:
    """Compare every Keras layer output with the TFLite tensor that holds it, on up to ``max_samples`` inputs.

    Matches are proven on ``float_tflite`` (the fp32 .tflite of the same export; the artifact itself when it is
    fp32; else one is converted from ``keras_model``). Layers are ranked by what their own error costs the output
    (:data:`RANKED_BY`). On an fp32 artifact the report is a self-test of the matcher and raises
    :class:`SelfTestFailed` when a matched layer is not at float rounding on every input."""
    from edgeconv.runtime.runners import LiteRTRunner, keras_output_names

    x = np.asarray(x[:max_samples], np.float32)
    if len(x) == 0:
        raise EdgeconvError("layer-wise comparison needs at least one input")
    names = keras_output_names(keras_model)  # output_details in the Keras model's order, matched by name
    runner = LiteRTRunner(tflite_bytes_or_path, preserve_all_tensors=True, output_names=names)
    name = artifact or runner.name
    nodes = _keras_graph(keras_model)
    fp32 = _is_fp32(runner)
    if float_tflite is not None:
        float_runner = LiteRTRunner(float_tflite, preserve_all_tensors=True, output_names=names)
    elif fp32:
        float_runner = runner
    else:
        float_runner = LiteRTRunner(_float_artifact(keras_model), preserve_all_tensors=True, output_names=names)
    proofs, why = _prove(float_runner, keras_model, nodes, x[:PROOF_SAMPLES])
    if not proofs:
        raise EdgeconvError(f"{name}: no TFLite tensor could be matched to a Keras layer (none of the float file's "
                            f"tensors equals a layer output at >= {PROOF_SQNR_DB:g} dB)")
    details = {d["index"]: d for d in runner.tensors()}
    ops = dict((t, op) for t, op in _op_outputs(runner))
    by_name = {details[t]["name"]: t for t in ops}
    out_idx = [d["index"] for d in runner.output_details]
    where: dict[str, int] = {}
    for ln, p in proofs.items():
        if p.output_index is not None and p.output_index < len(out_idx):
            where[ln] = out_idx[p.output_index]  # a uint8-I/O file renames the output tensor
        elif p.tensor in by_name:
            where[ln] = by_name[p.tensor]
        else:
            why[ln] = f"its tensor {p.tensor} is not in this file"
    got = _run_all(runner, x, sorted(set(where.values())))
    ref_tensors: dict = {}
    ref = _run_graph(keras_model, nodes, x, tensors_out=ref_tensors)
    gotl = {ln: got[t].reshape(ref[ln].shape) for ln, t in where.items()}
    local = _run_graph(keras_model, nodes, x, substitute=gotl)
    targets = _ranking_targets(keras_model, nodes)
    ref_out = [np.asarray(ref_tensors[id(t)], np.float32) for t in targets]
    out_layers = {t._keras_history.operation.name for t in keras_model.outputs}  # noqa: SLF001
    inbound = {layer.name: [tuple(t.shape) for t in node.input_tensors] for layer, _, node in nodes}
    info = {layer.name: (layer, depth) for layer, depth, _ in nodes}
    stats = []
    for ln in sorted(where, key=lambda n: info[n][1]):
        layer, depth = info[ln]
        det, p = details[where[ln]], proofs[ln]
        op = ops.get(where[ln]) or "?"
        r, g = ref[ln], gotl[ln]
        err = g.astype(np.float64) - r
        lr = local.get(ln)
        local_rmse = float(np.sqrt(np.mean((g.astype(np.float64) - lr) ** 2))) if lr is not None else None
        q = det.get("quantization_parameters") or {}
        is_q = np.issubdtype(det["dtype"], np.integer) and len(q.get("scales", [])) > 0
        scale = float(q["scales"][0]) if is_q else None
        out_sqnr, by_output = None, None
        if not fp32:  # on fp32 every layer's error is float rounding: nothing to rank, and the self-test is fast
            own = r + (g - lr) if lr is not None else g  # this layer's own error on the float reference
            if ln in out_layers and all(id(t) != id(o) for t in targets for o in keras_model.outputs):
                out_sqnr = sqnr_db(r, own)  # the softmax itself: its own error at the output it is
            else:
                per = [sqnr_db(a, b) for a, b in zip(ref_out, _inject(keras_model, nodes, ref_tensors, ln, own, targets))]
                out_sqnr = min(per)
                by_output = dict(zip(names, per)) if len(per) > 1 else None
        stats.append(LayerStat(
            depth=depth, layer=ln, layer_class=type(layer).__name__, activation=_activation_name(layer),
            tensor=det["name"], op=op, dtype=np.dtype(det["dtype"]).name, shape=tuple(int(s) for s in r.shape[1:]),
            scale=scale, rmse=float(np.sqrt(np.mean(err ** 2))), max_abs=float(np.max(np.abs(err))),
            sqnr_db=sqnr_db(r, g), local_rmse=local_rmse,
            local_sqnr_db=sqnr_db(lr, g) if lr is not None else None,
            # the rounding rule of thumb holds for 8-bit tensors; an int16 tensor's error is the int8 weights', not
            # its own (tiny) step, so there the local SQNR speaks instead
            rmse_scale=local_rmse / scale if (scale and local_rmse is not None
                                              and np.dtype(det["dtype"]).itemsize == 1) else None,
            flags=_flags(layer, op, inbound[ln]), matched_by=p.how, output_sqnr_db=out_sqnr, proof_sqnr_db=p.sqnr_db,
            output_sqnr_by=by_output))
    import keras

    not_comparable = {ln: why[ln] for ln, (layer, _) in info.items()
                      if ln in why and ln not in where and isinstance(layer, keras.layers.Layer)}
    rep = LayerReport(name, stats, len(x), list(not_comparable), not_comparable=not_comparable,
                      ranked_by=LOCAL_RANKING if fp32 else RANKED_BY)
    if fp32:
        bad = [s for s in stats if not s.sqnr_db >= PROOF_SQNR_DB]
        if bad:
            raise SelfTestFailed(
                f"{name}: layer-wise self-test failed: on this fp32 file {len(bad)} matched layer(s) differ from Keras "
                f"beyond float rounding, e.g. {bad[0].layer} vs tensor {bad[0].tensor} at {bad[0].sqnr_db:.1f} dB "
                f"(< {PROOF_SQNR_DB:g} dB): the matcher is wrong")
        rep.self_test = (f"fp32 self-test of the matcher passed: {len(stats)} layers at float rounding, "
                         f"min SQNR {min(s.sqnr_db for s in stats):.1f} dB on {len(x)} inputs")
    return rep
