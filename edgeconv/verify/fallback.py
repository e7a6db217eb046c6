"""int8 that misses its target -> keep the worst layers in float (selective quantization), re-convert, re-validate.

Selective quantization goes through TF's public ``tf.lite.experimental.QuantizationDebugger``: it calibrates once,
then ``QuantizationDebugOptions(denylisted_nodes=[...])`` + ``get_nondebug_quantized_model()`` re-quantizes in
milliseconds with the named TFLite nodes (op output tensor names) left in float, wrapped in DEQUANTIZE / QUANTIZE.
A :class:`edgeconv.verify.layerwise.LayerReport` of the failing int8 ranks the layers by what each one's own error
costs the output (``LayerReport.worst``: its error alone injected into the float model), then the debugger's
per-node statistics (rmse / scale of each op against the same op run in float on the same input) rank the rest:
round 1 keeps every suspect one (rmse/scale > 0.7) in float, each later round doubles the count, the last keeps
everything float. A layer kept in float also gets the producers of its inputs and the consumers of its output kept
in float: the usual int8 failure is a tensor whose range one outlier channel stretches; the output ranking names
the layer that *writes* it (its own rounding is what costs the output), rmse/scale flags the one *reading* it, and
only with both in float does the tensor skip int8 (a float node alone is re-quantized for its int8 reader:
measured 16.1 -> 15.4 dB on the tests' outlier model, 30.8 dB with its reader). When nothing passes within
``max_rounds``, the whole model is tried as int16x8 as the last resort.
"""
from __future__ import annotations

import contextlib
import csv
import io
import math
import time
import warnings
from dataclasses import dataclass, field

import numpy as np

from edgeconv.verify.compare import Tolerance, _json_float, compare_outputs
from edgeconv.errors import EdgeconvError, UsageError, first_line
from edgeconv.verify.layerwise import KERAS_SCOPE_SUFFIX, SUSPECT_RMSE_SCALE

__all__ = ["FallbackResult", "auto_fallback", "convert_with_keep_float", "latency_ms"]


@dataclass
class FallbackResult:
    model_bytes: bytes
    kept_float: list[str]  # Keras layer names kept in float
    passed: bool
    history: list[dict] = field(default_factory=list)  # round, kept_float, nodes, sqnr_db, top1, bytes, latency_ms
    precision: str = "int8"  # "int16x8" when the int16x8 last resort was the one that passed
    nodes: list[str] = field(default_factory=list)  # TFLite node names kept float (the denylist)

    def history_dicts(self) -> list[dict]:
        return [dict(h) for h in self.history]

    def to_dict(self) -> dict:
        return {"passed": self.passed, "precision": self.precision, "kept_float": self.kept_float,
                "nodes": self.nodes, "history": self.history_dicts()}

    def summary(self) -> str:
        if not self.history:
            return "no fallback round ran"
        first, last = self.history[0], self.history[-1]
        what = (f"kept {len(self.kept_float)} layer(s) in float: {', '.join(self.kept_float)}" if self.kept_float
                else f"switched to {self.precision}" if self.precision != "int8" else "nothing kept in float")
        cost = (f"size {first['bytes'] / 1e3:.1f} -> {last['bytes'] / 1e3:.1f} KB, "
                f"latency {first['latency_ms']:.2f} -> {last['latency_ms']:.2f} ms")
        return f"{'passed' if self.passed else 'still failing'} after {len(self.history) - 1} round(s); {what}; {cost}"


def latency_ms(model_bytes: bytes, x: np.ndarray, runs: int = 10, num_threads: int = 1) -> float:
    """Median single-input latency on LiteRT (XNNPACK on, as on a phone's CPU), after one warm-up run."""
    from edgeconv.runtime.runners import LiteRTRunner

    from edgeconv.runtime.timing import time_call

    r = LiteRTRunner(model_bytes, num_threads=num_threads)
    x1 = np.ascontiguousarray(x[:1], np.float32)
    return float(np.median(time_call(lambda: r.run(x1), runs, warmup=1)))


def _layer_of(node: str) -> str:
    """The Keras layer a TFLite node computes: the first scope after the model's in the first fused op name."""
    parts = node.split(";")[0].split("/")
    return KERAS_SCOPE_SUFFIX.sub("", parts[1]) if len(parts) > 1 else node  # no scope: a model output tensor


@contextlib.contextmanager
def _debugger_quiet():
    """The converter's chatter, and the DeprecationWarning QuantizationDebugger triggers by building a
    ``tf.lite.Interpreter`` internally (TF 2.21 deprecates it; the debugger has no LiteRT option)."""
    from edgeconv.tflite.convert import _quiet

    with _quiet(), warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=r"(?s).*tf\.lite\.Interpreter is deprecated")
        yield


def _layers_in(node: str) -> set[str]:
    """Every Keras layer a (fused) TFLite node mentions, with and without the export's ``_1`` suffix."""
    scopes = [piece.split("/")[1] for piece in node.split(";") if piece.count("/") >= 1]
    return set(scopes) | {KERAS_SCOPE_SUFFIX.sub("", c) for c in scopes}


class _Quantizer:
    """Calibrate once, then re-quantize with any denylist (QuantizationDebugger, public TF API)."""

    def __init__(self, saved_model_dir, calibration_x: np.ndarray, io_type: str, debug_x: np.ndarray | None = None):
        import tensorflow as tf

        from edgeconv.tflite.convert import make_converter

        if calibration_x is None or len(calibration_x) == 0:
            raise EdgeconvError("int8 with layers kept in float needs calibration data")
        conv = make_converter(saved_model_dir, "int8", calibration_x, io_type)
        # Float ops must be allowed: the denylisted nodes stay float between DEQUANTIZE / QUANTIZE.
        conv.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS]
        dx = np.asarray(calibration_x if debug_x is None else debug_x, np.float32)[:16]
        self._tf = tf
        self._fully = io_type == "int"
        self._uint8 = io_type == "uint8"  # float I/O from the debugger, then a uint8 interface (TF's own util)
        try:
            with _debugger_quiet():
                self.debugger = tf.lite.experimental.QuantizationDebugger(
                    converter=conv, debug_dataset=lambda: ([dx[i:i + 1]] for i in range(len(dx))),
                    debug_options=tf.lite.experimental.QuantizationDebugOptions(fully_quantize=self._fully))
        except Exception as e:  # the converter raises ConverterError / ValueError with long MLIR dumps
            raise EdgeconvError(f"int8 calibration for selective quantization failed: "
                                f"{first_line(e)}") from None
        self.nodes = self._node_names()

    def _node_names(self) -> list[str]:
        """Op output names of the calibrated model in execution order; fills ``self.producers`` (node -> the
        nodes whose outputs it reads)."""
        from edgeconv.runtime.runners import LiteRTRunner

        runner = LiteRTRunner(self.debugger.calibrated_model, xnnpack=False)
        # a model output's op is named after the signature's tensor, not its layer: {output name: tensor name}
        self.output_nodes = {s.name: s.tensor or s.name for s in runner.outputs}
        details = runner.tensors()
        ops = runner.ops()
        made_by = {t: op for op in ops for t in op["outputs"]}

        def sources(tensor, seen=()):  # through QUANTIZE / DEQUANTIZE to the op that computes the value
            op = made_by.get(tensor)
            if op is None or tensor in seen:
                return []
            if op["op_name"] in ("QUANTIZE", "DEQUANTIZE"):
                return [s for t in op["inputs"] for s in sources(t, (*seen, tensor))]
            return [details[tensor]["name"]]

        names, self.producers, self.consumers = [], {}, {}
        for op in ops:
            if op["op_name"] in ("QUANTIZE", "DEQUANTIZE"):
                continue
            ins = [s for t in op["inputs"] if t >= 0 for s in sources(t)]
            for t in op["outputs"]:
                names.append(details[t]["name"])
                self.producers[details[t]["name"]] = ins
                for i in ins:
                    self.consumers.setdefault(i, []).append(details[t]["name"])
        return names

    def with_neighbours(self, nodes) -> list[str]:
        """``nodes`` plus the producers of their inputs and the consumers of their outputs: a tensor with a badly
        spread range (one outlier channel) is squeezed through int8 unless both its writer and its readers are
        float."""
        out: list[str] = []
        for n in nodes:
            for m in [*self.producers.get(n, []), n, *self.consumers.get(n, [])]:
                if m not in out:
                    out.append(m)
        return out

    def stats(self) -> list[tuple[str, float]]:
        """[(node, rmse / scale)] worst first: each quantized op against itself in float on the same input."""
        with _debugger_quiet():
            self.debugger.run()
        buf = io.StringIO()
        self.debugger.layer_statistics_dump(buf)
        buf.seek(0)
        out = []
        for row in csv.DictReader(buf):
            scale, mse = float(row["scale"] or 0), float(row["mean_squared_error"] or 0)
            if scale > 0 and math.isfinite(mse):
                out.append((row["tensor_name"], math.sqrt(mse) / scale))
        return sorted(out, key=lambda r: r[1], reverse=True)

    def quantize(self, denylist: list[str]) -> bytes:
        data = self._quantize(denylist)
        if self._uint8:
            from tensorflow.lite.python.util import modify_model_io_type

            data = bytes(modify_model_io_type(data, self._tf.uint8, self._tf.uint8))
        return data

    def _quantize(self, denylist: list[str]) -> bytes:
        tf = self._tf
        try:
            with _debugger_quiet():
                self.debugger.options = tf.lite.experimental.QuantizationDebugOptions(
                    denylisted_nodes=list(denylist), fully_quantize=self._fully)
                return bytes(self.debugger.get_nondebug_quantized_model())
        except ValueError:
            # Workaround (TF 2.21 QuantizationDebugger): with every node denylisted the debug model has no
            # NumericVerify op left and the options setter raises "Please check if the quantized model is in
            # debug mode"; quantize the calibrated model directly, as the debugger itself does.
            from tensorflow.lite.python import convert

            with _debugger_quiet():
                return bytes(convert.mlir_quantize(self.debugger.calibrated_model, fully_quantize=self._fully,
                                                   denylisted_nodes=list(denylist)))

    def resolve(self, names) -> list[str]:
        """User names (Keras layer names or exact TFLite node names) -> TFLite node names."""
        nodes = []
        for name in names:
            hits = ([n for n in self.nodes if n == name] or [n for n in self.nodes if name in _layers_in(n)]
                    or [n for n in self.nodes if n == self.output_nodes.get(name)])
            if not hits:
                known = sorted({_layer_of(n) for n in self.nodes})
                raise UsageError(f"--keep-float {name}: no TFLite op computes a layer of that name; "
                                 f"layers: {', '.join(known)}")
            nodes += [h for h in hits if h not in nodes]
        return nodes


def convert_with_keep_float(saved_model_dir, calibration_x: np.ndarray, keep_float, io_type: str = "int") -> bytes:
    """int8 TFLite with the named layers (Keras layer names or TFLite node names) left in float."""
    q = _Quantizer(saved_model_dir, calibration_x, io_type)
    return q.quantize(q.resolve(list(keep_float)))


def _evaluate(model_bytes: bytes, validation_x, reference_outputs, tolerance: Tolerance, outputs=None):
    """``outputs`` (OutputInfo per reference output): matched by name, each held to its kind's tolerance."""
    from edgeconv.runtime.runners import LiteRTRunner

    names = None if not outputs else [o.name for o in outputs]
    got = LiteRTRunner(model_bytes, output_names=names).run(validation_x)
    return compare_outputs(reference_outputs, got, tolerance, outputs=outputs)


def _row(rnd: int, what: str, nodes: list[str], model_bytes: bytes, cmp, validation_x) -> dict:
    o = min(cmp.outputs, key=lambda oc: oc.sqnr_db)
    return {"round": rnd, "action": what, "kept_float": sorted({_layer_of(n) for n in nodes}),
            "nodes": list(nodes),
            "sqnr_db": round(o.sqnr_db, 2) if math.isfinite(o.sqnr_db) else _json_float(o.sqnr_db),
            "top1": o.top1_agreement, "passed": cmp.passed, "reasons": cmp.reasons, "bytes": len(model_bytes),
            "latency_ms": round(latency_ms(model_bytes, validation_x), 3)}


def _ranking(q: _Quantizer, stats: list[tuple[str, float]], layer_report=None) -> list[str]:
    """Nodes worst first: the layers of a LayerReport of the plain int8 (its ``worst`` order: output cost) when
    given, then the debugger's own per-node rmse/scale, then every other node in graph order."""
    ranked: list[str] = []
    if layer_report is not None:
        for s in layer_report.worst(len(layer_report.layers)):
            ranked += [n for n in q.nodes if (n == s.tensor or _layer_of(n) == s.layer) and n not in ranked]
    ranked += [n for n, _ in stats if n not in ranked]
    return ranked + [n for n in q.nodes if n not in ranked]


def auto_fallback(saved_model_dir, calibration_x: np.ndarray, validation_x: np.ndarray, reference_outputs,
                  tolerance: Tolerance, *, keep_float=(), io_type: str = "int", max_rounds: int = 8,
                  layer_report=None, try_int16x8: bool = True, outputs=None) -> FallbackResult:
    """Re-convert int8 with more and more of its worst layers in float until ``tolerance`` is met on
    ``validation_x`` (against ``reference_outputs``, the Keras outputs), or nothing is left to try.

    Round 0 is the int8 with only the user's ``keep_float`` layers in float. Round 1 keeps float every node whose
    rmse/scale exceeds 0.7 (TF's "suspect" rule), or the single worst one; each later round doubles the count.
    The last round keeps everything float. If that is still not reached within ``max_rounds`` (or never passes)
    and ``try_int16x8``, the whole model is converted as int16x8. ``history`` has one row per round with the SQNR,
    top-1 agreement, size and median latency (LiteRT, XNNPACK, 1 thread) so the report can state the cost.
    ``outputs`` (:class:`edgeconv.verify.kinds.OutputInfo` per reference output) makes the target per output: each
    is matched by name and held to its own kind's tolerance (a regression head to SQNR / cosine / range error).
    """
    if max_rounds < 1:
        raise UsageError(f"max_rounds must be >= 1, got {max_rounds}")
    validation_x = np.asarray(validation_x, np.float32)
    q = _Quantizer(saved_model_dir, calibration_x, io_type, debug_x=validation_x)
    base = q.resolve(list(keep_float))
    model = q.quantize(base)
    cmp = _evaluate(model, validation_x, reference_outputs, tolerance, outputs)
    history = [_row(0, "int8" + (" with --keep-float" if base else ""), base, model, cmp, validation_x)]
    best = (model, base, cmp)
    if cmp.passed:
        return _result(best, history, "int8")
    stats = q.stats()
    ranked = [n for n in _ranking(q, stats, layer_report) if n not in base]
    suspects = sum(1 for n, v in stats if v > SUSPECT_RMSE_SCALE and n in ranked)
    if layer_report is not None:
        suspects = max(suspects, sum(s.suspect for s in layer_report.layers))
    count = max(1, suspects)
    for rnd in range(1, max_rounds + 1):
        if rnd == max_rounds:
            count = len(ranked)  # last round: every node float
        chosen = ranked[:count]
        nodes = base + [n for n in q.with_neighbours(chosen) if n not in base]
        model = q.quantize(nodes)
        cmp = _evaluate(model, validation_x, reference_outputs, tolerance, outputs)
        history.append(_row(rnd, f"keep the {len(chosen)} worst node(s) and their neighbours float", nodes, model,
                            cmp, validation_x))
        if cmp.passed:
            return _result((model, nodes, cmp), history, "int8")
        if _worst_sqnr(cmp) > _worst_sqnr(best[2]):
            best = (model, nodes, cmp)
        if count >= len(ranked):
            break
        count *= 2
    if try_int16x8:
        from edgeconv.tflite.convert import convert_tflite

        model = convert_tflite(saved_model_dir, "int16x8", calibration_x, io_type)
        cmp = _evaluate(model, validation_x, reference_outputs, tolerance, outputs)
        history.append(_row(len(history), "int16x8 (whole model)", [], model, cmp, validation_x))
        if cmp.passed:
            return _result((model, [], cmp), history, "int16x8")
    return _result(best, history, "int8", passed=False)


def _worst_sqnr(cmp) -> float:
    return min(o.sqnr_db for o in cmp.outputs)


def _result(best, history, precision: str, passed: bool | None = None) -> FallbackResult:
    model, nodes, cmp = best
    return FallbackResult(model_bytes=model, kept_float=sorted({_layer_of(n) for n in nodes}),
                          passed=cmp.passed if passed is None else passed, history=history, precision=precision,
                          nodes=list(nodes))

