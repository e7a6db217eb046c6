"""Layer-wise comparison: every TFLite tensor against the Keras layer output it computes.

LiteRT runs the artifact with ``experimental_preserve_all_tensors`` (XNNPACK off, so no tensor is fused away inside a
delegate) and every op output is dequantized with its own scale / zero point. Tensors are matched to Keras layers by
name: a Keras 3 SavedModel export names TFLite tensors after the fused TF ops, e.g.
``tiny_mnv3_1/b1_relu6_1/Relu6;tiny_mnv3_1/b1_dw_bn_1/batchnorm/add_1;...``; the deepest Keras layer named there is
the one whose output the tensor holds. Tensors without a layer name (the model outputs, ``StatefulPartitionedCall:0``)
are matched by shape and graph order.

Two errors per matched layer:
- *accumulated*: the TFLite tensor vs the Keras reference run on the same input (rmse, max abs error, SQNR). This is
  what the user sees at the end of the network.
- *local*: the TFLite tensor vs the Keras layer (and any unmatched layers fused into it) run in float on the TFLite
  values of its inputs. This isolates the error the layer itself adds, as TF's QuantizationDebugger does; divided by
  the tensor's quantization scale it gives TF's rule of thumb (``rmse/scale`` about 0.29 = pure rounding is healthy,
  above 0.7 is suspect).
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
KERAS_SCOPE_SUFFIX = re.compile(r"_\d+$")

__all__ = ["LayerStat", "LayerReport", "compare_layers", "HEALTHY_RMSE_SCALE", "SUSPECT_RMSE_SCALE"]


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
    matched_by: str = "name"  # "name" | "shape" | "output"

    @property
    def suspect(self) -> bool:
        return self.rmse_scale is not None and self.rmse_scale > SUSPECT_RMSE_SCALE

    def to_dict(self) -> dict:
        d = asdict(self)
        d["shape"] = list(self.shape)
        d["suspect"] = self.suspect
        return {k: _json_float(v) for k, v in d.items()}


def _error_key(s: LayerStat) -> float:
    """Bigger = worse: rmse/scale for quantized tensors, else minus the local (or accumulated) SQNR."""
    if s.rmse_scale is not None:
        return s.rmse_scale
    v = s.local_sqnr_db if s.local_sqnr_db is not None else s.sqnr_db
    return -v if math.isfinite(v) else (-1e9 if v > 0 else 1e9)


MODEL_EXPLORER_GRAPH = "main"  # the graph id Model Explorer gives the subgraph of a TF 2.21 .tflite


@dataclass
class LayerReport:
    artifact: str
    layers: list[LayerStat]
    samples: int
    unmatched_layers: list[str]  # Keras layers without a TFLite tensor (fused away, e.g. a conv before its BN)
    plot_file: str | None = None
    error: str | None = None  # why no layer could be compared (the report is then empty)
    node_data_file: str | None = None  # Model Explorer overlay (:meth:`write_node_data`)

    def worst(self, n: int = 5) -> list[LayerStat]:
        """The ``n`` layers that add the most error themselves (rmse/scale, or local SQNR for float tensors)."""
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
        return (f"{len(self.layers)} layers matched, {suspects} suspect (rmse/scale > {SUSPECT_RMSE_SCALE}); "
                f"worst: {worst}")

    def to_dict(self) -> dict:
        return {"artifact": self.artifact, "samples": self.samples, "plot": self.plot_file,
                "node_data": self.node_data_file, "error": self.error,
                "worst": [s.layer for s in self.worst(5)], "unmatched_layers": self.unmatched_layers,
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

    def plot(self, path) -> Path:
        """A PNG of the error by depth: local rmse/scale (or local SQNR for float) and accumulated SQNR, with
        ReLU6 / h-swish / hard-sigmoid / squeeze-excite layers marked."""
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        path = Path(path)
        xs = list(range(len(self.layers)))
        quant = any(s.rmse_scale is not None for s in self.layers)
        fig, (ax1, ax2) = plt.subplots(2, 1, figsize=(max(6.0, 0.35 * len(xs) + 2), 7), sharex=True)
        if quant:
            y1 = [s.rmse_scale if s.rmse_scale is not None else np.nan for s in self.layers]
            ax1.axhline(HEALTHY_RMSE_SCALE, color="green", ls="--", lw=1, label=f"healthy ~{HEALTHY_RMSE_SCALE}")
            ax1.axhline(SUSPECT_RMSE_SCALE, color="red", ls="--", lw=1, label=f"suspect > {SUSPECT_RMSE_SCALE}")
            ax1.set_ylabel("local rmse / scale")
        else:
            y1 = [_finite(s.local_sqnr_db) for s in self.layers]
            ax1.set_ylabel("local SQNR (dB)")
        ax1.plot(xs, y1, "-o", color="0.4", ms=3, lw=1)
        ax2.plot(xs, [_finite(s.sqnr_db) for s in self.layers], "-o", color="0.4", ms=3, lw=1)
        ax2.set_ylabel("SQNR vs Keras (dB)")
        markers = {"squeeze_excite": ("*", "tab:purple"), "relu6": ("s", "tab:blue"),  # SE first: others on top
                   "hard_swish": ("D", "tab:red"), "hard_sigmoid": ("^", "tab:orange")}
        for flag, (m, c) in markers.items():
            idx = [i for i, s in enumerate(self.layers) if flag in s.flags]
            if idx:
                size = 110 if flag == "squeeze_excite" else 40
                ax1.scatter(idx, [y1[i] for i in idx], marker=m, color=c, s=size, zorder=3, label=flag)
                ax2.scatter(idx, [_finite(self.layers[i].sqnr_db) for i in idx], marker=m, color=c, s=size, zorder=3)
        ax1.legend(fontsize=7, loc="best")
        ax1.set_title(f"{self.artifact}: layer-wise error vs Keras ({self.samples} samples)")
        ax2.set_xticks(xs)
        ax2.set_xticklabels([s.layer for s in self.layers], rotation=70, ha="right", fontsize=7)
        fig.tight_layout()
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


def _run_graph(model, nodes, x, substitute: dict | None = None):
    """Run the Keras graph on ``x``; returns {layer name: output}. With ``substitute`` ({layer name: array}) the
    outputs of those layers are replaced by the given values before their consumers run ("local" mode), and the
    returned dict holds what each layer computed from its (substituted) inputs."""
    import keras

    tensors = {id(t): keras.ops.convert_to_tensor(x) for t in model.inputs}
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


def _match(runner, model, nodes) -> list[tuple]:
    """[(layer, depth, tensor detail, op name, matched_by)] for every Keras layer with a TFLite tensor."""
    import keras

    details = {d["index"]: d for d in runner.tensors()}
    nodes = [n for n in nodes if isinstance(n[0], keras.layers.Layer)]  # report layers, not bare ops
    known = {layer.name: depth for layer, depth, _ in nodes}
    by_name = {layer.name: (layer, depth, node) for layer, depth, node in nodes}
    out_idx = [d["index"] for d in runner.output_details]  # already in the model's output order
    out_layers = [t._keras_history.operation.name for t in model.outputs]  # noqa: SLF001
    ops = [op for op in runner.ops() if op["op_name"] not in _SKIP_OPS]

    def same_shape(layer_name, det):
        ks = tuple(by_name[layer_name][2].outputs[0].shape[1:])
        return int(np.prod(det["shape"][1:])) == int(np.prod([s or 1 for s in ks]))

    assigned: dict[str, tuple] = {}
    unnamed = []
    for op in ops:
        for t in op["outputs"]:
            det = details[t]
            if t in out_idx and out_idx.index(t) < len(out_layers):
                ln = out_layers[out_idx.index(t)]
                if same_shape(ln, det):
                    assigned[ln] = (det, op["op_name"], "output")
                continue
            names = _layer_names_in(det["name"], known)
            if names:
                ln = max(names, key=known.get)
                if same_shape(ln, det) and assigned.get(ln, (None, None, ""))[2] != "output":
                    assigned[ln] = (det, op["op_name"], "name")  # later ops win: the last one is the output
            else:
                unnamed.append((t, op))
    # Unnamed tensors: the next unmatched layer (in graph order) after the deepest matched one before it.
    for t, op in unnamed:
        det = details[t]
        before = [known[ln] for ln, (d, _, _) in assigned.items() if d["index"] < t] or [-1]
        for layer, depth, _ in nodes:
            if depth > max(before) and layer.name not in assigned and same_shape(layer.name, det):
                assigned[layer.name] = (det, op["op_name"], "shape")
                break
    return sorted(((by_name[ln][0], by_name[ln][1], det, opn, how) for ln, (det, opn, how) in assigned.items()),
                  key=lambda r: r[1])


def compare_layers(keras_model, tflite_bytes_or_path, x: np.ndarray, *, max_samples: int = 16,
                   artifact: str | None = None) -> LayerReport:
    """Compare every Keras layer output with the TFLite tensor that holds it, on up to ``max_samples`` inputs."""
    from edgeconv.runtime.runners import LiteRTRunner

    x = np.asarray(x[:max_samples], np.float32)
    if len(x) == 0:
        raise EdgeconvError("layer-wise comparison needs at least one input")
    runner = LiteRTRunner(tflite_bytes_or_path, preserve_all_tensors=True)
    name = artifact or runner.name
    nodes = _keras_graph(keras_model)
    matches = _match(runner, keras_model, nodes)
    if not matches:
        raise EdgeconvError(f"{name}: no TFLite tensor could be matched to a Keras layer")
    got = {layer.name: [] for layer, *_ in matches}
    step = 1 if runner.batch_size == 1 else len(x)
    for i in range(0, len(x), step):
        runner.set_input(x[i:i + step])  # quantizes int inputs like run() does
        runner.invoke()
        for layer, _, det, _, _ in matches:
            got[layer.name].append(_dequantized(runner, det))
    got = {k: np.concatenate(v, axis=0) for k, v in got.items()}
    ref = _run_graph(keras_model, nodes, x)
    local = _run_graph(keras_model, nodes, x, substitute={k: v.reshape(ref[k].shape) for k, v in got.items()})
    inbound = {layer.name: [tuple(t.shape) for t in node.input_tensors] for layer, _, node in nodes}
    stats = []
    for layer, depth, det, op, how in matches:
        r, g = ref[layer.name], got[layer.name].reshape(ref[layer.name].shape)
        err = g.astype(np.float64) - r
        lr = local.get(layer.name)
        local_rmse = float(np.sqrt(np.mean((g.astype(np.float64) - lr) ** 2))) if lr is not None else None
        q = det.get("quantization_parameters") or {}
        is_q = np.issubdtype(det["dtype"], np.integer) and len(q.get("scales", [])) > 0
        scale = float(q["scales"][0]) if is_q else None
        stats.append(LayerStat(
            depth=depth, layer=layer.name, layer_class=type(layer).__name__, activation=_activation_name(layer),
            tensor=det["name"], op=op, dtype=np.dtype(det["dtype"]).name, shape=tuple(int(s) for s in r.shape[1:]),
            scale=scale, rmse=float(np.sqrt(np.mean(err ** 2))), max_abs=float(np.max(np.abs(err))),
            sqnr_db=sqnr_db(r, g), local_rmse=local_rmse,
            local_sqnr_db=sqnr_db(lr, g) if lr is not None else None,
            # the rounding rule of thumb holds for 8-bit tensors; an int16 tensor's error is the int8 weights', not
            # its own (tiny) step, so there the local SQNR speaks instead
            rmse_scale=local_rmse / scale if (scale and local_rmse is not None
                                              and np.dtype(det["dtype"]).itemsize == 1) else None,
            flags=_flags(layer, op, inbound[layer.name]), matched_by=how))
    matched = {s.layer for s in stats}
    import keras

    unmatched = [layer.name for layer, _, _ in nodes
                 if layer.name not in matched and isinstance(layer, keras.layers.Layer)]
    return LayerReport(name, stats, len(x), unmatched)
