"""One export run: load -> trace once -> convert every precision -> manifest -> (validate).

Everything is staged in a hidden folder next to the destination and moved into place only when every artifact has
been written, so a failed or interrupted run leaves nothing half-written in ``OUT/<name>/``.
"""
from __future__ import annotations

import os
import shlex
import shutil
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from . import console
from .errors import EdgeconvError, UsageError
from .fileio import atomic_write_bytes, atomic_write_json, sha256_file
from .load import LoadedModel, load_model
from .manifest import MANIFEST, ArtifactRecord, Manifest, onnx_details, tflite_details, tool_versions
from .metadata import LABELS_FILE, labels_text
from .precisions import PRECISIONS, Precision, resolve

PRECISIONS_INT8 = PRECISIONS["int8"]


@dataclass
class ExportResult:
    out_dir: Path
    name: str
    manifest: Manifest
    calibration_note: str | None = None
    seconds: dict = field(default_factory=dict)
    validation: object | None = None  # edgeconv.validate.ValidationReport when validation ran
    warnings: list[str] = field(default_factory=list)
    fallback: object | None = None  # edgeconv.fallback.FallbackResult when --fallback auto had to act

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


def _check_writable(out_dir: Path) -> None:
    try:
        out_dir.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=out_dir, prefix=".edgeconv-write-test-"):
            pass
    except OSError as e:
        raise EdgeconvError(f"cannot write to output folder {out_dir}: {e.strerror or e}") from None


def _calibration_inputs(loaded: LoadedModel, path, num: int, seed: int):
    from .inputs import model_inputs

    if num < 1:
        raise UsageError(f"--calib-samples must be >= 1, got {num}")
    return model_inputs(path, input_shape=loaded.input_shape, preprocessing=loaded.preprocessing, num=num,
                        split="calibration", seed=seed)


def _publish(stage: Path, final: Path, files: list[str]) -> None:
    """Move staged files into ``final`` (manifest last) and drop artifacts of an older export there."""
    final.mkdir(parents=True, exist_ok=True)
    old = []
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
        try:
            (final / f).unlink()
        except FileNotFoundError:
            pass


def export(source, *, precisions=("fp32",), out_dir: str | os.PathLike = "artifacts", calibration=None,
           calib_samples: int = 200, io_type: str = "int", batch_size: int | None = 1, input_size=None,
           classes: int | None = None, width: dict | None = None, weights: str | None = None, preprocessing=None,
           opset: int = 17, nchw: bool = False, seed: int = 0, validate: bool = True, validate_options=None,
           fallback: str = "none", keep_float=(), command: str | None = None, quiet: bool = False,
           target: str | None = None, class_labels=None, model_version: str = "1", rewrite: bool = True
           ) -> ExportResult:
    """Export ``source`` (zoo name, .keras, .h5, SavedModel folder) to every precision in ``precisions``.

    ``precisions`` are keys of :data:`edgeconv.precisions.PRECISIONS` (fp32 is always included). ``calibration`` is
    a folder of images, a .npy/.npz, or None for the embedded default photo set. Returns an :class:`ExportResult`;
    artifacts land in ``out_dir/<name>/`` with ``manifest.json``. ``fallback="auto"`` re-converts an int8 TFLite
    that fails validation with its worst layers kept in float; ``keep_float`` names layers to keep in float always.
    Phone-ready step (:mod:`edgeconv.phone_ready`): ``target`` ("cpu", "gpu", "npu") adds that device class's
    precisions; ``rewrite`` decomposes int8 h-swish for XNNPACK; every .tflite embeds metadata (``model_version``,
    ``class_labels``: a text file with one class name per line, also written as ``labels.txt``).
    """
    from .phone_ready import PhoneOptions, apply_target, finish_onnx, finish_tflite

    precisions, io_type, rewrite = apply_target(target, precisions, io_type, rewrite)
    selected: list[Precision] = resolve(precisions)
    if io_type not in ("int", "float"):
        raise UsageError(f"io_type must be 'int' or 'float', got {io_type!r}")
    if batch_size is not None and batch_size < 1:
        raise UsageError(f"batch size must be >= 1, got {batch_size}")
    if nchw and not any(p.format == "onnx" for p in selected):
        raise UsageError("--nchw only applies to ONNX artifacts; add --onnx")
    if fallback not in ("none", "auto"):
        raise UsageError(f"fallback must be 'none' or 'auto', got {fallback!r}")
    keep_float = [str(k) for k in keep_float]
    has_int8 = any(p.key == "int8" for p in selected)
    if (fallback == "auto" or keep_float) and not has_int8:
        raise UsageError("--fallback and --keep-float apply to the int8 TFLite artifact; add --int8")
    if fallback == "auto" and not validate:
        raise UsageError("--fallback auto needs validation to know whether int8 meets its target; "
                         "drop --no-validate")
    if calibration is not None and not Path(calibration).exists():
        raise EdgeconvError(f"calibration data not found: {calibration}")
    out_root = Path(out_dir)
    _check_writable(out_root)
    seconds: dict[str, float] = {}
    warnings: list[str] = []
    if any(p.key == "int16x8" for p in selected):
        warnings.append("int16x8 is for accuracy, not speed: XNNPACK has no int16 kernels, so LiteRT runs it on "
                        "reference kernels (~30x slower than fp32 for the MobileNets, benchmarks/RESULTS.md table 4)")

    with console.quiet_native():
        import keras

        keras.utils.set_random_seed(seed)
        with console.step(f"load {source}", quiet):
            loaded = load_model(source, weights=weights, input_size=input_size, classes=classes, width=width,
                                preprocessing=preprocessing)
        name = loaded.name
        phone = PhoneOptions(target, None, str(model_version), rewrite)
        if class_labels is not None:
            from .metadata import load_class_labels

            phone.labels = load_class_labels(class_labels, classes=int(loaded.model.output_shape[-1]))
        final = out_root / name
        stage = Path(tempfile.mkdtemp(prefix=f".{name}.partial-", dir=out_root))
        work = Path(tempfile.mkdtemp(prefix="edgeconv-trace-"))
        try:
            calib = None
            if any(p.needs_calibration for p in selected):
                with console.step("load calibration data", quiet):
                    calib = _calibration_inputs(loaded, calibration, calib_samples, seed)
                warnings.extend(calib.warnings)
                if len(calib.x) < calib_samples:
                    warnings.append(f"calibration: only {len(calib.x)} samples available "
                                    f"(asked for {calib_samples})")
            weights_note = _init_random_zoo_weights(loaded, weights, calib, calibration, seed, quiet)
            if weights_note:
                warnings.append(weights_note)
            ref_file = f"{name}.keras"
            with console.step("save Keras reference", quiet):
                save_reference(loaded.model, stage / ref_file)
            t0 = time.perf_counter()
            with console.step(f"trace {name} (batch {batch_size or 'dynamic'})", quiet):
                saved_model = _trace(loaded.model, work, batch_size)
            seconds["trace"] = time.perf_counter() - t0
            records: list[ArtifactRecord] = []
            onnx_fp32: bytes | None = None
            for p in selected:
                t0 = time.perf_counter()
                with console.step(f"convert {p.key}", quiet):
                    data, layout, extra, opset_used = _convert(p, loaded, saved_model, calib, io_type, batch_size,
                                                                opset, nchw, onnx_fp32, warnings, keep_float)
                if p.key == "onnx":
                    onnx_fp32 = data
                if p.format == "tflite":  # phone-ready: int8 rewrite + embedded metadata
                    data, extra = finish_tflite(p.precision, data, extra, loaded, None if calib is None else calib.x,
                                                phone, warnings)
                else:
                    data, extra = finish_onnx(p.precision, data, extra, loaded, layout, phone)
                seconds[p.key] = time.perf_counter() - t0
                fname = p.filename(name)
                (stage / fname).write_bytes(data)
                details = tflite_details(data) if p.format == "tflite" else onnx_details(data, layout)
                extra = {**extra, "ops": details["ops"]}
                if "tensor_types" in details:
                    extra["tensor_types"] = details["tensor_types"]
                records.append(ArtifactRecord(
                    file=fname, format=p.format, precision=p.precision, key=p.key, sha256=sha256_file(stage / fname),
                    bytes=len(data), inputs=details["inputs"], outputs=details["outputs"], layout=layout,
                    opset=opset_used, extra=extra))
            manifest = Manifest(
                model={"name": name, "source": loaded.source, "source_kind": loaded.source_kind,
                       "input_shape": list(loaded.input_shape), "classes": int(loaded.model.output_shape[-1]),
                       "params": int(loaded.model.count_params()), "zoo": loaded.zoo,
                       "build_kwargs": loaded.build_kwargs,
                       "weights": _weights_description(loaded, weights, weights_note)},
                reference={"file": ref_file, "sha256": sha256_file(stage / ref_file),
                           "bytes": (stage / ref_file).stat().st_size},
                preprocessing={**loaded.preprocessing.to_dict(), "assumed": loaded.preprocessing_assumed},
                calibration=None if calib is None else {
                    "source": calib.source, "path": None if calibration is None else str(calibration),
                    "count": int(len(calib.x)), "requested": calib_samples,
                    "skipped": [list(s) for s in calib.skipped], "ids": list(calib.ids), "seed": seed},
                options={"batch_size": batch_size, "io_type": io_type, "opset": opset, "nchw": nchw, "seed": seed,
                         "target": target, "rewrite": rewrite, "model_version": str(model_version),
                         "class_labels": None if phone.labels is None else LABELS_FILE},
                artifacts=records, tools=tool_versions(),
                command=command or " ".join(shlex.quote(a) for a in ["edgeconv", *sys.argv[1:]]),
            )
            atomic_write_json(stage / MANIFEST, manifest.to_dict())
            if phone.labels is not None:
                atomic_write_bytes(stage / LABELS_FILE, labels_text(phone.labels).encode("utf-8"))
            _publish(stage, final, [ref_file] + [r.file for r in records]
                     + ([LABELS_FILE] if phone.labels is not None else []))
            result = ExportResult(final, name, manifest, None if calib is None else calib.describe(), seconds,
                                  warnings=warnings)
            if validate:
                from .validate import validate as run_validation

                with console.step("validate against the Keras reference", quiet):
                    result.validation = run_validation(final, seed=seed, **(validate_options or {}))
                int8_file = PRECISIONS_INT8.filename(name)
                if fallback == "auto" and _failed(result.validation, int8_file):
                    _apply_fallback(result, loaded, saved_model, calib, int8_file, io_type, keep_float, seed,
                                    validate_options or {}, quiet, phone)
                    with console.step("re-validate after fallback", quiet):
                        result.validation = run_validation(final, seed=seed, **(validate_options or {}))
        finally:
            shutil.rmtree(stage, ignore_errors=True)
            shutil.rmtree(work, ignore_errors=True)
    return result


def save_reference(model, path: Path) -> None:
    """Save the Keras reference as ``.keras``, byte-for-byte the same for the same model.

    Keras writes three things that change from run to run although the model does not: ``date_saved`` in
    metadata.json, the zip entries' timestamps, and ``shared_object_id`` in config.json, which is Python's ``id()`` of
    shared objects (only compared for equality when loading). They become: no date, 1980-01-01 for every entry, and
    0, 1, 2, ... in order of first appearance. Loading is unaffected (tested)."""
    import json
    import zipfile

    model.save(path)
    with zipfile.ZipFile(path) as z:
        entries = [(i, z.read(i.filename)) for i in z.infolist()]
    ids: dict = {}

    def renumber(node):
        if isinstance(node, dict):
            return {k: (ids.setdefault(v, len(ids)) if k == "shared_object_id" else renumber(v))
                    for k, v in node.items()}
        if isinstance(node, list):
            return [renumber(v) for v in node]
        return node

    tmp = path.with_name(path.name + ".tmp")
    with zipfile.ZipFile(tmp, "w") as out:
        for info, data in entries:
            if info.filename == "metadata.json":
                meta = json.loads(data)
                meta.pop("date_saved", None)
                data = json.dumps(meta).encode()
            elif info.filename == "config.json":
                data = json.dumps(renumber(json.loads(data))).encode()
            out.writestr(zipfile.ZipInfo(info.filename, date_time=(1980, 1, 1, 0, 0, 0)), data,
                         compress_type=info.compress_type)
    os.replace(tmp, path)


BN_ESTIMATION_SAMPLES = 64


def _init_random_zoo_weights(loaded: LoadedModel, weights, calib, calibration, seed: int, quiet: bool) -> str | None:
    """A zoo model without ``--weights`` has random weights (nothing is downloaded). Its BatchNorm statistics are
    re-estimated on calibration images (:mod:`models.batchnorm`) so activations keep a realistic scale and its
    output depends on its input; otherwise nothing about the export could be validated. Returns a note, or None."""
    if loaded.source_kind != "zoo" or weights is not None:
        return None
    from models.batchnorm import batchnorm_layers, estimate_batchnorm_statistics

    if not batchnorm_layers(loaded.model):
        return None
    x = calib.x if calib is not None else _calibration_inputs(loaded, calibration, BN_ESTIMATION_SAMPLES, seed).x
    with console.step("estimate BatchNorm statistics (random weights)", quiet):
        n = estimate_batchnorm_statistics(loaded.model, x, max_samples=BN_ESTIMATION_SAMPLES)
    return (f"{loaded.name} has random weights (pass --weights for trained ones); the statistics of its {n} "
            f"BatchNorm layers were estimated on {min(len(x), BN_ESTIMATION_SAMPLES)} calibration images so its "
            f"activations have a realistic scale")


def _weights_description(loaded: LoadedModel, weights, weights_note) -> str:
    """The manifest's ``model.weights``; validation reads a leading "random" as "quality cannot be judged"."""
    if weights is not None:
        return str(weights)
    if loaded.source_kind != "zoo":
        return "from the model file"
    return "random (seeded)" + (", BatchNorm statistics estimated on calibration images" if weights_note else "")


def _failed(report, file: str) -> bool:
    return any(not a.passed for a in report.artifacts if a.file == file)


def _apply_fallback(result: ExportResult, loaded: LoadedModel, saved_model: Path, calib, file: str, io_type: str,
                    keep_float, seed: int, vopts: dict, quiet: bool, phone=None) -> None:
    """The int8 TFLite failed validation: keep its worst layers in float until it passes (edgeconv.fallback)."""
    from .compare import tolerance_for
    from .fallback import auto_fallback
    from .inputs import model_inputs
    from .runners import KerasRunner

    val = model_inputs(vopts.get("data"), input_shape=loaded.input_shape, preprocessing=loaded.preprocessing,
                       num=vopts.get("samples", 200), split="validation", seed=seed,
                       exclude_ids=list(calib.ids))
    ref = KerasRunner(loaded.model).run(val.x)
    tol = tolerance_for("int8", "tflite", atol=vopts.get("atol"), min_sqnr=vopts.get("min_sqnr"),
                        min_top1=vopts.get("min_top1"))
    with console.step("fallback: keep the worst int8 layers in float", quiet):
        failing = result.validation.artifact(file)
        fb = auto_fallback(saved_model, calib.x, val.x, ref, tol, keep_float=keep_float, io_type=io_type,
                           layer_report=failing.layers if failing.layers and failing.layers.layers else None)
    result.fallback = fb
    final = result.out_dir
    if phone is not None:  # phone-ready: same int8 rewrite + embedded metadata as the first conversion
        from .phone_ready import finish_tflite

        fb.model_bytes, _ = finish_tflite(fb.precision, fb.model_bytes, {}, loaded, calib.x, phone, result.warnings)
    atomic_write_bytes(final / file, fb.model_bytes)
    rec = next(a for a in result.manifest.artifacts if a.file == file)
    details = tflite_details(fb.model_bytes)
    rec.sha256, rec.bytes = sha256_file(final / file), len(fb.model_bytes)
    rec.inputs, rec.outputs = details["inputs"], details["outputs"]
    rec.precision = fb.precision  # "int16x8" when the last resort (the whole model as int16x8) was what passed
    rec.extra = {**rec.extra, "ops": details["ops"], "tensor_types": details["tensor_types"],
                 "fallback": {"kept_float": list(fb.kept_float), "passed": bool(fb.passed), "precision": fb.precision,
                              "history": fb.history_dicts()}}
    atomic_write_json(final / MANIFEST, result.manifest.to_dict())


def _trace(model, work: Path, batch_size):
    from .trace import trace

    return trace(model, work, batch_size)


def _convert(p: Precision, loaded: LoadedModel, saved_model: Path, calib, io_type: str, batch_size, opset: int,
             nchw: bool, onnx_fp32: bytes | None, warnings: list[str], keep_float=()):
    """-> (bytes, layout, extra, opset) for one artifact kind."""
    x = None if calib is None else calib.x
    if p.key == "int8" and keep_float:
        from .fallback import convert_with_keep_float

        return (convert_with_keep_float(saved_model, x, list(keep_float), io_type), "nhwc",
                {"io_type": io_type, "kept_float": list(keep_float)}, None)
    if p.format == "tflite":
        from .tflite_export import convert_tflite

        return convert_tflite(saved_model, p.precision, x, io_type), "nhwc", {"io_type": io_type
                                                                            if p.needs_calibration else "float"}, None
    from .onnx_export import convert_onnx

    layout = "nchw" if nchw else "nhwc"
    if onnx_fp32 is None or p.key == "onnx":
        res = convert_onnx(loaded.model, opset=opset, batch_size=batch_size, nchw=nchw,
                           verify_inputs=None if x is None else x[:8])  # rewrites checked on real inputs
        warnings.extend(res.warnings)
        fp32, extra = res.model_bytes, {"leftover_transposes": res.leftover_transposes, "rewrites": res.rewrites}
    else:
        fp32, extra = onnx_fp32, {}
    if p.key == "onnx":
        return fp32, layout, extra, opset
    from .onnx_quant import quantize_onnx_int8

    int8 = quantize_onnx_int8(fp32, x, nchw=nchw, warnings=warnings)
    return int8, layout, {"quantization": "QDQ per-channel, uint8 activations + int8 weights"}, opset


def convert_summary(result: ExportResult) -> tuple[list[str], list[list]]:
    return (["file", "format", "precision", "MB", "vs fp32", "io", "convert s"], result.summary_rows())


__all__ = ["export", "ExportResult", "convert_summary", "np"]
