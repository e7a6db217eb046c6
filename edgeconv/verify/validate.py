"""Validate an export folder (or one artifact in it) against its Keras reference on held-out inputs.

The reference is the ``<name>.keras`` the export saved (reloaded with the custom objects the export recorded, or the
ones given; a Lambda layer needs ``unsafe_deserialization`` again: never taken from the manifest); the inputs are
never the calibration samples (their ids are in the manifest and excluded). Every artifact runs on its own runtime
(LiteRT, onnxruntime), is compared output by output with :func:`edgeconv.verify.compare.compare_outputs` under its
precision's tolerance, and fails when its file no longer matches the sha256 the manifest recorded. Quantized / fp16
TFLite artifacts that fail get a layer-wise report (:mod:`edgeconv.verify.layerwise`) saying where the error comes
from.
"""
from __future__ import annotations

import os
import re
import time
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np

from edgeconv.verify.compare import STRUCTURAL_CHECKS, Comparison, Tolerance, compare_outputs, tolerance_for
from edgeconv.errors import EdgeconvError, UsageError, first_line
from edgeconv.fileio import sha256_file
from edgeconv.options import ValidationOptions, with_overrides
from edgeconv.pipeline.manifest import MANIFEST, ArtifactRecord, Manifest

__all__ = ["ArtifactResult", "ValidationReport", "validate", "load_labels", "REPORT_SCHEMA", "KerasReference",
           "reference_for"]

REPORT_SCHEMA = "edgeconv.report/1"

LAYERWISE_ON_FAILURE = ("fp16", "int8", "int16x8")  # TFLite precisions that get a layer report when they fail
LAYERWISE_SAMPLES = 16
RANDOM_WEIGHTS_NOTE = ("random weights: thresholds for reduced precision describe trained models (a random "
                       "network's near-uniform softmax, near-tied classes and, in deep nets, amplified rounding "
                       "cannot be judged by them); figures are shown, the verdict only checks that it runs with "
                       "finite outputs of the right shape; fp32 is judged as usual. Export with trained weights (ImageNet: "
                       "--weights imagenet; or --weights FILE) to judge it")


@dataclass
class ArtifactResult:
    file: str
    key: str
    format: str
    precision: str
    tolerance: Tolerance
    comparison: Comparison | None = None
    sha256_ok: bool = True
    error: str | None = None  # the artifact could not be run
    seconds: float = 0.0
    layers: object | None = None  # edgeconv.verify.layerwise.LayerReport
    kept_float: list[str] = field(default_factory=list)  # int8 layers left in float (--keep-float / fallback)
    fallback: dict | None = None  # the manifest's record of an automatic fallback (edgeconv.verify.fallback)
    unjudged: str | None = None  # why the quality thresholds were not applied (random weights), else None

    @property
    def passed(self) -> bool:
        return self.comparison is not None and not self.reasons

    @property
    def judged_checks(self) -> tuple | None:
        """The checks the verdict rests on: all (None), or only what holds for any weights when unjudged."""
        return STRUCTURAL_CHECKS if self.unjudged else None

    @property
    def verdict(self) -> str:
        if not self.passed:
            return "FAIL"
        return "NOT JUDGED" if self.unjudged else "PASS"

    @property
    def reasons(self) -> list[str]:
        out = []
        if not self.sha256_ok:
            out.append("sha256 differs from the manifest: the file changed since export")
        if self.error:
            out.append(self.error)
        if self.comparison is not None:
            out += self.comparison.reasons_for(self.judged_checks)
        return out

    def to_dict(self) -> dict:
        return {"file": self.file, "key": self.key, "format": self.format, "precision": self.precision,
                "passed": self.passed, "verdict": self.verdict,
                "unjudged": self.unjudged, "reasons": self.reasons, "sha256_ok": self.sha256_ok, "error": self.error,
                "tolerance": self.tolerance.to_dict(), "tolerance_text": self.tolerance.describe(),
                "seconds": round(self.seconds, 3), "kept_float": self.kept_float, "fallback": self.fallback,
                "comparison": None if self.comparison is None else self.comparison.to_dict(),
                "layers": None if self.layers is None else self.layers.to_dict()}

    @classmethod
    def from_dict(cls, d: dict) -> "ArtifactResult":
        """From report.json; the layer-wise report stays the plain dict it was written as."""
        return cls(file=d["file"], key=d["key"], format=d["format"], precision=d["precision"],
                   tolerance=Tolerance.from_dict(d.get("tolerance") or {}),
                   comparison=None if d.get("comparison") is None else Comparison.from_dict(d["comparison"]),
                   sha256_ok=bool(d.get("sha256_ok", True)), error=d.get("error"),
                   seconds=float(d.get("seconds", 0.0)), layers=d.get("layers"),
                   kept_float=list(d.get("kept_float") or []), fallback=d.get("fallback"), unjudged=d.get("unjudged"))


@dataclass
class ValidationReport:
    folder: Path
    model: str
    reference: str
    inputs: str  # InputSet.describe()
    samples: int
    artifacts: list[ArtifactResult]
    labels: str | None = None  # where labels came from, when accuracy was computed
    overrides: dict = field(default_factory=dict)
    warnings: list[str] = field(default_factory=list)
    report_files: list[str] = field(default_factory=list)
    data_note: str = ""  # which data judged, in words: held-out split / --data / generic photos
    input_ids: list[str] = field(default_factory=list)  # the held-out samples, by id (never a calibration id)

    @property
    def passed(self) -> bool:
        return bool(self.artifacts) and all(a.passed for a in self.artifacts)

    @property
    def failed(self) -> list[ArtifactResult]:
        return [a for a in self.artifacts if not a.passed]

    def artifact(self, file: str) -> ArtifactResult:
        for a in self.artifacts:
            if a.file == file:
                return a
        raise KeyError(file)

    def summary_line(self) -> str:
        n, bad = len(self.artifacts), self.failed
        unjudged = [a for a in self.artifacts if a.passed and a.unjudged]
        if not bad and unjudged:
            return (f"{n - len(unjudged)} of {n} artifacts match the Keras reference on {self.samples} held-out "
                    f"inputs; {len(unjudged)} not judged (random weights): "
                    f"{', '.join(a.file for a in unjudged)}")
        if not bad:
            return f"{n} of {n} artifacts match the Keras reference on {self.samples} held-out inputs"
        why = "; ".join(f"{a.file}: {', '.join(a.reasons[:2])}" for a in bad)
        return f"{len(bad)} of {n} artifacts failed: {why}"

    @property
    def tolerances(self) -> dict:
        return {a.file: a.tolerance.to_dict() for a in self.artifacts}

    def to_dict(self) -> dict:
        return {"schema": REPORT_SCHEMA, "passed": self.passed, "summary": self.summary_line(), "model": self.model,
                "reference": self.reference, "inputs": self.inputs, "samples": self.samples, "labels": self.labels,
                "overrides": self.overrides, "tolerances": self.tolerances, "warnings": self.warnings,
                "data_note": self.data_note, "input_ids": self.input_ids,
                "artifacts": [a.to_dict() for a in self.artifacts]}

    @classmethod
    def from_dict(cls, d: dict, folder: Path | None = None) -> "ValidationReport":
        """From report.json (any edgeconv.report/1 file; files written before the schema key existed too)."""
        if not isinstance(d, dict):
            raise EdgeconvError(f"not a valid edgeconv report: expected a JSON object, got {type(d).__name__}")
        schema = d.get("schema", REPORT_SCHEMA)
        if schema != REPORT_SCHEMA:
            raise EdgeconvError(f"unknown report schema {schema!r} (this edgeconv reads {REPORT_SCHEMA})")
        return cls(Path(folder or "."), d["model"], d.get("reference", ""), d.get("inputs", ""),
                   int(d.get("samples", 0)), [ArtifactResult.from_dict(a) for a in d["artifacts"]], d.get("labels"),
                   dict(d.get("overrides") or {}), list(d.get("warnings") or []), data_note=d.get("data_note", ""),
                   input_ids=list(d.get("input_ids") or []))

    @classmethod
    def load(cls, path: Path) -> "ValidationReport":
        import json

        try:
            return cls.from_dict(json.loads(Path(path).read_text()), Path(path).parent)
        except (json.JSONDecodeError, KeyError, TypeError, ValueError, EdgeconvError) as e:
            raise EdgeconvError(f"{path} is not a valid edgeconv report: {first_line(e)}") from None


def load_labels(path, ids: list[str]) -> np.ndarray:
    """Labels for the chosen samples ``ids`` from a .npy (one per sample of the data source, in its order) or a
    .txt (one label per line in the same order, or "<sample id> <label>" lines, e.g. "cats/001.jpg 3")."""
    p = Path(path)
    if not p.exists():
        raise EdgeconvError(f"labels file not found: {p}")
    if p.suffix.lower() == ".npy":
        try:
            table = np.load(p, allow_pickle=False).reshape(-1)
        except (ValueError, OSError) as e:
            raise EdgeconvError(f"{p} is not a readable .npy of labels: {e}") from None
        by_id = None
    elif p.suffix.lower() == ".txt":
        lines = [ln.strip() for ln in p.read_text().splitlines() if ln.strip()]
        pairs = [re.split(r"[\s,]+", ln) for ln in lines]
        if all(len(t) >= 2 for t in pairs):
            by_id = {" ".join(t[:-1]): t[-1] for t in pairs}
            table = None
        else:
            table, by_id = np.array(lines), None
    else:
        raise UsageError(f"--labels {p}: expected a .npy or .txt file")
    out = []
    for sid in ids:
        if by_id is not None:
            if sid not in by_id:
                raise EdgeconvError(f"{p} has no label for sample {sid}")
            out.append(by_id[sid])
            continue
        m = re.search(r"\[(\d+)\]$", sid)
        if m is None:
            raise EdgeconvError(f"{p}: cannot tell which label belongs to sample {sid}; use '<sample id> <label>' "
                                f"lines in a .txt")
        i = int(m.group(1))
        if i >= len(table):
            raise EdgeconvError(f"{p} has {len(table)} labels but the data has a sample {sid}")
        out.append(table[i])
    try:
        return np.asarray(out).astype(np.int64)
    except ValueError:
        raise EdgeconvError(f"{p}: labels must be integer class indices") from None


def _resolve(path) -> tuple[Path, list[str] | None]:
    p = Path(path)
    if not p.exists():
        raise EdgeconvError(f"{p} does not exist")
    if p.is_dir():
        return p, None
    if p.name == MANIFEST:
        return p.parent, None
    if not (p.parent / MANIFEST).exists():
        raise EdgeconvError(f"{p} is not inside an edgeconv export folder (no {MANIFEST} next to it)")
    return p.parent, [p.name]


def _load_reference(folder: Path, manifest: Manifest, opts: ValidationOptions) -> tuple[object, list[str]]:
    """The Keras reference -> (model, warnings). Custom objects: ``opts.custom_objects`` when given, else the files
    the export recorded, re-imported when they are still there with the same sha256."""
    ref = manifest.reference.get("file")
    if not ref or not (folder / ref).exists():
        raise EdgeconvError(f"{folder}: the Keras reference {ref or '(none recorded)'} is missing")
    from edgeconv.pipeline.custom_objects import import_custom_objects, reuse_recorded
    from edgeconv.pipeline.load import load_keras_model

    warnings: list[str] = []
    if opts.custom_objects:
        custom, hint = import_custom_objects(opts.custom_objects), None
        recorded = {d.get("name"): d.get("sha256") for d in manifest.custom_objects}
        for src in custom.sources:
            if src.name in recorded and recorded[src.name] not in (None, src.sha256):
                warnings.append(f"--custom-objects {src.name} differs from the file the export imported "
                                f"(sha256 {str(src.sha256)[:12]} vs {str(recorded[src.name])[:12]})")
    else:
        custom, hint = reuse_recorded(manifest.custom_objects)
    model, notes = load_keras_model(folder / ref, custom_objects=custom,
                                    unsafe_deserialization=opts.unsafe_deserialization, hint=hint)
    return model, warnings + notes


@dataclass
class KerasReference:
    """The Keras reference of one validation, computed once: the model, the held-out inputs, its outputs on them
    and (lazily) its float32-rounding noise. An export makes one and hands it to validation, the layer-wise reports,
    ``--fallback auto`` and the re-validation after a fallback, so none of them reloads the model, re-reads the
    inputs or re-runs Keras on them (:func:`reference_for`)."""

    model: object
    inputs: object  # edgeconv.pipeline.inputs.InputSet
    data_note: str
    warnings: list[str]
    outputs: list[np.ndarray]
    key: tuple  # the options it was made for: (data, samples, seed)
    _noise: float | None = None

    @property
    def x(self) -> np.ndarray:
        return self.inputs.x

    def noise(self) -> float:
        if self._noise is None:
            self._noise = reference_noise(self.model, self.inputs.x, self.outputs)
        return self._noise


def _reference_key(opts: ValidationOptions) -> tuple:
    return (None if opts.data is None else str(opts.data), opts.samples, opts.seed)


def reference_for(folder, opts: ValidationOptions, *, model=None, manifest: Manifest | None = None
                  ) -> KerasReference:
    """The Keras reference of the export folder ``folder`` on the held-out inputs ``opts`` selects. ``model`` is the
    in-memory Keras model the export saved as its reference (the same weights, byte-for-byte); None reloads the
    folder's ``.keras``. Keras runs as one compiled function (:func:`edgeconv.runtime.runners.compiled_forward`)."""
    from edgeconv.runtime.runners import KerasRunner

    folder = Path(folder)
    manifest = manifest or Manifest.load(folder)
    warnings: list[str] = []
    if model is None:
        model, warnings = _load_reference(folder, manifest, opts)
    inputs, data_note, data_warnings = validation_inputs(manifest, opts)
    outputs = KerasRunner(model, compiled=True).run(inputs.x)
    return KerasReference(model, inputs, data_note, warnings + data_warnings, outputs, _reference_key(opts))


def validate(path, options: ValidationOptions | None = None, *, artifacts=None, reference: KerasReference | None = None,
             **overrides) -> ValidationReport:
    """Validate every artifact of the export folder ``path`` (or just the artifact file ``path``; or the files named
    in ``artifacts``) against the Keras reference on held-out inputs.

    ``options`` is a :class:`~edgeconv.options.ValidationOptions`; keyword arguments override its fields
    (``validate(folder, samples=50, layers=True)``). The inputs are ``options.data`` or, when None, the embedded photo
    set's validation split; never the calibration samples recorded in the manifest. ``reference`` is a
    :class:`KerasReference` already computed for these options (:func:`reference_for`); None computes it.
    """
    from edgeconv.runtime.shard import run_sharded

    opts = with_overrides(options or ValidationOptions(), overrides).check()
    folder, only = _resolve(path)
    manifest = Manifest.load(folder)
    if artifacts is not None:
        only = [Path(a).name for a in artifacts]
    records: list[ArtifactRecord] = (manifest.artifacts if only is None
                                     else [manifest.artifact(f) for f in only])
    for rec in records:
        if not (folder / rec.file).exists():
            raise EdgeconvError(f"{folder / rec.file} is listed in the manifest but missing")
    if opts.ray:
        from edgeconv.runtime.cluster import connect

        connect(opts.ray, num_cpus=opts.jobs)
    if reference is None or reference.key != _reference_key(opts):
        reference = reference_for(folder, opts, manifest=manifest)
    model, inputs, data_note = reference.model, reference.inputs, reference.data_note
    warnings = list(reference.warnings)
    random_weights = manifest.weights.is_random
    y, label_source = None, None
    if opts.labels is not None:
        y, label_source = load_labels(opts.labels, inputs.ids), str(opts.labels)
    elif inputs.labels is not None:
        y, label_source = np.asarray(inputs.labels), f"{inputs.source} (labels in the file)"
    outputs = reference_outputs(manifest, model)
    overrides = opts.overrides
    noise = reference.noise() if opts.atol is None else 0.0
    reference = reference.outputs
    results = []
    for rec in records:
        tol = tolerance_for(rec.precision, rec.format, **overrides)
        if tol.atol is not None and NOISE_FACTOR * noise > tol.atol:
            warnings.append(f"{rec.file}: atol raised from {tol.atol:g} to {NOISE_FACTOR * noise:.2g}: the Keras "
                            f"reference itself moves by {noise:.2g} under float32 rounding (a one-ulp nudge of the "
                            f"input, or batched vs one-image runs, amplified by the network), so no artifact can be "
                            f"held to less")
            tol = replace(tol, atol=float(f"{NOISE_FACTOR * noise:.2g}"))
        res = ArtifactResult(rec.file, rec.key, rec.format, rec.precision, tol)
        res.fallback = rec.fallback
        res.kept_float = list(rec.kept_float)
        if random_weights and rec.precision != "fp32":
            res.unjudged = RANDOM_WEIGHTS_NOTE
        file = folder / rec.file
        res.sha256_ok = sha256_file(file) == rec.sha256
        t0 = time.perf_counter()
        try:
            got = run_sharded(file, inputs.x, jobs=opts.jobs, ray=bool(opts.ray), num_threads=opts.num_threads,
                              layout=rec.layout, output_names=[o.name for o in outputs])  # runners.match_outputs
            res.comparison = compare_outputs(reference, got, tol, labels=y, outputs=outputs)
        except EdgeconvError as e:
            res.error = str(e)
        res.seconds = time.perf_counter() - t0
        want_layers = rec.format == "tflite" and res.error is None and (
            opts.layers or (opts.layers_on_failure and not res.passed and rec.precision in LAYERWISE_ON_FAILURE))
        if want_layers:
            fp32 = next((folder / r.file for r in manifest.artifacts
                         if r.format == "tflite" and r.precision == "fp32" and (folder / r.file).exists()), None)
            res.layers = _layer_report(model, file, inputs.x, folder if opts.write else None, fp32)
            if getattr(res.layers, "self_test_failed", False):
                res.error = res.layers.error  # fp32 --layers is a self-test of the matcher: it fails loudly
        elif opts.write:  # a plot from an earlier failing run would contradict this report
            (folder / f"{file.stem}.layers.png").unlink(missing_ok=True)
            (folder / f"{file.stem}.layers.node_data.json").unlink(missing_ok=True)
        results.append(res)
    report = ValidationReport(folder, manifest.model.get("name", folder.name), manifest.reference.get("file", ""),
                              inputs.describe(), len(inputs.x), results, label_source, overrides, warnings,
                              data_note=data_note, input_ids=list(inputs.ids))
    if opts.write:
        from edgeconv.verify.report import write_reports

        stem = "report" if only is None else f"report.{Path(only[0]).stem}" if len(only) == 1 else "report.partial"
        report.report_files = [p.name for p in write_reports(report, folder, stem=stem)]
    return report


def reference_outputs(manifest: Manifest, model) -> list:
    """The reference's outputs with their kinds (:class:`edgeconv.verify.kinds.OutputInfo`), Keras order: as the
    export recorded them, or for older manifests inferred from the model (with the recorded class labels' count)."""
    from edgeconv.verify.kinds import infer_outputs

    recorded = manifest.outputs
    if recorded is not None:
        return recorded
    labels = (manifest.options or {}).get("class_labels")
    classes = manifest.model.get("classes") if labels else None
    return infer_outputs(model, labels=int(classes) if isinstance(classes, int) else None)


GENERIC_PHOTOS_NOTE = ("the embedded generic photo set (no --calibration or --data was given): photos "
                       "unlike the model's own data can fail a model that is fine; pass --data with held-out samples "
                       "like the model's")


def validation_inputs(manifest: Manifest, opts: ValidationOptions):
    """-> (InputSet, note, warnings): the held-out inputs that judge an export's artifacts.

    ``opts.data`` when given; otherwise what the export recorded (:class:`edgeconv.pipeline.inputs.DataPlan`): the
    user's ``--data``, or the held-out part of the user's calibration data; the embedded photos only when the user
    gave no data at all. Calibration samples (their ids are in the manifest) are always excluded."""
    from edgeconv.pipeline.inputs import model_inputs

    plan = manifest.validation or {}
    warnings: list[str] = []
    data, num = opts.data, opts.samples
    kind = "data" if data is not None else plan.get("kind", "embedded")
    if data is None and kind in ("data", "held_out"):
        recorded = plan.get("path")
        if recorded and Path(recorded).exists():
            data = recorded
            if kind == "held_out":
                num = min(num, int(plan.get("count") or num))
        else:
            warnings.append(f"the data the export validated on ({recorded}) is not here any more: validating on "
                            f"the embedded generic photos instead; pass --data")
            kind = "embedded"
    calib = manifest.calibration or {}
    # sample ids are file names inside their source: they name the calibration samples only in that same source
    calib_ids = list(calib.get("ids") or []) if _same_source(data, calib.get("path")) else []
    inputs = model_inputs(data, input_shape=manifest.input_shape, preprocessing=manifest.preprocessing, num=num,
                          split="validation", seed=opts.seed, exclude_ids=calib_ids)
    warnings += inputs.warnings
    if len(inputs.x) < num:
        warnings.append(f"only {len(inputs.x)} held-out samples available (asked for {num})")
    if kind == "held_out":
        n_cal = len(calib_ids)
        note = (f"held-out split of the calibration data {data}: {len(inputs.x)} samples never used for "
                f"calibration ({n_cal} other samples of it calibrated)")
    elif kind == "data":
        note = f"held-out data {data} ({len(inputs.x)} samples, calibration samples excluded)"
    else:
        note = GENERIC_PHOTOS_NOTE
    return inputs, note, warnings


def _same_source(data, calibration_path) -> bool:
    """Whether the validation inputs come from the source the export calibrated on (both the embedded photo set, or
    the same file or folder however it is spelled). When the recorded calibration path cannot be found from here (a
    relative path recorded in another folder), the same file name counts as the same source: excluding too much
    only costs samples, including calibration samples would flatter the verdict."""
    if data is None or calibration_path is None:
        return data is None and calibration_path is None
    a, b = Path(data), Path(calibration_path)
    if a.exists() and b.exists():
        return os.path.samefile(a, b)
    return a.resolve().name == b.resolve().name


NOISE_SAMPLES = 16
NOISE_FACTOR = 10


def reference_noise(model, x: np.ndarray, reference: list[np.ndarray], *, compiled: bool = True) -> float:
    """How far float32 rounding alone moves the Keras reference: the larger of
    - max |Keras(x * (1 + 1 ulp random signs)) - Keras(x)| over every input: a one-ulp nudge of the input, as the
      network amplifies it (a runtime's different summation order nudges every layer like this), and
    - max |one image at a time - batched| over the first :data:`NOISE_SAMPLES` inputs (oneDNN picks other kernels).
    ~1e-7 for a trained model, up to ~1e-4 for a deep net with random weights. Float artifacts are held to
    ``max(atol, NOISE_FACTOR * noise)``.

    Its cost is one batched pass over the nudged inputs plus :data:`NOISE_SAMPLES` one-image calls, all through the
    model's one compiled function (``compiled=False``: Keras' eager call, ~10-20x slower, same figures to float32
    rounding; ``reference`` must come from the same kind of run)."""
    from edgeconv.runtime.runners import KerasRunner

    if len(x) == 0:
        return 0.0
    rng = np.random.default_rng(0)
    nudged = (x * (1 + rng.choice([-1.0, 1.0], x.shape) * 2.0 ** -23)).astype(np.float32)
    batched = KerasRunner(model, compiled=compiled)
    noise = max(float(np.max(np.abs(a - r))) for a, r in zip(batched.run(nudged), reference))
    n = min(len(x), NOISE_SAMPLES)
    single = KerasRunner(model, batch_size=1, compiled=compiled).run(x[:n])
    return max(noise, *(float(np.max(np.abs(a - r[:n]))) for a, r in zip(single, reference)))


def _layer_report(model, file: Path, x: np.ndarray, plot_dir: Path | None, float_tflite: Path | None = None):
    """The layer-wise report of one TFLite artifact; its matches are proven on the folder's fp32 .tflite (the same
    trace, the same tensor names), or on one converted from the Keras model when the folder has none."""
    from edgeconv.verify.layerwise import compare_layers

    try:
        rep = compare_layers(model, file, x, max_samples=LAYERWISE_SAMPLES, artifact=file.name,
                             float_tflite=float_tflite)
    except Exception as e:  # noqa: BLE001 - a diagnostic must never sink the validation it explains
        from edgeconv.verify.layerwise import LayerReport, SelfTestFailed

        msg = str(e) if isinstance(e, EdgeconvError) else f"{type(e).__name__}: {e}"
        return LayerReport(file.name, [], 0, [], error=msg, self_test_failed=isinstance(e, SelfTestFailed))
    if plot_dir is not None and rep.layers:
        rep.plot(plot_dir / f"{file.stem}.layers.png")
        rep.write_node_data(plot_dir / f"{file.stem}.layers.node_data.json")
    return rep
