"""The last export step for every .tflite: make it fast on its device class and self-describing.

- ``--target cpu|gpu|npu`` picks sensible defaults for a device class (:data:`TARGETS`, :func:`apply_target`).
- int8 files get :func:`edgeconv.tflite.rewrite.decompose_hard_swish` (XNNPACK runs no int8 HARD_SWISH), kept only
  when its SQNR against Keras on calibration inputs stays within 3 dB of the converter's own int8 (then validated
  against Keras as every artifact).
- every file gets the metadata of :mod:`edgeconv.pipeline.metadata` embedded (model name / version, normalization, input
  range, I/O quantization, labels, edgeconv version).
"""
from __future__ import annotations

from dataclasses import dataclass

from edgeconv import __version__
from edgeconv.errors import UsageError

__all__ = ["TARGETS", "Target", "PhoneOptions", "apply_target", "finish_tflite"]


@dataclass(frozen=True)
class Target:
    name: str
    adds: tuple  # precisions added to what the user asked for
    io_type: str | None  # required I/O type of int8 files, None = the user's choice
    rewrite: bool  # decompose int8 HARD_SWISH (XNNPACK CPU fast path)
    help: str


TARGETS = {t.name: t for t in [
    Target("cpu", ("int8",), None, True,
           "phone CPU through XNNPACK: fp32 + int8 with h-swish decomposed into ops XNNPACK runs in int8"),
    Target("gpu", ("fp16",), None, False,
           "phone GPU delegate: fp16 (the GPU delegate computes in fp16 and runs HARD_SWISH natively); "
           "GPU compatibility is checked with TF's analyzer and reported as a warning when it fails"),
    Target("npu", ("int8",), "int", False,
           "NPU / DSP delegates (NNAPI, Hexagon, vendor SDKs): full int8 with int8 input and output, ops left as "
           "the converter wrote them (NPUs run HARD_SWISH natively; extra ops cost them)"),
]}


@dataclass
class PhoneOptions:
    target: str | None = None
    labels: list | None = None
    model_version: str = "1"
    rewrite: bool = True
    outputs: tuple = ()  # edgeconv.verify.kinds.OutputInfo per output (Keras order); () = inferred from the model


DEFAULT_IO = "uint8"  # full int8 with uint8 I/O: what MediaPipe Tasks and Android apps load (raw pixels in)


def apply_target(target: str | None, precisions, io_type: str | None, rewrite: bool):
    """-> (precisions, io_type, rewrite) for ``target``; a user option that contradicts the target is an error.
    ``io_type`` None means the target's I/O type (npu: int8), else :data:`DEFAULT_IO`."""
    if target is None:
        return list(precisions), io_type or DEFAULT_IO, rewrite
    if target not in TARGETS:
        raise UsageError(f"unknown target {target!r}; known: {', '.join(TARGETS)}")
    t = TARGETS[target]
    if t.io_type is not None and io_type is not None and io_type != t.io_type:
        raise UsageError(f"--target {target} needs {t.io_type} I/O (full int8); drop --io {io_type}")
    keys = list(precisions) + [k for k in t.adds if k not in precisions]
    return keys, io_type or t.io_type or DEFAULT_IO, rewrite and t.rewrite


# The rewrite is kept when, on calibration inputs, its SQNR against the Keras model is at most this much below the
# converter's own int8 (measured on the trained tiny MobileNetV3: -1.0 dB, same top-1). Agreement with the converter's
# output is not the criterion: a random-weight model's near-tied classes flip on any rounding change.
REWRITE_MAX_SQNR_LOSS_DB = 3.0
REWRITE_CHECK_SAMPLES = 16


def finish_tflite(precision: str, data: bytes, loaded, calib_x, opts: PhoneOptions
                  ) -> tuple[bytes, dict, list[str]]:
    """Rewrite (int8) and embed metadata into one converted .tflite -> (bytes, ArtifactRecord fields, warnings)."""
    from edgeconv.tflite.introspect import tflite_details
    from edgeconv.pipeline.metadata import embed_metadata

    extra: dict = {}
    warnings: list[str] = []
    if precision == "int8" and opts.rewrite:
        from edgeconv.tflite.rewrite import check_parity, decompose_hard_swish

        res = decompose_hard_swish(data)
        if res.rewritten:
            parity = None
            if calib_x is not None and len(calib_x):
                from edgeconv.runtime.runners import KerasRunner

                x = calib_x[:REWRITE_CHECK_SAMPLES]
                keras = KerasRunner(loaded.model)
                parity = check_parity(data, res.model_bytes, x, reference=keras.run(x),
                                      output_names=[o.name for o in keras.outputs])
            if parity is None or parity["sqnr_after_db"] >= parity["sqnr_before_db"] - REWRITE_MAX_SQNR_LOSS_DB:
                data = res.model_bytes
                extra["tflite_rewrites"] = {**res.to_dict(), "parity": parity}
            else:
                warnings.append(f"int8 h-swish decomposition kept out: SQNR vs Keras on calibration inputs "
                                f"{parity['sqnr_after_db']:.1f} dB, converter's int8 {parity['sqnr_before_db']:.1f} dB")
    if opts.target == "gpu" and precision in ("fp16", "fp32"):
        from edgeconv.inspect import gpu_compatibility

        gpu = gpu_compatibility(data)
        extra["gpu_compatible"] = gpu["compatible"]
        if not gpu["compatible"]:
            warnings.append(f"{precision}: TF's analyzer says the GPU delegate cannot run every op: "
                            f"{'; '.join(gpu['issues'][:3])}")
    if precision in ("int8", "int16x8"):  # a uint8 input must take raw pixels (what phone APIs feed it)
        from edgeconv.tflite.rewrite import NOT_UINT8, uint8_input_as_pixels

        px = uint8_input_as_pixels(data, loaded.preprocessing)
        if px.reason != NOT_UINT8:
            extra["uint8_input"] = px.to_dict()
        data = px.model_bytes
    data = embed_metadata(data, _metadata(precision, tflite_details(data), loaded, opts, "nhwc"))
    data, android, notes = _android_metadata(data, precision, loaded, opts)
    warnings += notes
    extra["metadata"] = {"embedded": True, "labels": len(opts.labels or []), "tflite_metadata": android}
    return data, extra, warnings


def _android_metadata(data: bytes, precision: str, loaded, opts: PhoneOptions) -> tuple[bytes, dict, list[str]]:
    """Android's standard ``TFLITE_METADATA`` (what MediaPipe Tasks, the TFLite Task Library and Android Studio's
    model binding read), written last because it appends the labels zip. -> (bytes, what was written, warnings).
    Preprocessing that ``NormalizationOptions`` cannot describe (BGR) is reported, never written wrong."""
    from edgeconv.tflite import android_metadata as am

    pre = loaded.preprocessing
    channels = loaded.input_shape[-1]
    try:
        spec = am.ImageInputSpec.from_preprocessing(
            pre.scale, pre.mean, pre.std, pre.bgr, color_space="GRAYSCALE" if channels == 1 else "RGB",
            description=f"{'Grayscale' if channels == 1 else 'RGB'} pixels 0..255, normalized as (pixel - mean) / "
                        f"std ({pre.name} preprocessing)")
        outputs = _output_specs(data, loaded, opts)
        desc = am.ModelDescription(name=loaded.name, version=str(opts.model_version),
                                   description=f"{loaded.name} ({precision}) exported by edgeconv {__version__}",
                                   author="edgeconv")
        out = am.write_metadata(data, desc, [spec], outputs)
    except am.MetadataError as e:  # BGR, an int16 input, a uint8 input that is not raw pixels: said, never faked
        return data, {"written": False, "reason": str(e)}, [f"{precision}: no TFLITE_METADATA written: {e}"]
    problems = am.mediapipe_problems(out)
    info = {"written": True, "mean": list(spec.mean), "std": list(spec.std), "color_space": spec.color_space,
            "mediapipe_problems": problems}
    notes = [f"{precision}: MediaPipe Tasks cannot use this file as it is: {problems[0]}"
             + (" (export with --rgb-input to give the grayscale model an RGB front end)" if channels == 1 else "")
             ] if problems else []
    return out, info, notes


_METADATA_KINDS = {"regression": "regression", "landmarks": "regression", "embedding": "embedding"}
_DESCRIPTIONS = {"regression": "Regression values", "landmarks": "Landmark coordinates", "embedding": "Embedding"}


def _outputs(loaded, opts: PhoneOptions) -> list:
    from edgeconv.verify.kinds import infer_outputs

    return list(opts.outputs) or infer_outputs(loaded.model, labels=len(opts.labels) if opts.labels else None)


def _output_specs(data: bytes, loaded, opts: PhoneOptions) -> list:
    """One ``TFLITE_METADATA`` output entry per output tensor of the file, in the file's order (the converter's, not
    Keras'), each found by name through the file's signature: its name, what it is, its labels (the class-score
    output only) and its kind."""
    from edgeconv.runtime.runners import LiteRTRunner, match_outputs
    from edgeconv.tflite import android_metadata as am

    outputs = _outputs(loaded, opts)
    file_names = LiteRTRunner(data, xnnpack=False).file_output_names
    where = match_outputs(file_names, [o.name for o in outputs], f"{loaded.name}.tflite")  # file -> Keras index
    specs = []
    for k in where:
        o = outputs[k]
        if o.is_scores:
            kind = "probabilities" if o.source == "softmax" else "logits"
            desc = f"{'Probabilities' if kind == 'probabilities' else 'Scores'} of the {o.size} classes"
        else:
            kind, desc = _METADATA_KINDS[o.kind], f"{_DESCRIPTIONS[o.kind]} ({o.size} values)"
        specs.append(am.OutputSpec(name=o.name, description=desc, kind=kind,
                                   labels=tuple(opts.labels) if opts.labels and o.is_scores else None))
    return specs


def _metadata(precision: str, details: dict, loaded, opts: PhoneOptions, layout: str) -> dict:
    """What every artifact embeds (:func:`edgeconv.pipeline.metadata.build_metadata`), from its io details."""
    from edgeconv.pipeline.metadata import build_metadata

    pre = loaded.preprocessing
    meta = build_metadata(name=loaded.name, version=opts.model_version, precision=precision,
                          preprocessing=pre.to_dict(), input_range=pre.input_range, labels=opts.labels,
                          inputs=details["inputs"], outputs=details["outputs"], target=opts.target,
                          extra={"output_kinds": {o.name: o.kind for o in _outputs(loaded, opts)}})
    meta["input"]["layout"] = layout.upper()
    # the (H, W) the file was traced at; open_size: the Keras model takes any size and --input-size chose this one
    meta["input"]["size"] = [int(s) for s in loaded.input_shape[:2]]
    meta["input"]["open_size"] = loaded.open_input_shape is not None
    return meta


def finish_onnx(precision: str, data: bytes, loaded, layout: str, opts: PhoneOptions
                ) -> tuple[bytes, dict, list[str]]:
    """Embed the same metadata as :func:`finish_tflite` into an .onnx (``metadata_props``) -> (bytes, ArtifactRecord
    fields, warnings)."""
    from edgeconv.onnx.introspect import onnx_details
    from edgeconv.pipeline.metadata import embed_onnx_metadata

    meta = _metadata(precision, onnx_details(data, layout), loaded, opts, layout)
    return embed_onnx_metadata(data, meta), {"metadata": {"embedded": True, "labels": len(opts.labels or [])}}, []
