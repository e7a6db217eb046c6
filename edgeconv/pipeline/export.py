"""One export run, as named stages: prepare -> convert -> manifest -> publish -> validate (and fall back).

- :func:`prepare` loads the model, the calibration inputs and the labels, initializes a random zoo model's BatchNorm
  statistics, saves the byte-deterministic Keras reference and traces the model once.
- :func:`convert_all` runs each selected precision's converter (:data:`edgeconv.precisions.PRECISIONS`) and the
  phone-ready finishing step.
- :func:`build_manifest` records every artifact (sha256, I/O, quantization, ops) and the run's provenance.
- :func:`publish` moves the staged files into ``OUT/<name>/`` (manifest last), so a failed or interrupted run leaves
  nothing half-written.
- :func:`validate_and_fallback` validates against the Keras reference and, with ``fallback="auto"``, re-converts an
  int8 that misses its target.

Stages return values; nothing is shared through mutable lists. No global side effect on the caller: random state is
seeded locally (:func:`edgeconv.pipeline.seeding.seeded`), native output is the CLI's business, no chdir, no argv.
"""
from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
import time
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np

from edgeconv import console
from edgeconv.errors import EdgeconvError, UsageError
from edgeconv.fileio import atomic_write_bytes, atomic_write_json, sha256_file
from edgeconv.options import ExportOptions, with_overrides
from edgeconv.pipeline.convert import ConvertContext
from edgeconv.pipeline.inputs import DataPlan, model_inputs, plan_data
from edgeconv.pipeline.load import LoadedModel, load_model, with_rgb_input
from edgeconv.onnx.introspect import onnx_details
from edgeconv.pipeline.manifest import MANIFEST, ArtifactRecord, Manifest, WeightsRecord, tool_versions
from edgeconv.pipeline.metadata import LABELS_FILE, labels_text
from edgeconv.pipeline.reference import save_reference
from edgeconv.pipeline.seeding import seeded
from edgeconv.precisions import PRECISIONS, Precision, resolve
from edgeconv.tflite.introspect import tflite_details

__all__ = ["export", "ExportResult", "Prepared", "prepare", "convert_all", "build_manifest", "publish",
           "validate_and_fallback", "convert_summary"]

INT8 = PRECISIONS["int8"]
BN_ESTIMATION_SAMPLES = 64
INT16X8_SPEED_NOTE = ("int16x8 is for accuracy, not speed: XNNPACK has no int16 kernels, so LiteRT runs it on "
                      "reference kernels (~30x slower than fp32 for the MobileNets, benchmarks/RESULTS.md table 4)")


@dataclass
class ExportResult:
    out_dir: Path
    name: str
    manifest: Manifest
    calibration_note: str | None = None
    seconds: dict = field(default_factory=dict)
    validation: object | None = None  # edgeconv.verify.validate.ValidationReport when validation ran
    warnings: list[str] = field(default_factory=list)
    fallback: object | None = None  # edgeconv.verify.fallback.FallbackResult when --fallback auto had to act
    options: ExportOptions | None = None

    @property
    def artifacts(self) -> list[ArtifactRecord]:
        return self.manifest.artifacts

    def path(self, key: str) -> Path:
        for a in self.artifacts:
            if a.key == key:
                return self.out_dir / a.file
        raise KeyError(key)

    def summary_rows(self) -> list[list]:
        base = next((a.bytes for a in self.artifacts if a.key == "fp32"), None)
        rows = []
        for a in self.artifacts:
            ratio = f"{a.bytes / base:.2f}x" if base else "-"
            io = ", ".join(f"{s['dtype']}" for s in a.inputs) + " -> " + ", ".join(s["dtype"] for s in a.outputs)
            rows.append([a.file, a.format, a.precision, f"{a.bytes / 1e6:.3f}", ratio, io,
                         f"{self.seconds.get(a.key, 0):.1f}"])
        return rows


@dataclass
class Prepared:
    """What :func:`prepare` made: everything the converters and the manifest need."""

    loaded: LoadedModel
    calib: object | None  # edgeconv.pipeline.inputs.InputSet of calibration inputs, when a precision needs them
    weights: WeightsRecord
    labels: list[str] | None
    reference_file: str
    saved_model: Path
    warnings: list[str]
    seconds: dict[str, float]
    plan: DataPlan | None = None
    labels_source: str | None = None  # where ``labels`` came from (--class-labels, ImageNet class names)
    outputs: list = field(default_factory=list)  # edgeconv.verify.kinds.OutputInfo per output, Keras order

    @property
    def name(self) -> str:
        return self.loaded.name

    @property
    def calibration_x(self) -> np.ndarray | None:
        return None if self.calib is None else self.calib.x


@dataclass
class Artifact:
    """One converted, finished artifact, staged but not yet published."""

    precision: Precision
    record: ArtifactRecord
    seconds: float
    warnings: list[str]


def _check_writable(out_dir: Path) -> None:
    try:
        out_dir.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=out_dir, prefix=".edgeconv-write-test-"):
            pass
    except OSError as e:
        raise EdgeconvError(f"cannot write to output folder {out_dir}: {e.strerror or e}") from None


def _check(selected: list[Precision], opts: ExportOptions) -> None:
    """Checks that need the resolved precision list (the rest are in :meth:`ExportOptions.check`)."""
    if opts.ort and not any(p.format == "onnx" for p in selected):
        raise UsageError("--ort converts the ONNX artifacts to the ORT format; add --onnx or --onnx-int8")
    if opts.nchw and not any(p.format == "onnx" for p in selected):
        raise UsageError("--nchw only applies to ONNX artifacts; add --onnx")
    if (opts.fallback == "auto" or opts.keep_float) and not any(p.key == "int8" for p in selected):
        raise UsageError("--fallback and --keep-float apply to the int8 TFLite artifact; add --int8")
    if opts.calibration is not None and not Path(opts.calibration).exists():
        raise EdgeconvError(f"calibration data not found: {opts.calibration}")


def _calibration_inputs(loaded: LoadedModel, path, num: int, seed: int):
    return model_inputs(path, input_shape=loaded.input_shape, preprocessing=loaded.preprocessing, num=num,
                        split="calibration", seed=seed)


def _init_weights(loaded: LoadedModel, opts: ExportOptions, calib) -> tuple[WeightsRecord, str | None]:
    """The export's weights record and its warning (or None).

    Pretrained weights, a weights file and a model file's own weights are used as they are. A zoo model with random
    weights (asked for with ``--weights random``, none published, a build they do not fit, or they could not be had:
    :func:`edgeconv.pipeline.load.load_model` says which) gets its BatchNorm statistics re-estimated on calibration
    images (:mod:`edgeconv.models.batchnorm`) so activations keep a realistic scale and its output depends on its
    input; otherwise nothing about the export could be validated. The warning is the load stage's note (why the
    model has random weights although it has pretrained ones), or for a model without published weights the
    BatchNorm note; ``--weights random`` gets none."""
    record = loaded.weights
    if not record.is_random:
        return record, loaded.weights_note
    record = replace(record, seed=opts.seed)
    from edgeconv.models.batchnorm import batchnorm_layers, estimate_batchnorm_statistics

    if not batchnorm_layers(loaded.model):
        return record, loaded.weights_note
    x = calib.x if calib is not None else _calibration_inputs(loaded, opts.calibration, BN_ESTIMATION_SAMPLES,
                                                               opts.seed).x
    with console.step("estimate BatchNorm statistics (random weights)", opts.quiet):
        n = estimate_batchnorm_statistics(loaded.model, x, max_samples=BN_ESTIMATION_SAMPLES)
    note = loaded.weights_note
    if note is None and opts.weights is None:  # a model without published weights
        note = (f"{loaded.name} has random weights (pass --weights FILE for trained ones); the statistics of its {n} "
                f"BatchNorm layers were estimated on {min(len(x), BN_ESTIMATION_SAMPLES)} calibration images so its "
                f"activations have a realistic scale")
    return replace(record, batchnorm_estimated=True), note


def _outputs_and_labels(loaded: LoadedModel, opts: ExportOptions) -> tuple[list, list[str] | None, str | None]:
    """-> (the model's outputs with their kinds, class names to embed, where they came from).

    Class names: ``--class-labels``, else the ImageNet class names shipped with the zoo
    (``edgeconv/models/data/imagenet_classes.txt``) when the weights are ImageNet's. They name the classes of the
    model's one class-score output (:func:`edgeconv.verify.kinds.infer_outputs`; the labels mark an output of their
    size as class scores when nothing else does)."""
    from edgeconv.pipeline.metadata import load_class_labels
    from edgeconv.verify.kinds import infer_outputs

    labels, source = None, None
    if opts.class_labels is not None:
        source = "a list of names" if isinstance(opts.class_labels, (list, tuple)) else str(opts.class_labels)
        labels = load_class_labels(opts.class_labels)
    elif loaded.weights.kind == "imagenet":
        from edgeconv import models

        labels, source = list(models.imagenet_classes()), "ImageNet class names (edgeconv.models)"
    outputs = infer_outputs(loaded.model, opts.output_kinds, labels=len(labels) if labels else None)
    if labels is not None:
        scores = [o for o in outputs if o.is_scores]
        if len(scores) != 1:
            fix = ("mark the one they name with --output-kind NAME=scores" if not scores else
                   "declare the others with --output-kind NAME=regression")
            raise UsageError(f"--class-labels names the classes of one class-score output; {loaded.name} has "
                             f"{len(scores)} (outputs: {', '.join(o.name for o in outputs)}): {fix}")
        labels = load_class_labels(opts.class_labels if opts.class_labels is not None else labels,
                                   classes=scores[0].size)
    return outputs, labels, source


@contextlib.contextmanager
def _timed(seconds: dict, key: str, description: str, quiet: bool):
    """A progress step whose wall time is also kept in ``seconds[key]`` (:attr:`ExportResult.seconds`)."""
    t0 = time.perf_counter()
    with console.step(description, quiet):
        yield
    seconds[key] = seconds.get(key, 0.0) + time.perf_counter() - t0


def prepare(source, opts: ExportOptions, selected: list[Precision], stage: Path, work: Path,
            on_loaded=None) -> Prepared:
    """Load -> labels -> calibration inputs -> (random zoo weights: BN statistics) -> Keras reference -> trace.
    ``on_loaded(loaded)`` runs right after the load (the export starts its conversion workers there, so their
    TensorFlow import overlaps the rest of this stage)."""
    from edgeconv.pipeline.trace import trace

    warnings: list[str] = []
    seconds: dict[str, float] = {}
    with seeded(opts.seed):  # zoo weights and BN estimation are reproducible; the caller's RNGs are left alone
        with _timed(seconds, "load", f"load {source}", opts.quiet):
            loaded = load_model(source, weights=opts.weights, input_size=opts.input_size, classes=opts.classes,
                                width=opts.width, preprocessing=opts.preprocessing,
                                custom_objects=opts.custom_objects,
                                unsafe_deserialization=opts.unsafe_deserialization)
            if opts.rgb_input:
                loaded = with_rgb_input(loaded)
        if on_loaded is not None:
            on_loaded(loaded)
        warnings += loaded.warnings
        outputs, labels, labels_source = _outputs_and_labels(loaded, opts)
        plan = plan_data(opts.calibration, opts.validation.data, opts.calib_samples, opts.validation.samples,
                         hold_out=opts.validate)
        warnings += plan.warnings
        calib = None
        if any(p.needs_calibration for p in selected):
            with _timed(seconds, "calibration data", "load calibration data", opts.quiet):
                calib = _calibration_inputs(loaded, opts.calibration, plan.calibration_count, opts.seed)
            warnings += calib.warnings
            if len(calib.x) < plan.calibration_count:
                warnings.append(f"calibration: only {len(calib.x)} samples available "
                                f"(asked for {plan.calibration_count})")
        t0 = time.perf_counter()
        weights, note = _init_weights(loaded, opts, calib)
        seconds["weights"] = time.perf_counter() - t0  # BatchNorm estimation of random weights, else ~0
    if note:
        warnings.append(note)
    ref_file = f"{loaded.name}.keras"
    with _timed(seconds, "reference", "save Keras reference", opts.quiet):
        save_reference(loaded.model, stage / ref_file)
    with _timed(seconds, "trace", f"trace {loaded.name} (batch {opts.batch_size or 'dynamic'})", opts.quiet):
        saved_model = trace(loaded.model, work, opts.batch_size)
    return Prepared(loaded, calib, weights, labels, ref_file, saved_model, warnings, seconds, plan=plan,
                    labels_source=labels_source, outputs=outputs)


def _convert_one(p: Precision, ctx: ConvertContext, prep: Prepared, stage: Path) -> tuple[Artifact, bytes]:
    from edgeconv.pipeline.phone_ready import PhoneOptions, finish_onnx, finish_tflite

    opts = ctx.options
    phone = PhoneOptions(opts.target, prep.labels, opts.model_version, opts.rewrite, tuple(prep.outputs))
    t0 = time.perf_counter()
    with console.step(f"convert {p.key}", opts.quiet):
        conv = p.convert(p, ctx)
    warnings = list(conv.warnings)
    converted = conv.data
    if p.format == "tflite":  # phone-ready: int8 rewrite + embedded metadata
        data, finish, notes = finish_tflite(p.precision, conv.data, prep.loaded, prep.calibration_x, phone)
    else:
        data, finish, notes = finish_onnx(p.precision, conv.data, prep.loaded, conv.layout, phone)
    warnings += notes
    seconds = time.perf_counter() - t0
    fname = p.filename(prep.name)
    atomic_write_bytes(stage / fname, data)
    details = tflite_details(data) if p.format == "tflite" else onnx_details(data, conv.layout)
    record = ArtifactRecord(
        file=fname, format=p.format, precision=p.precision, key=p.key, sha256=sha256_file(stage / fname),
        bytes=len(data), inputs=details["inputs"], outputs=details["outputs"], layout=conv.layout, opset=conv.opset,
        ops=details["ops"], tensor_types=details.get("tensor_types"), **conv.fields, **finish)
    return Artifact(p, record, seconds, warnings), converted


# Rough relative cost of each conversion (seconds for MobileNetV3-Small at 224x224), to hand the longest out first.
# int8 and fp16 are made from the float model, so they follow fp32 in one unit (:func:`_units`).
_COST = {"fp32": 4, "fp16": 0.5, "dynamic": 4, "int8": 2, "int16x8": 10, "onnx": 6, "onnx_int8": 3}
_FROM_FLOAT = ("fp32", "int8", "fp16")  # made from the export's float .tflite (edgeconv.pipeline.convert)


def _units(selected: list[Precision]) -> list[list[Precision]]:
    """The TFLite conversions as units of work, longest first: fp32, int8 and fp16 form one unit (int8 and fp16 are
    made from the float model fp32 converts; together they cost one graph conversion), every other precision is
    its own."""
    tflite = [p for p in selected if p.format == "tflite"]
    chain = [p for p in tflite if p.key in _FROM_FLOAT]
    units = ([chain] if chain else []) + [[p] for p in tflite if p not in chain]
    return sorted(units, key=lambda u: -sum(_COST.get(p.key, 4) for p in u))


def convert_all(prep: Prepared, selected: list[Precision], opts: ExportOptions, stage: Path,
                pool=None) -> list[Artifact]:
    """Every selected precision, staged in ``stage``, returned in table order. The float ONNX feeds the ONNX int8;
    the float .tflite feeds the int8 (:func:`_units`).

    With a :class:`~edgeconv.pipeline.workers.WorkerPool` the TFLite units also run in its worker processes while
    this process converts: the ONNX chain (tf2onnx needs the Keras model in memory, the ONNX int8 needs the float
    ONNX) stays here, the longest TFLite units go out first, and this process takes the shortest remaining ones
    when it has nothing else. Each artifact's bytes are what the sequential path writes."""
    ctx = ConvertContext(prep.loaded, prep.saved_model, prep.calibration_x, opts)
    done: dict[str, Artifact] = {}
    local = [p for p in selected if p.format != "tflite"]
    units = _units(selected)
    if pool is not None and len(pool):
        pool.init({"prep": _for_worker(prep, Path(prep.saved_model).parent / "calibration.npy"), "stage": stage,
                   "options": opts})
    try:
        while local or units or (pool is not None and pool.busy):
            if pool is not None:
                for i in pool.idle(wait=opts.jobs is not None):
                    if units and (local or len(units) > 1):  # this process has the model: it keeps one
                        u = units.pop(0) if local else units.pop()
                        pool.submit(i, tuple(p.key for p in u), tuple(p.key for p in u))
                _collect(pool, done, opts.quiet, block=not local and not units)
            todo = [local.pop(0)] if local else units.pop(0) if units else []
            for p in todo:
                artifact, converted = _convert_one(p, ctx, prep, stage)
                if p.key == "onnx":
                    ctx = replace(ctx, onnx_fp32=converted)
                elif p.key == "fp32":
                    ctx = replace(ctx, tflite_float=converted)
                done[p.key] = artifact
                if opts.ort and p.format == "onnx":
                    done[f"{p.key}_ort"] = _ort_artifact(artifact, stage, opts.quiet)
    finally:
        if pool is not None and pool.busy:  # an error here: let running workers finish before the stage goes
            pool.close()
    out = []
    for p in selected:
        out.append(done[p.key])
        if f"{p.key}_ort" in done:
            out.append(done[f"{p.key}_ort"])
    return out


def _collect(pool, done: dict, quiet: bool, block: bool) -> None:
    """Take the answers of the workers that have finished (with ``block``: wait for one)."""
    import select

    ready = pool.ready()
    if block and not ready and pool.busy:
        select.select([pool.procs[i].stdout for i in pool.busy], [], [])
        ready = pool.ready()
    for i in ready:
        _, artifacts = pool.collect(i)
        for artifact in artifacts:
            done[artifact.precision.key] = artifact
            if not quiet:
                console.info(f"done convert {artifact.precision.key} ({artifact.seconds:.1f} s, in a worker process)")


def _for_worker(prep: Prepared, calibration_file: Path) -> Prepared:
    """``prep`` without what does not cross a process boundary: the Keras model (the worker loads the export's own
    ``.keras`` reference), imported custom-object modules (it re-imports ``--custom-objects``); the calibration
    inputs go through ``calibration_file`` (a .npy the worker maps) rather than the pipe."""
    calib = prep.calib
    if calib is not None:
        np.save(calibration_file, calib.x)
        calib = replace(calib, x=str(calibration_file))
    return replace(prep, calib=calib, loaded=replace(prep.loaded, model=None, custom_objects=None))


def convert_in_worker(state: dict, keys: tuple[str, ...]) -> list[Artifact]:
    """In a worker process (:mod:`edgeconv.pipeline.workers`): convert and stage one unit of precisions (in order,
    one context: int8 quantizes the float model fp32 made), as :func:`convert_all` does in the export's process."""
    prep: Prepared = state["prep"]
    if prep.calib is not None and isinstance(prep.calib.x, str):
        prep = state["prep"] = replace(prep, calib=replace(prep.calib, x=np.load(prep.calib.x)))
    if prep.loaded.model is None:  # first conversion here: the model the export saved as its reference
        from edgeconv.pipeline.custom_objects import import_custom_objects
        from edgeconv.pipeline.load import load_keras_model

        o = state["options"]
        custom = import_custom_objects(o.custom_objects) if o.custom_objects else None
        model, _ = load_keras_model(state["stage"] / prep.reference_file, custom_objects=custom,
                                    unsafe_deserialization=o.unsafe_deserialization)
        prep = state["prep"] = replace(prep, loaded=replace(prep.loaded, model=model, custom_objects=custom))
    opts = replace(state["options"], quiet=True)  # the parent reports progress
    ctx = ConvertContext(prep.loaded, prep.saved_model, prep.calibration_x, opts)
    out = []
    for key in keys:
        artifact, converted = _convert_one(PRECISIONS[key], ctx, prep, state["stage"])
        if key == "fp32":
            ctx = replace(ctx, tflite_float=converted)
        out.append(artifact)
    return out


ORT_CONFIG_SUFFIX = ".required_operators.config"


def _ort_artifact(onnx_artifact: Artifact, stage: Path, quiet: bool) -> Artifact:
    """The ORT format (what onnxruntime Mobile loads on Android / iOS) of a staged ONNX artifact, made by
    onnxruntime's own converter (:func:`edgeconv.onnx.mobile.write_ort`, fully optimized for ARM CPUs). Validation
    runs the .ort like any artifact; the required-operators config of a reduced onnxruntime build is published
    next to it (:func:`ort_config`)."""
    from edgeconv.onnx.mobile import write_ort
    from edgeconv.runtime.runners import OnnxRunner

    rec = onnx_artifact.record
    stem = Path(rec.file).stem
    t0 = time.perf_counter()
    with console.step(f"convert {onnx_artifact.precision.key} to the ORT format", quiet), \
            tempfile.TemporaryDirectory(prefix="edgeconv-ort-") as tmp:
        data, config = write_ort(stage / rec.file, tmp, name=stem)
        atomic_write_bytes(stage / f"{stem}.ort", data)
        runner = OnnxRunner(stage / f"{stem}.ort", layout=rec.layout)
    ops = {op: 1 for line in config.splitlines() if line and not line.startswith("#")
           for op in line.split(";")[-1].split(",")}
    record = ArtifactRecord(
        file=f"{stem}.ort", format="ort", precision=rec.precision, key=f"{rec.key}_ort",
        sha256=sha256_file(stage / f"{stem}.ort"), bytes=len(data), inputs=[s.to_dict() for s in runner.inputs],
        outputs=[s.to_dict() for s in runner.outputs], layout=rec.layout, opset=rec.opset, ops=dict(sorted(ops.items())),
        quantization=rec.quantization, metadata={"required_operators": config})
    return Artifact(onnx_artifact.precision, record, time.perf_counter() - t0, [])


def ort_config(records: list[ArtifactRecord]) -> str:
    """One required-operators config for every .ort of the export: the union of each file's ``domain;opset;ops``
    lines (a reduced onnxruntime build takes one config: ``build.sh --minimal_build --include_ops_by_config``)."""
    ops: dict[tuple[str, str], set[str]] = {}
    for r in records:
        for line in (r.metadata or {}).get("required_operators", "").splitlines():
            if line and not line.startswith("#") and line.count(";") == 2:
                domain, opset, names = line.split(";")
                ops.setdefault((domain, opset), set()).update(n for n in names.split(",") if n)
    files = ", ".join(r.file for r in records)
    return (f"# onnxruntime required operators of {files} (edgeconv)\n"
            + "".join(f"{d};{o};{','.join(sorted(n))}\n" for (d, o), n in sorted(ops.items())))


def build_manifest(prep: Prepared, artifacts: list[Artifact], opts: ExportOptions, stage: Path,
                   command: str) -> Manifest:
    loaded, calib = prep.loaded, prep.calib
    ref = stage / prep.reference_file
    scores = [o for o in prep.outputs if o.is_scores]
    return Manifest(
        model={"name": prep.name, "source": loaded.source, "source_kind": loaded.source_kind,
               "input_shape": list(loaded.input_shape), "classes": scores[0].size if len(scores) == 1 else None,
               "outputs": [o.to_dict() for o in prep.outputs],
               "params": int(loaded.model.count_params()), "zoo": loaded.zoo, "build_kwargs": loaded.build_kwargs,
               "weights": prep.weights.to_dict(),
               # the model's own input shape when --input-size fixed its open dimensions (None: it was fixed)
               "open_input_shape": None if loaded.open_input_shape is None else list(loaded.open_input_shape),
               "custom_objects": loaded.custom_objects.to_manifest() if loaded.custom_objects else []},
        reference={"file": prep.reference_file, "sha256": sha256_file(ref), "bytes": ref.stat().st_size},
        preprocessing={**loaded.preprocessing.to_dict(), "assumed": loaded.preprocessing_assumed},
        calibration=None if calib is None else {
            "source": calib.source, "path": None if opts.calibration is None else str(opts.calibration),
            "count": int(len(calib.x)), "requested": opts.calib_samples,
            "skipped": [list(s) for s in calib.skipped], "ids": list(calib.ids), "seed": opts.seed},
        validation=None if prep.plan is None else prep.plan.to_dict(),
        options={"batch_size": opts.batch_size, "io_type": opts.io_type, "opset": opts.opset, "nchw": opts.nchw,
                 "seed": opts.seed, "target": opts.target, "rewrite": opts.rewrite,
                 "input_size": None if opts.input_size is None else list(_hw(opts.input_size)),
                 "unsafe_deserialization": opts.unsafe_deserialization,
                 "model_version": opts.model_version, "rgb_input": opts.rgb_input,
                 "class_labels": None if prep.labels is None else LABELS_FILE,
                 "class_labels_source": prep.labels_source, "output_kinds": dict(opts.output_kinds)},
        artifacts=[a.record for a in artifacts], tools=tool_versions(), command=command)


def publish(stage: Path, final: Path, manifest: Manifest, extra_files: dict[str, bytes] | None = None) -> None:
    """Write the manifest (and ``extra_files``) into ``stage``, then move every file into ``final`` with the
    manifest last, and drop files of an older export there that this one does not have."""
    for name, data in (extra_files or {}).items():
        atomic_write_bytes(stage / name, data)
    atomic_write_json(stage / MANIFEST, manifest.to_dict())
    files = [manifest.reference["file"]] + [a.file for a in manifest.artifacts] + list(extra_files or {})
    final.mkdir(parents=True, exist_ok=True)
    old: list[str] = []
    if (final / MANIFEST).exists():
        try:
            m = Manifest.load(final)
            old = [a.file for a in m.artifacts] + [m.reference.get("file", "")]
        except EdgeconvError:
            old = []
    for f in files:
        os.replace(stage / f, final / f)
    os.replace(stage / MANIFEST, final / MANIFEST)
    for f in set(old) - set(files) - {""}:
        (final / f).unlink(missing_ok=True)


def _hw(size) -> tuple[int, int]:
    return (size, size) if isinstance(size, int) else tuple(size)


def _python_call(source, opts: ExportOptions) -> str:
    defaults = ExportOptions()
    changed = {k: getattr(opts, k) for k in ("precisions", "calibration", "input_size", "classes", "weights",
                                             "io_type", "seed", "target", "custom_objects", "unsafe_deserialization",
                                             "output_kinds")
               if getattr(opts, k) != getattr(defaults, k)}
    args = ", ".join([repr(str(source))] + [f"{k}={v!r}" for k, v in changed.items()])
    return f"edgeconv.export({args})"


def export(source, options: ExportOptions | None = None, **overrides) -> ExportResult:
    """Export ``source`` (zoo name, .keras, .h5, SavedModel folder) to every precision in ``options.precisions``.

    ``options`` is an :class:`~edgeconv.options.ExportOptions`; keyword arguments override its fields, so
    ``export("mobilenetv3_small", precisions=["int8"], input_size=96)`` works as well. Returns an
    :class:`ExportResult`; artifacts land in ``out_dir/<name>/`` with ``manifest.json``.
    """
    from edgeconv.pipeline.phone_ready import apply_target

    opts = with_overrides(options or ExportOptions(), overrides)
    precisions, io_type, rewrite = apply_target(opts.target, opts.precisions, opts.io_type, opts.rewrite)
    opts = replace(opts, precisions=tuple(precisions), io_type=io_type, rewrite=rewrite).check()
    selected = resolve(opts.precisions)
    _check(selected, opts)
    out_root = Path(opts.out_dir)
    _check_writable(out_root)
    stage = Path(tempfile.mkdtemp(prefix=".edgeconv-partial-", dir=out_root))
    work = Path(tempfile.mkdtemp(prefix="edgeconv-trace-"))
    pools = []  # started once the model is loaded: their TensorFlow import overlaps the rest of prepare()
    try:
        prep = prepare(source, opts, selected, stage, work,
                       on_loaded=lambda loaded: pools.append(_start_workers(selected, opts, loaded)))
        pool = pools[0] if pools else None
        if pool is not None:
            # the memory bound, now that the trace's size is known; the core bound was decided before the workers
            # started (the load average now counts them)
            pool.shrink(_worker_count(selected, replace(opts, jobs=opts.jobs or len(pool) + 1), prep.saved_model,
                                      prep.loaded)[0])
        t0 = time.perf_counter()
        artifacts = convert_all(prep, selected, opts, stage, pool)
        convert_seconds = time.perf_counter() - t0  # wall time of all conversions (they may overlap)
        n_workers = 0 if pool is None else len(pool.initialized)  # the workers that did convert
        if pool is not None:
            pool.release()  # they exit (their memory is free again) while this process goes on
        manifest = build_manifest(prep, artifacts, opts, stage, opts.command or _python_call(source, opts))
        final = out_root / prep.name
        extra_files = {LABELS_FILE: labels_text(prep.labels).encode("utf-8")} if prep.labels is not None else {}
        ort_records = [a.record for a in artifacts if a.record.format == "ort"]
        if ort_records:
            extra_files[f"{prep.name}{ORT_CONFIG_SUFFIX}"] = ort_config(ort_records).encode("utf-8")
        publish(stage, final, manifest, extra_files or None)
        warnings = prep.warnings + [w for a in artifacts for w in a.warnings]
        if any(p.key == "int16x8" for p in selected):
            warnings.insert(0, INT16X8_SPEED_NOTE)
        seconds = {**prep.seconds, **{a.record.key: a.seconds for a in artifacts}, "convert": convert_seconds,
                   "workers": n_workers}
        result = ExportResult(final, prep.name, manifest,
                              None if prep.calib is None else prep.calib.describe(), seconds, warnings=warnings,
                              options=opts)
        if opts.validate:
            t0 = time.perf_counter()
            result.validation, result.fallback, notes = validate_and_fallback(final, manifest, prep, opts)
            seconds["validate"] = time.perf_counter() - t0  # with --fallback auto: its rounds too
            result.warnings += notes
    finally:
        for pool in pools:
            if pool is not None:
                pool.close()
        shutil.rmtree(stage, ignore_errors=True)
        shutil.rmtree(work, ignore_errors=True)
    return result


def _worker_count(selected: list[Precision], opts: ExportOptions, saved_model: Path | None, loaded: LoadedModel):
    """(worker processes, why) for this export: the TFLite conversions can run apart; the ONNX chain is one more."""
    from edgeconv.pipeline.workers import worker_count

    tasks = len(_units(selected)) + any(p.format != "tflite" for p in selected)
    return worker_count(tasks, opts.jobs, saved_model, params=int(loaded.model.count_params()))


def _start_workers(selected: list[Precision], opts: ExportOptions, loaded: LoadedModel):
    n, _ = _worker_count(selected, opts, None, loaded)
    if n == 0:
        return None
    from edgeconv.pipeline.workers import WorkerPool

    return WorkerPool(n)


def validate_and_fallback(final: Path, manifest: Manifest, prep: Prepared, opts: ExportOptions):
    """-> (ValidationReport, FallbackResult | None, warnings). With ``fallback="auto"`` an int8 TFLite that fails
    is re-converted with its worst layers in float (:mod:`edgeconv.verify.fallback`), re-published and
    re-validated."""
    from edgeconv.verify.validate import reference_for
    from edgeconv.verify.validate import validate as run_validation

    vopts = replace(opts.validation, seed=opts.seed, unsafe_deserialization=opts.unsafe_deserialization,
                    custom_objects=opts.validation.custom_objects or opts.custom_objects)
    with console.step("validate against the Keras reference", opts.quiet):
        # One Keras reference (the in-memory model the export saved, its outputs on the held-out inputs) for the
        # validation, the fallback rounds and the re-validation after them.
        ref = reference_for(final, vopts, model=prep.loaded.model, manifest=manifest)
        report = run_validation(final, vopts, reference=ref)
    int8_file = INT8.filename(prep.name)
    failed = any(not a.passed for a in report.artifacts if a.file == int8_file)
    if opts.fallback != "auto" or not failed:
        return report, None, []
    fb, notes = _apply_fallback(final, manifest, prep, opts, report.artifact(int8_file), int8_file, ref)
    with console.step("re-validate after fallback", opts.quiet):
        report = run_validation(final, vopts, reference=ref)
    return report, fb, notes


def _apply_fallback(final: Path, manifest: Manifest, prep: Prepared, opts: ExportOptions, failing, file: str,
                    ref):
    """The int8 TFLite failed validation: keep its worst layers in float until it passes (edgeconv.verify.fallback).
    ``ref`` is the validation's :class:`~edgeconv.verify.validate.KerasReference`: the same held-out inputs and
    Keras outputs judge every round."""
    from edgeconv.pipeline.phone_ready import PhoneOptions, finish_tflite
    from edgeconv.verify.compare import tolerance_for
    from edgeconv.verify.fallback import auto_fallback

    vopts, loaded, calib = opts.validation, prep.loaded, prep.calib
    tol = tolerance_for("int8", "tflite", **vopts.overrides)
    with console.step("fallback: keep the worst int8 layers in float", opts.quiet):
        from edgeconv.pipeline.convert import calibrated

        cal = calibrated(ConvertContext(loaded, prep.saved_model, calib.x, opts))  # the int8 artifact's own
        fb = auto_fallback(prep.saved_model, calib.x, ref.x, ref.outputs, tol, keep_float=opts.keep_float,
                           calibrated=cal,
                           io_type=opts.io_type, labels=ref.inputs.labels, max_size_ratio=opts.max_size_ratio,
                           layer_report=failing.layers if failing.layers and failing.layers.layers else None,
                           outputs=prep.outputs or None,
                           ranges=opts.int8_ranges)
    phone = PhoneOptions(opts.target, prep.labels, opts.model_version, opts.rewrite, tuple(prep.outputs))
    data, _, notes = finish_tflite(fb.precision, fb.model_bytes, loaded, calib.x, phone)
    fb.model_bytes = data
    atomic_write_bytes(final / file, data)
    rec = manifest.artifact(file)
    details = tflite_details(data)
    rec.sha256, rec.bytes = sha256_file(final / file), len(data)
    rec.inputs, rec.outputs, rec.ops, rec.tensor_types = (details["inputs"], details["outputs"], details["ops"],
                                                          details["tensor_types"])
    rec.precision = fb.precision  # "int16x8" when the last resort (the whole model as int16x8) was what passed
    rec.kept_float = list(fb.kept_float)
    rec.fallback = {"kept_float": list(fb.kept_float), "passed": bool(fb.passed), "precision": fb.precision,
                    "stats": fb.stats, "history": fb.history_dicts()}
    atomic_write_json(final / MANIFEST, manifest.to_dict())
    return fb, notes


def convert_summary(result: ExportResult) -> tuple[list[str], list[list]]:
    return (["file", "format", "precision", "MB", "vs fp32", "io", "convert s"], result.summary_rows())
