"""Calibrate once, quantize many: the TF converter's calibrate-only step, editable activation ranges, then int8.

``TFLiteConverter`` quantizes in two steps: it runs the float model on the representative data and records each
activation tensor's min/max in the flatbuffer (the "calibrated model"), then its MLIR quantizer turns those ranges
into scales. :func:`calibrate` runs the first step once; :meth:`Calibrated.quantize` runs the second as often as
needed (plain int8, int8 with layers kept in float for ``--fallback``, int16x8), each in well under a second::

    from edgeconv.tflite.calibrate import calibrate
    cal = calibrate(saved_model_dir, calibration_x)        # float32 inputs, one calibration pass
    int8 = cal.quantize()                                    # the numbers of convert_tflite(..., "int8")
    int8_kf = cal.quantize(denylist=["conv_pw_13"])          # Keras layer names or TFLite node names
    cal.quantize(stats="auto")   # activation ranges chosen from calibration statistics (STATS_POLICIES)

``stats`` chooses how the recorded min/max become ranges (``"minmax"``: the converter's own, the default; the others
clip each activation tensor's range to what :func:`_clip_range` computes from the values seen during calibration).
The values are collected once, lazily, the first time a non-minmax policy is asked for.
"""
from __future__ import annotations

import os
import re
from dataclasses import dataclass, field

import numpy as np

from edgeconv.errors import EdgeconvError, UsageError, first_line

KERAS_SCOPE_SUFFIX = re.compile(r"_\d+$")  # the export's "_1" suffix on Keras scopes

__all__ = ["Calibrated", "calibrate", "STATS_POLICIES", "CANDIDATES", "layer_of", "layers_in"]

#: "minmax": the converter's own ranges. "p9999" / "p99999": each activation range clipped to the 0.01 / 99.99
#: (0.001 / 99.999) percentiles of its calibration values. "mse": the clipping of each tensor that minimizes its own
#: int8 rounding + clipping error. "auto": whichever of those gives the highest output SQNR against the float model
#: on the calibration inputs (ties keep "minmax"), so it is never worse than the converter's on that data.
STATS_POLICIES = ("minmax", "p9999", "p99999", "mse", "auto")
CANDIDATES = ("minmax", "p9999", "p99999", "mse")


def calibrate(saved_model_dir: str | os.PathLike, calibration_x: np.ndarray, io_type: str = "int") -> "Calibrated":
    """Run the TF converter's calibration (int8 recipe) once on ``calibration_x`` (float32 model inputs, N >= 1).

    ``io_type`` ("int", "uint8", "float") is the interface every :meth:`Calibrated.quantize` result gets by default.
    """
    import tensorflow as tf

    from edgeconv.tflite.convert import _quiet, make_converter

    if calibration_x is None or len(calibration_x) == 0:
        raise EdgeconvError("int8 calibration needs calibration data")
    conv = make_converter(saved_model_dir, "int8", calibration_x, io_type)
    # Float ops must be allowed: denylisted nodes stay float between DEQUANTIZE / QUANTIZE.
    conv.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS]
    conv._experimental_calibrate_only = True  # noqa: SLF001 - TF's own QuantizationDebugger does the same
    try:
        with _quiet():
            data = bytes(conv.convert())
    except Exception as e:  # ConverterError / RuntimeError with long MLIR dumps
        raise EdgeconvError(f"int8 calibration failed: {first_line(e, prefer='error').strip()}") from None
    return Calibrated(data, np.asarray(calibration_x, np.float32), io_type, str(saved_model_dir))


@dataclass
class Calibrated:
    """A calibrated float model (activation min/max recorded per tensor) that quantizes on demand."""

    model: bytes  # the calibrated flatbuffer (float ops, min/max in each tensor's quantization field)
    calibration_x: np.ndarray
    io_type: str = "int"
    saved_model_dir: str | None = None
    _values: dict | None = field(default=None, repr=False)  # tensor name -> sample of calibration values
    _nodes: list | None = field(default=None, repr=False)
    _scores: dict | None = field(default=None, repr=False)
    _choice: str | None = field(default=None, repr=False)
    _ranges: dict = field(default_factory=dict, repr=False)

    # ------------------------------------------------------------------ quantize
    def quantize(self, denylist=(), stats: str = "minmax", io_type: str | None = None,
                 precision: str = "int8") -> bytes:
        """int8 (or int16x8) TFLite bytes. ``denylist``: Keras layer names or TFLite node names kept in float;
        ``stats``: one of :data:`STATS_POLICIES`; ``io_type``: override the interface chosen at calibration."""
        io_type = self.io_type if io_type is None else io_type
        if stats not in STATS_POLICIES:
            raise UsageError(f"stats must be one of {STATS_POLICIES}, got {stats!r}")
        if precision == "int16x8":
            if denylist or stats != "minmax":
                raise UsageError("int16x8 is quantized whole, with the converter's own ranges")
            from edgeconv.tflite.convert import convert_tflite

            # The converter's int16x8 path uses its older quantizer on its own calibration; it is not
            # reachable from a calibrated model, so this one re-calibrates (documented cost).
            return convert_tflite(self.saved_model_dir, "int16x8", self.calibration_x, io_type)
        if precision != "int8":
            raise UsageError(f"Calibrated.quantize makes int8 or int16x8, not {precision!r}")
        nodes = self.resolve(list(denylist)) if denylist else []
        if stats == "auto":
            stats = self.best_stats()
        model = self.model if stats == "minmax" else self.with_ranges(stats)
        return _mlir_int8(model, nodes, io_type)

    def best_stats(self) -> str:
        """The :data:`CANDIDATES` policy with the highest output SQNR against the calibrated float model on the
        calibration inputs (float I/O, nothing kept float); "minmax" unless another is better by > 0.1 dB."""
        if self._choice is None:
            scores = self.stats_scores()
            best = max(scores, key=scores.get)
            self._choice = best if scores[best] > scores["minmax"] + 0.1 else "minmax"
        return self._choice

    def stats_scores(self) -> dict[str, float]:
        """{policy: SQNR in dB on the calibration inputs} for every candidate (computed once). Measured on the
        logits (a SOFTMAX output is replaced by its input): calibration data is usually training data, on which
        the softmax saturates and hides the error (measured: MobileNetV2 fixture, softmax SQNR picked the policy
        that is 0.7 dB worse on held-out digits)."""
        if self._scores is None:
            from edgeconv.runtime.runners import LiteRTRunner
            from edgeconv.verify.compare import sqnr_db

            x = self.calibration_x
            ref = _scores_of(self.model, x)
            self._scores = {}
            for s in CANDIDATES:
                got = _scores_of(_mlir_int8(self.model if s == "minmax" else self.with_ranges(s), [], "float"), x)
                self._scores[s] = min(sqnr_db(r, g) for r, g in zip(ref, got))
        return self._scores

    def with_ranges(self, stats: str) -> bytes:
        """The calibrated model with each activation range replaced by the ``stats`` policy's clipped one."""
        if stats not in self._ranges:
            self._ranges[stats] = _set_ranges(self.model, {n: _clip_range(v, stats) for n, v in self.values().items()})
        return self._ranges[stats]

    # ------------------------------------------------------------------ statistics
    def values(self, max_per_tensor: int = 200_000) -> dict[str, np.ndarray]:
        """Every calibrated activation tensor's values on the calibration inputs (a fixed subsample per tensor)."""
        if self._values is None:
            from edgeconv.runtime.runners import LiteRTRunner

            r = LiteRTRunner(self.model, preserve_all_tensors=True)
            interp = r.interpreter
            details = [d for d in interp.get_tensor_details() if d["name"] in _ranged_tensors(self.model)]
            inp = interp.get_input_details()[0]
            chunks: dict[str, list] = {d["name"]: [] for d in details}
            for i in range(len(self.calibration_x)):
                interp.set_tensor(inp["index"], self.calibration_x[i:i + 1].astype(inp["dtype"]))
                interp.invoke()
                for d in details:
                    chunks[d["name"]].append(np.asarray(interp.get_tensor(d["index"]), np.float32).ravel())
            rng = np.random.default_rng(0)  # a local generator: no global RNG side effect
            out = {}
            for name, parts in chunks.items():
                v = np.concatenate(parts)
                if v.size > max_per_tensor:
                    v = rng.choice(v, max_per_tensor, replace=False)
                out[name] = v
            self._values = out
        return self._values

    # ------------------------------------------------------------------ names and graph
    def nodes(self) -> list[str]:
        """Names of the op outputs of the calibrated model (what a denylist names), in execution order."""
        self._graph()
        return self._nodes

    def _graph(self) -> None:
        """Fills node names, ``producers`` (node -> the nodes whose outputs it reads, through QUANTIZE /
        DEQUANTIZE), ``consumers`` and ``op_of`` (node -> TFLite op name)."""
        if self._nodes is not None:
            return
        from edgeconv.runtime.runners import LiteRTRunner

        runner = LiteRTRunner(self.model, xnnpack=False)
        # a model output's op is named after the signature's tensor, not its layer: {output name: tensor name}
        self.output_nodes = {s.name: s.tensor or s.name for s in runner.outputs}
        details, ops = runner.tensors(), runner.ops()
        made_by = {t: op for op in ops for t in op["outputs"]}

        def sources(tensor, seen=()):
            op = made_by.get(tensor)
            if op is None or tensor in seen:
                return []
            if op["op_name"] in ("QUANTIZE", "DEQUANTIZE"):
                return [s for t in op["inputs"] for s in sources(t, (*seen, tensor))]
            return [details[tensor]["name"]]

        nodes, self.producers, self.consumers, self.op_of = [], {}, {}, {}
        for op in ops:
            if op["op_name"] in ("QUANTIZE", "DEQUANTIZE"):
                continue
            ins = [s for t in op["inputs"] if t >= 0 for s in sources(t)]
            for t in op["outputs"]:
                name = details[t]["name"]
                nodes.append(name)
                self.op_of[name] = op["op_name"]
                self.producers[name] = ins
                for i in ins:
                    self.consumers.setdefault(i, []).append(name)
        self._nodes = nodes

    def with_neighbours(self, nodes) -> list[str]:
        """``nodes`` plus the producers of their inputs and the consumers of their outputs: a tensor with a badly
        spread range (one outlier channel) is squeezed through int8 unless both its writer and its readers are
        float (measured on the tests' outlier model: its writer alone in float 16.1 -> 15.4 dB, with its reader
        30.8 dB)."""
        self._graph()
        out: list[str] = []
        for n in nodes:
            for m in [*self.producers.get(n, []), n, *self.consumers.get(n, [])]:
                if m not in out:
                    out.append(m)
        return out

    def layer_of(self, node: str) -> str:
        """The Keras layer a node computes (its first scope); a model output tensor without a scope (TFLite's
        ``StatefulPartitionedCall_1:0``) is named by its op and the layer that feeds it, e.g. "softmax after
        logits"."""
        if "/" in node.split(";")[0]:
            return layer_of(node)
        self._graph()
        feeds = [layer_of(p) for p in self.producers.get(node, []) if "/" in p.split(";")[0]]
        op = self.op_of.get(node, "output").lower()
        return f"{op} after {feeds[0]}" if feeds else f"{op} (model output)"

    def resolve(self, names) -> list[str]:
        """User names (Keras layer names or exact TFLite node names) -> TFLite node names."""
        nodes: list[str] = []
        all_nodes = self.nodes()
        for name in names:
            hits = ([n for n in all_nodes if n == name] or [n for n in all_nodes if name in layers_in(n)]
                    or [n for n in all_nodes if n == self.output_nodes.get(name)]
                    or [n for n in all_nodes if self.layer_of(n) == name])
            if not hits:
                known = sorted({self.layer_of(n) for n in all_nodes})
                raise UsageError(f"--keep-float {name}: no TFLite op computes a layer of that name; "
                                 f"layers: {', '.join(known)}")
            nodes += [h for h in hits if h not in nodes]
        return nodes


def layer_of(node: str) -> str:
    """The Keras layer a TFLite node computes: the first scope after the model's in the first fused op name."""
    parts = node.split(";")[0].split("/")
    return KERAS_SCOPE_SUFFIX.sub("", parts[1]) if len(parts) > 1 else node


def layers_in(node: str) -> set[str]:
    """Every Keras layer a (fused) TFLite node mentions, with and without the export's ``_1`` suffix."""
    scopes = [piece.split("/")[1] for piece in node.split(";") if piece.count("/") >= 1]
    return set(scopes) | {KERAS_SCOPE_SUFFIX.sub("", c) for c in scopes}


def _mlir_int8(calibrated: bytes, denylist: list[str], io_type: str) -> bytes:
    """What ``TFLiteConverter.convert()`` does after calibration for int8: the MLIR quantizer, then the I/O type."""
    import tensorflow as tf
    from tensorflow.lite.python import convert
    from tensorflow.lite.python.util import modify_model_io_type

    from edgeconv.tflite.convert import _quiet, io_dtype_name

    try:
        with _quiet():
            data = convert.mlir_quantize(calibrated, fully_quantize=False, denylisted_nodes=list(denylist) or None)
    except Exception as e:  # noqa: BLE001
        raise EdgeconvError(f"int8 quantization failed: {first_line(e, prefer='error').strip()}") from None
    io = io_dtype_name("int8", io_type)
    if io != "float32":
        dt = tf.uint8 if io == "uint8" else tf.int8
        data = modify_model_io_type(data, dt, dt)
    return bytes(data)


def _scores_of(model: bytes, x: np.ndarray) -> list[np.ndarray]:
    """Each model output on ``x``; for an output computed by SOFTMAX, the (dequantized) input of that SOFTMAX."""
    from edgeconv.runtime.runners import LiteRTRunner

    r = LiteRTRunner(model, preserve_all_tensors=True)
    interp = r.interpreter
    tensors = {d["index"]: d for d in interp.get_tensor_details()}
    made_by = {t: op for op in r.ops() for t in op["outputs"]}
    wanted = []
    for o in interp.get_output_details():
        t = o["index"]
        op = made_by.get(t)
        while op is not None and op["op_name"] in ("QUANTIZE", "DEQUANTIZE"):  # through the I/O conversions
            t = op["inputs"][0]
            op = made_by.get(t)
        wanted.append(op["inputs"][0] if op is not None and op["op_name"] == "SOFTMAX" else o["index"])
    inp = interp.get_input_details()[0]
    out = [[] for _ in wanted]
    for i in range(len(x)):
        interp.set_tensor(inp["index"], x[i:i + 1].astype(inp["dtype"]))
        interp.invoke()
        for k, t in enumerate(wanted):
            v = interp.get_tensor(t)
            scale, zp = tensors[t]["quantization"]
            out[k].append((v.astype(np.float32) - zp) * scale if scale else v.astype(np.float32))
    return [np.concatenate(o) for o in out]


def _ranged_tensors(model: bytes) -> set[str]:
    """Names of the float tensors the calibration gave a min/max."""
    from ai_edge_litert import schema_py_generated as schema

    m = schema.ModelT.InitFromObj(schema.Model.GetRootAsModel(model, 0))
    out = set()
    for sg in m.subgraphs:
        for t in sg.tensors:
            q = t.quantization
            if q is not None and q.min is not None and len(q.min) == 1 and t.type == schema.TensorType.FLOAT32:
                out.add(t.name.decode() if isinstance(t.name, bytes) else t.name)
    return out


def _set_ranges(model: bytes, ranges: dict[str, tuple[float, float]]) -> bytes:
    from ai_edge_litert import schema_py_generated as schema
    import flatbuffers

    m = schema.ModelT.InitFromObj(schema.Model.GetRootAsModel(model, 0))
    for sg in m.subgraphs:
        for t in sg.tensors:
            name = t.name.decode() if isinstance(t.name, bytes) else t.name
            if name in ranges and t.quantization is not None and t.quantization.min is not None:
                lo, hi = ranges[name]
                t.quantization.min, t.quantization.max = [float(lo)], [float(hi)]
    b = flatbuffers.Builder(len(model) + 1024)
    b.Finish(m.Pack(b), file_identifier=b"TFL3")
    return bytes(b.Output())


def _qerr(v: np.ndarray, lo: float, hi: float, levels: int = 255) -> float:
    """Mean squared error of asymmetric uniform quantization of ``v`` on [lo, hi] (range forced to include 0)."""
    lo, hi = min(lo, 0.0), max(hi, 0.0)
    if hi - lo <= 0:
        return float(np.mean(v ** 2))
    s = (hi - lo) / levels
    q = np.clip(np.round((v - lo) / s), 0, levels) * s + lo
    return float(np.mean((q - v) ** 2))


def _clip_range(v: np.ndarray, stats: str) -> tuple[float, float]:
    lo, hi = float(v.min()), float(v.max())
    if stats in ("p9999", "p99999"):
        q = 0.01 if stats == "p9999" else 0.001
        return float(np.percentile(v, q)), float(np.percentile(v, 100 - q))
    if stats == "mse":
        best, best_err = (lo, hi), _qerr(v, lo, hi)
        for f in np.linspace(0.3, 1.0, 15)[:-1]:
            for cand in ((lo * f, hi * f), (lo, hi * f), (lo * f, hi)):
                e = _qerr(v, *cand)
                if e < best_err:
                    best, best_err = cand, e
        return best
    return lo, hi
