"""Benchmark an export folder: one row per artifact with its validation status, true size on disk, agreement with
the Keras reference, latency (median / p90 over repeated single-image runs after warm-up) and speed-up vs Keras.

Runtimes are the ones validation uses: LiteRT with its default XNNPACK delegate for ``.tflite``, onnxruntime's CPU
provider for ``.onnx``. The Keras reference is timed as a ``tf.function`` (the model called inside a
``tf.function`` in inference mode), which is how it would be served in Python; eager calls are ~20x slower and
would flatter every artifact. Quality figures come from ``report.json`` when the folder has one (written by
``edgeconv export`` / ``edgeconv validate``), otherwise from a fresh :func:`edgeconv.verify.validate.validate` run.
"""
from __future__ import annotations

import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from edgeconv.errors import EdgeconvError, UsageError, first_line
from edgeconv.runtime.timing import median_p90, time_call
from edgeconv.pipeline.manifest import Manifest

__all__ = ["BenchRow", "BenchReport", "bench", "time_call", "table_columns", "table_rows"]

REPORT = "report.json"


@dataclass
class BenchRow:
    file: str
    format: str  # "tflite" | "onnx" | "keras"
    precision: str
    runtime: str  # "LiteRT+XNNPACK" | "onnxruntime" | "tf.function"
    bytes: int
    status: str  # PASS / FAIL / NOT JUDGED / "not validated" (from validation), "reference" for Keras
    sqnr_db: float | None = None
    top1_agreement: float | None = None
    accuracy: float | None = None
    median_ms: float | None = None
    p90_ms: float | None = None
    speedup: float | None = None  # Keras median / this median
    error: str | None = None
    # multi-output models: every output's figures (name, kind, sqnr_db, top1_agreement, accuracy); the SQNR column
    # is the worst output's (named in sqnr_output), top-1 / accuracy the class-score output's
    outputs: list = field(default_factory=list)
    sqnr_output: str | None = None

    @property
    def mb(self) -> float:
        return self.bytes / 1e6

    def to_dict(self) -> dict:
        d = asdict(self)
        d["mb"] = round(self.mb, 4)
        for k in ("median_ms", "p90_ms", "speedup"):
            if d[k] is not None:
                d[k] = round(d[k], 4)
        for o in [d] + d["outputs"]:
            if o["sqnr_db"] is not None and not np.isfinite(o["sqnr_db"]):
                o["sqnr_db"] = "inf" if o["sqnr_db"] > 0 else str(o["sqnr_db"])
        return d


@dataclass
class BenchReport:
    folder: Path
    model: str
    input_shape: list
    threads: int
    runs: int
    warmup: int
    rows: list[BenchRow]
    quality_source: str  # where the quality columns came from
    notes: list[str] = field(default_factory=list)

    @property
    def reference(self) -> BenchRow | None:
        return next((r for r in self.rows if r.format == "keras"), None)

    def row(self, file: str) -> BenchRow:
        for r in self.rows:
            if r.file == file:
                return r
        raise KeyError(file)

    def to_dict(self) -> dict:
        return {"folder": str(self.folder), "model": self.model, "input_shape": self.input_shape,
                "threads": self.threads, "runs": self.runs, "warmup": self.warmup,
                "latency": "median and p90 of single-image (batch 1) runs after warm-up; LiteRT with its default "
                           "XNNPACK delegate, onnxruntime CPU provider, Keras reference called inside a tf.function",
                "quality_source": self.quality_source, "notes": self.notes,
                "rows": [r.to_dict() for r in self.rows]}


def _quality(folder: Path, revalidate: bool, samples: int, seed: int) -> tuple[dict, str]:
    """file -> (verdict, sqnr, top1, accuracy) from report.json or a fresh validation (not written)."""
    from edgeconv.verify.validate import ValidationReport

    path = folder / REPORT
    if path.exists() and not revalidate:
        try:
            rep = ValidationReport.load(path)
            return _quality_rows(rep), f"{REPORT} ({rep.samples} held-out inputs: {rep.inputs})"
        except EdgeconvError:
            pass  # an unreadable report is re-derived below
    from edgeconv.verify.validate import validate

    rep = validate(folder, samples=samples, seed=seed, write=False, layers_on_failure=False)
    return _quality_rows(rep), f"validation run by bench ({rep.samples} held-out inputs: {rep.inputs})"


def _quality_rows(rep) -> dict:
    """file -> (verdict, worst output's SQNR, class-score output's top-1 and accuracy, every output, worst's name)."""
    out = {}
    for a in rep.artifacts:
        outs = a.comparison.outputs if a.comparison is not None else []
        worst = min(outs, key=lambda o: float(o.sqnr_db) if np.isfinite(o.sqnr_db) else np.inf, default=None)
        scores = next((o for o in outs if o.top1_agreement is not None), None)
        per = [{"name": o.name, "kind": o.kind, "sqnr_db": float(o.sqnr_db), "top1_agreement": o.top1_agreement,
                "accuracy": o.accuracy} for o in outs] if len(outs) > 1 else []
        out[a.file] = (a.verdict, None if worst is None else float(worst.sqnr_db),
                       None if scores is None else scores.top1_agreement, None if scores is None else scores.accuracy,
                       per, worst.name if per else None)
    return out


def _bench_input(manifest: Manifest, seed: int) -> np.ndarray:
    """One batch-1 float input in the model's input range (latency does not depend on the values)."""
    shape = [1, *[int(s) for s in manifest.model["input_shape"]]]
    lo, hi = (manifest.preprocessing or {}).get("input_range") or (0.0, 1.0)
    return np.random.default_rng(seed).uniform(lo, hi, size=shape).astype(np.float32)


def _tflite_callable(path: Path, x: np.ndarray, threads: int):
    from edgeconv.runtime.runners import LiteRTRunner

    r = LiteRTRunner(path, num_threads=threads, xnnpack=True)
    r.set_input(x)  # quantize/set once; time invoke() only, as LiteRT's benchmark_model does
    return r.interpreter.invoke


def _onnx_callable(path: Path, x: np.ndarray, threads: int, layout: str):
    from edgeconv.runtime.runners import OnnxRunner

    r = OnnxRunner(path, num_threads=threads, layout=layout)
    xi = np.ascontiguousarray(x.transpose(0, 3, 1, 2)) if layout == "nchw" else x
    name = r.session.get_inputs()[0].name
    return lambda: r.session.run(None, {name: xi})


def _keras_callable(path: Path, x: np.ndarray, threads: int):
    import tensorflow as tf

    from edgeconv.pipeline.load import load_keras_file

    note = None
    if tf.config.threading.get_intra_op_parallelism_threads() != threads:
        try:  # only possible before TensorFlow starts its thread pools; noted otherwise
            tf.config.threading.set_intra_op_parallelism_threads(threads)
            tf.config.threading.set_inter_op_parallelism_threads(1)
        except RuntimeError:
            note = (f"TensorFlow was already running in this process: the Keras reference used its own thread "
                    f"count, not --threads {threads}")
    model = load_keras_file(path)
    fn = tf.function(lambda t: model(t, training=False))
    xt = tf.constant(x)

    def call():
        y = fn(xt)
        (y[0] if isinstance(y, (list, tuple)) else y).numpy()
    return call, note


def bench(folder, *, threads: int = 1, runs: int = 50, warmup: int = 5, keras: bool = True,
          revalidate: bool = False, samples: int = 200, seed: int = 0, artifacts=None) -> BenchReport:
    """Benchmark every artifact of the export folder ``folder`` (or those named in ``artifacts``).

    ``threads``: LiteRT / onnxruntime intra-op threads (and TensorFlow's, when it has not started yet).
    ``runs`` timed single-image calls after ``warmup`` untimed ones; median and p90 are reported.
    ``keras``: also time the Keras reference (tf.function) and fill the speed-up column.
    ``revalidate``: ignore ``report.json`` and validate again (``samples`` held-out inputs, nothing written).
    """
    if threads < 1:
        raise UsageError(f"--threads must be >= 1, got {threads}")
    if runs < 1:
        raise UsageError(f"--runs must be >= 1, got {runs}")
    if warmup < 0:
        raise UsageError(f"--warmup must be >= 0, got {warmup}")
    folder = Path(folder)
    if not folder.is_dir():
        raise EdgeconvError(f"{folder} is not a folder (edgeconv bench takes an export folder)")
    manifest = Manifest.load(folder)
    records = manifest.artifacts
    if artifacts is not None:
        records = [manifest.artifact(Path(a).name) for a in artifacts]
    for rec in records:
        if not (folder / rec.file).exists():
            raise EdgeconvError(f"{folder / rec.file} is listed in the manifest but missing")
    x = _bench_input(manifest, seed)
    notes: list[str] = []
    quality, quality_source = _quality(folder, revalidate, samples, seed)
    rows: list[BenchRow] = []
    ref_row = None
    if keras:
        ref = manifest.reference.get("file")
        if not ref or not (folder / ref).exists():
            notes.append("Keras reference missing: no speed-up column")
        else:
            ref_row = BenchRow(ref, "keras", "fp32", "tf.function", (folder / ref).stat().st_size, "reference")
            try:
                call, note = _keras_callable(folder / ref, x, threads)
                if note:
                    notes.append(note)
                med, p90 = median_p90(time_call(call, runs, warmup))
                ref_row.median_ms, ref_row.p90_ms, ref_row.speedup = med, p90, 1.0
            except Exception as e:  # noqa: BLE001 - a reference that cannot be timed leaves the rest useful
                ref_row.error = f"{type(e).__name__}: {first_line(e)}"
            rows.append(ref_row)
    for rec in records:
        path = folder / rec.file
        verdict, sqnr, top1, acc, per, worst = quality.get(rec.file, ("not validated", None, None, None, [], None))
        row = BenchRow(rec.file, rec.format, rec.precision,
                       "LiteRT+XNNPACK" if rec.format == "tflite" else "onnxruntime",
                       path.stat().st_size, verdict, sqnr, top1, acc, outputs=per, sqnr_output=worst)
        try:
            fn = (_tflite_callable(path, x, threads) if rec.format == "tflite"
                  else _onnx_callable(path, x, threads, rec.layout))
            row.median_ms, row.p90_ms = median_p90(time_call(fn, runs, warmup))
            if ref_row is not None and ref_row.median_ms:
                row.speedup = ref_row.median_ms / row.median_ms
        except EdgeconvError as e:
            row.error = str(e)
        rows.append(row)
    return BenchReport(folder, manifest.model.get("name", folder.name), list(manifest.model["input_shape"]),
                       threads, runs, warmup, rows, quality_source, notes)


def table_columns() -> list[str]:
    return ["file", "format", "precision", "runtime", "status", "MB", "SQNR dB", "top-1 agr", "accuracy",
            "median ms", "p90 ms", "speed-up"]


def _f(v, fmt: str) -> str:
    if v is None:
        return "-"
    if isinstance(v, float) and not np.isfinite(v):
        return "inf" if v > 0 else "nan"
    return format(v, fmt)


def table_rows(report: BenchReport) -> list[list[str]]:
    rows = []
    for r in report.rows:
        rows.append([r.file, r.format, r.precision, r.runtime, r.status if not r.error else f"{r.status} (error)",
                     f"{r.mb:.3f}", _f(r.sqnr_db, ".1f") + (f" ({r.sqnr_output})" if r.sqnr_output else ""), "-" if r.top1_agreement is None else f"{r.top1_agreement:.2%}",
                     "-" if r.accuracy is None else f"{r.accuracy:.2%}", _f(r.median_ms, ".2f"), _f(r.p90_ms, ".2f"),
                     "-" if r.speedup is None else f"{r.speedup:.1f}x"])
    return rows
