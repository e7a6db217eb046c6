"""Calibrate once, quantize many: one pass over the calibration inputs, editable activation ranges, then int8.

``TFLiteConverter`` quantizes in two steps: it runs the float model on the representative data and records each
activation tensor's min/max in the flatbuffer (the "calibrated model"), then its MLIR quantizer turns those ranges
into scales. :func:`calibrate` makes the calibrated model once from the export's float .tflite (no second graph
conversion; TF's calibrator says which tensors need a range, a LiteRT pass that reads each of them as a model output
measures them: see :func:`calibrate` for why that is faster and more exact than TF's own calibrator);
:meth:`Calibrated.quantize` runs TF's MLIR quantizer as often as needed (plain int8, int8 with layers kept in float
for ``--fallback``), each in well under a second::

    from edgeconv.tflite.calibrate import calibrate
    cal = calibrate(float_tflite_bytes, calibration_x)      # or a traced SavedModel folder
    int8 = cal.quantize()                                    # the converter's int8 graph, edgeconv's ranges
    int8_kf = cal.quantize(denylist=["conv_pw_13"])          # Keras layer names or TFLite node names
    cal.quantize(stats="auto")   # activation ranges chosen from calibration statistics (STATS_POLICIES)

``stats`` chooses how the recorded min/max become ranges (``"minmax"``: the default; the others clip each activation
tensor's range to what :func:`_clip_range` computes from the values seen during calibration). The values are
collected once, lazily, the first time a non-minmax policy is asked for.
"""
from __future__ import annotations

import os
import re
from dataclasses import dataclass, field

import numpy as np

from edgeconv.errors import EdgeconvError, UsageError, first_line
from edgeconv.tflite.introspect import tensor_name

KERAS_SCOPE_SUFFIX = re.compile(r"_\d+$")  # the export's "_1" suffix on Keras scopes

__all__ = ["Calibrated", "calibrate", "STATS_POLICIES", "CANDIDATES", "layer_of", "layers_in", "scores_of"]

#: "minmax": each tensor's min/max over the calibration inputs, as TF's calibrator records them. "p9999" / "p99999":
#: each activation range clipped to the 0.01 / 99.99
#: (0.001 / 99.999) percentiles of its calibration values. "mse": the clipping of each tensor that minimizes its own
#: int8 rounding + clipping error. "auto": whichever of those gives the highest output SQNR against the float model
#: on the calibration inputs (ties keep "minmax"), so it is never worse than the converter's on that data. "cle": the
#: float model cross-layer equalized first (:func:`edgeconv.tflite.equalize.equalize`: weights rescaled per channel so
#: that narrow channels use the per-tensor int8 range; same float function), then calibrated with "minmax".
STATS_POLICIES = ("minmax", "p9999", "p99999", "mse", "cle", "auto")
CANDIDATES = ("minmax", "p9999", "p99999", "mse", "cle")


def calibrate(source, calibration_x: np.ndarray, io_type: str = "int") -> "Calibrated":
    """Calibrate the float model once on ``calibration_x`` (float32 model inputs, N >= 1).

    ``source`` is the model's float .tflite (the bytes of ``convert_tflite(saved_model, "fp32")``: an export passes
    the float model it already has, so int8 costs no second graph conversion) or a traced SavedModel folder (its
    float model is converted here). ``io_type`` ("int", "uint8", "float") is the interface every
    :meth:`Calibrated.quantize` result gets by default.

    Which tensors get a range is TF's own calibrator's answer (run on one input); their min/max over all inputs
    come from :func:`_minmax`, which reads every such tensor as a model output: 5-7x faster than TF's logging
    calibrator (MobileNetV3-Small at 224x224, 200 inputs: 0.7-0.9 s vs 4.9 s). TF's calibrator records, for a
    tensor read by an element-wise op that can run in place on its buffer (the residual ADD after a projection conv,
    the MUL after a hard-sigmoid's ADD + RELU6, the Rescaling layer's ADD), the union of the tensor's values and the
    op's output: evidently it logs the tensor after that op has overwritten it (measured: a projection conv's range
    20x too wide, the rescaled input's [0, 2] recorded as [-1, 2]). :func:`_in_place_union` reproduces that, so
    the ranges, and the int8, are the converter's to float rounding (checked against TF's calibrator in
    tests/test_calibrate.py). The tensors' own ranges are tighter, but not better on held-out data: on table 2's
    fixtures they moved int8 SQNR by -1.8 to +3.7 dB against the converter's (MobileNetV3-Small 27.1 vs 28.9 dB,
    EfficientNet-B0 18.8 vs 19.6 with 2.5 points less top-1 agreement; MobileNetV3-Large 29.6 vs 25.9), so they
    are not the default.
    """
    from edgeconv.tflite.convert import convert_tflite

    if calibration_x is None or len(calibration_x) == 0:
        raise EdgeconvError("int8 calibration needs calibration data")
    x = np.asarray(calibration_x, np.float32)
    saved_model_dir = None
    if not isinstance(source, (bytes, bytearray)):
        saved_model_dir, source = str(source), convert_tflite(source, "fp32")
    template = _calibration_template(bytes(source), x[:1])
    try:
        model = _set_ranges(template, _minmax(template, x))
    except _Unreadable:  # e.g. ranged tensors in a second subgraph: TF's own calibrator on every input
        model = _calibration_template(bytes(source), x)
    return Calibrated(model, x, io_type, saved_model_dir, float_model=bytes(source))


def _calibration_template(float_model: bytes, x1: np.ndarray) -> bytes:
    """The float model as TF's converter hands it to its calibrator (its conversion metadata dropped: the int8 gets
    its own), calibrated by TF's calibrator on one input: every tensor int8 needs a range for has one."""
    from tensorflow.lite.python.optimize import calibrator as tf_calibrator
    from tensorflow.lite.tools import flatbuffer_utils

    from edgeconv.tflite.convert import _quiet, _representative

    try:
        m = flatbuffer_utils.convert_bytearray_to_object(float_model)
        m.metadata = [e for e in (m.metadata or []) if e.name != CONVERSION_METADATA]
        model = tf_calibrator.add_intermediate_tensors(bytes(flatbuffer_utils.convert_object_to_bytearray(m)))
        with _quiet():
            return bytes(tf_calibrator.Calibrator(model).calibrate(_representative(x1)))
    except Exception as e:  # noqa: BLE001 - the calibrator raises RuntimeError / ValueError with native text
        raise EdgeconvError(f"int8 calibration failed: {first_line(e, prefer='error').strip()}") from None


CONVERSION_METADATA = b"CONVERSION_METADATA"


class _Unreadable(Exception):
    """A ranged tensor the probe cannot read as a model output."""


def _probe(template: bytes):
    """A :class:`edgeconv.runtime.runners.TensorProbe` of every ranged tensor of the calibration template (an output
    is never overwritten by a later op, so each tensor reads as the op that wrote it left it)."""
    from edgeconv.runtime.runners import TensorProbe

    probe = TensorProbe(template, _ranged_tensors(template))
    if probe.missing:  # a tensor of another subgraph (control flow): not readable as an output of the first
        raise _Unreadable(f"{len(probe.missing)} tensor(s), e.g. {sorted(probe.missing)[0]}")
    return probe


def _minmax(template: bytes, x: np.ndarray) -> dict[str, tuple[float, float]]:
    """{tensor name: (min, max)} as TF's calibrator records them over every input of ``x``, for each tensor the
    template has a range for."""
    return _in_place_union(template, _own_minmax(template, x))


def _own_minmax(template: bytes, x: np.ndarray) -> dict[str, tuple[float, float]]:
    """{tensor name: (min, max)} of the values each ranged tensor holds as its op wrote it, over every input."""
    lo: dict[str, float] = {}
    hi: dict[str, float] = {}
    for got in _probe(template).run(x):
        for n, v in got.items():
            a, b = float(v.min()), float(v.max())
            lo[n], hi[n] = min(a, lo.get(n, a)), max(b, hi.get(n, b))
    bad = [n for n in lo if not (np.isfinite(lo[n]) and np.isfinite(hi[n]))]
    if bad:
        raise EdgeconvError(f"int8 calibration: tensor {bad[0]} is not finite on the calibration inputs "
                            f"(NaN or Inf in the float model)")
    return {n: (lo[n], hi[n]) for n in lo}


_IN_PLACE_OPS = ("ADD", "SUB", "MUL", "DIV")  # element-wise ops LiteRT runs in place on an input's buffer


def _in_place_union(template: bytes, ranges: dict[str, tuple[float, float]]) -> dict[str, tuple[float, float]]:
    """TF's calibrator's ranges from the tensors' own: an element-wise op that LiteRT may run in place (its first
    input, else its second, of the output's shape, read by that op only, not a constant, model input or output)
    has overwritten that input by the time TF logs it, so TF's range of it also holds the op's output."""
    from ai_edge_litert import schema_py_generated as schema

    m = schema.ModelT.InitFromObj(schema.Model.GetRootAsModel(template, 0))
    sg = m.subgraphs[0]
    codes = {getattr(schema.BuiltinOperator, k) for k in _IN_PLACE_OPS}
    readers: dict[int, int] = {}
    for op in sg.operators:
        for t in op.inputs:
            readers[int(t)] = readers.get(int(t), 0) + 1
    io = {int(t) for t in [*sg.inputs, *sg.outputs]}

    def shared(t: int, out: int) -> bool:
        buf = m.buffers[sg.tensors[t].buffer].data
        return (t >= 0 and t not in io and readers.get(t) == 1 and (buf is None or len(buf) == 0)
                and list(sg.tensors[t].shape) == list(sg.tensors[out].shape))

    out = dict(ranges)
    for op in sg.operators:
        if m.operatorCodes[op.opcodeIndex].builtinCode not in codes or len(op.outputs) != 1:
            continue
        o = int(op.outputs[0])
        t = next((int(i) for i in list(op.inputs)[:2] if shared(int(i), o)), None)
        if t is None:
            continue
        name, oname = tensor_name(sg.tensors[t]), tensor_name(sg.tensors[o])
        if name in out and oname in ranges:
            (a, b), (c, d) = out[name], ranges[oname]
            out[name] = (min(a, c), max(b, d))
    return out


@dataclass
class Calibrated:
    """A calibrated float model (activation min/max recorded per tensor) that quantizes on demand."""

    model: bytes  # the calibrated flatbuffer (float ops, min/max in each tensor's quantization field)
    calibration_x: np.ndarray
    io_type: str = "int"
    saved_model_dir: str | None = None
    float_model: bytes | None = field(default=None, repr=False)  # what was calibrated (its conversion metadata)
    _values: dict | None = field(default=None, repr=False)  # tensor name -> sample of calibration values
    _nodes: list | None = field(default=None, repr=False)
    _scores: dict | None = field(default=None, repr=False)
    _choice: str | None = field(default=None, repr=False)
    _ranges: dict = field(default_factory=dict, repr=False)
    _equalized: "Calibrated | None" = field(default=None, repr=False)

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
            if self.saved_model_dir is None:
                raise UsageError("int16x8 needs the SavedModel: calibrate(saved_model_dir, ...)")
            return convert_tflite(self.saved_model_dir, "int16x8", self.calibration_x, io_type)
        if precision != "int8":
            raise UsageError(f"Calibrated.quantize makes int8 or int16x8, not {precision!r}")
        nodes = self.resolve(list(denylist)) if denylist else []
        if stats == "auto":
            stats = self.best_stats()
        return _mlir_int8(self.calibrated_model(stats), nodes, io_type, self.float_model)

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
            ref = scores_of(self.model, x)
            self._scores = {}
            for s in CANDIDATES:
                got = scores_of(_mlir_int8(self.calibrated_model(s), [], "float"), x)
                self._scores[s] = min(sqnr_db(r, g) for r, g in zip(ref, got))
        return self._scores

    def calibrated_model(self, stats: str = "minmax") -> bytes:
        """The calibrated float model the ``stats`` policy (not "auto") hands to the quantizer."""
        if stats == "minmax":
            return self.model
        if stats == "cle":
            return self.equalized().model
        return self.with_ranges(stats)

    def equalized(self) -> "Calibrated":
        """The cross-layer equalized float model, calibrated on the same inputs (made once; itself when the model
        has nothing to equalize or no float model is known)."""
        if self._equalized is None:
            from edgeconv.tflite.equalize import equalize

            eq, pairs = equalize(self.float_model, self.calibration_x) if self.float_model else (None, 0)
            self._equalized = calibrate(eq, self.calibration_x, self.io_type) if pairs else self
            if pairs:
                self._equalized.float_model = self.float_model  # the int8's conversion metadata: the export's model
        return self._equalized

    def with_ranges(self, stats: str) -> bytes:
        """The calibrated model with each activation range replaced by the ``stats`` policy's clipped one."""
        if stats not in self._ranges:
            self._ranges[stats] = _set_ranges(self.model, {n: _clip_range(v, stats) for n, v in self.values().items()})
        return self._ranges[stats]

    # ------------------------------------------------------------------ statistics
    def values(self, max_per_tensor: int = 200_000) -> dict[str, np.ndarray]:
        """Every calibrated activation tensor's values on the calibration inputs: a fixed random subsample of at most
        ``max_per_tensor`` values per tensor, drawn evenly from every input (memory stays bounded at any input
        size)."""
        if self._values is None:
            rng = np.random.default_rng(0)  # a local generator: no global RNG side effect
            per_input = -(-max_per_tensor // len(self.calibration_x))
            chunks: dict[str, list] = {}
            for got in _probe(self.model).run(self.calibration_x):
                for n, v in got.items():
                    v = np.asarray(v, np.float32).ravel()
                    chunks.setdefault(n, []).append(rng.choice(v, per_input, replace=False) if v.size > per_input
                                                    else v.copy())
            self._values = {n: np.concatenate(parts) for n, parts in chunks.items()}
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


def _mlir_int8(calibrated: bytes, denylist: list[str], io_type: str, float_model: bytes | None = None) -> bytes:
    """What ``TFLiteConverter.convert()`` does after calibration for int8: the MLIR quantizer with the I/O type,
    read-only buffers deduplicated, and the conversion metadata (``float_model``'s, marked as full-integer PTQ)."""
    import tensorflow as tf
    from tensorflow.lite.python import convert

    from edgeconv.tflite.convert import _quiet, io_dtype_name

    io = io_dtype_name("int8", io_type)
    dt = {"uint8": tf.uint8, "int8": tf.int8}.get(io, tf.float32)
    try:
        with _quiet():
            data = convert.mlir_quantize(calibrated, fully_quantize=False, denylisted_nodes=list(denylist) or None,
                                         input_data_type=dt, output_data_type=dt)
            data = convert.deduplicate_readonly_buffers(data)
    except Exception as e:  # noqa: BLE001
        raise EdgeconvError(f"int8 quantization failed: {first_line(e, prefer='error').strip()}") from None
    return _with_conversion_metadata(bytes(data), float_model)


def _with_conversion_metadata(data: bytes, float_model: bytes | None, mode: str = "PTQ_FULL_INTEGER") -> bytes:
    """``data`` with the CONVERSION_METADATA the converter writes into a quantized file: ``float_model``'s (TF
    version, source kind, options), optimization ``mode`` (PTQ_FULL_INTEGER, PTQ_FLOAT16), the model hash of
    ``data``. Unchanged without one."""
    from tensorflow.lite.python import conversion_metadata_schema_py_generated as cm
    from tensorflow.lite.python import util
    from tensorflow.lite.tools import flatbuffer_utils

    if float_model is None:
        return data
    src = flatbuffer_utils.convert_bytearray_to_object(float_model)
    meta = [e for e in (src.metadata or []) if e.name == CONVERSION_METADATA]
    if not meta:
        return data
    buf = src.buffers[meta[0].buffer].data
    md = cm.ConversionMetadataT.InitFromObj(cm.ConversionMetadata.GetRootAs(bytes(np.asarray(buf, np.uint8)), 0))
    md.options.modelOptimizationModes = [getattr(cm.ModelOptimizationMode, mode)]
    m = flatbuffer_utils.convert_bytearray_to_object(data)
    m.metadata = [e for e in (m.metadata or []) if e.name != CONVERSION_METADATA]
    md.environment.modelHash = util.get_model_hash(m)
    return bytes(flatbuffer_utils.convert_object_to_bytearray(util.populate_conversion_metadata(m, md)))


def scores_of(model: bytes, x: np.ndarray) -> list[np.ndarray]:
    """Each model output on ``x`` (float inputs; any I/O type); for an output computed by SOFTMAX, the (dequantized)
    input of that SOFTMAX: the logits, whose error the softmax hides when it saturates."""
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
    out = [[] for _ in wanted]
    for i in range(len(x)):
        r.set_input(np.asarray(x[i:i + 1], np.float32))  # quantized for an integer-input file
        r.invoke()
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
                out.add(tensor_name(t))
    return out


def _set_ranges(model: bytes, ranges: dict[str, tuple[float, float]]) -> bytes:
    from ai_edge_litert import schema_py_generated as schema
    import flatbuffers

    m = schema.ModelT.InitFromObj(schema.Model.GetRootAsModel(model, 0))
    for sg in m.subgraphs:
        for t in sg.tensors:
            name = tensor_name(t)
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
