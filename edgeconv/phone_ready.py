"""The last export step for every .tflite: make it fast on its device class and self-describing.

- ``--target cpu|gpu|npu`` picks sensible defaults for a device class (:data:`TARGETS`, :func:`apply_target`).
- int8 files get :func:`edgeconv.tflite_rewrite.decompose_hard_swish` (XNNPACK runs no int8 HARD_SWISH), kept only
  when it matches the converter's output on calibration inputs (then validated against Keras as every artifact).
- every file gets the metadata of :mod:`edgeconv.metadata` embedded (model name / version, normalization, input
  range, I/O quantization, labels, edgeconv version).
"""
from __future__ import annotations

from dataclasses import dataclass

from .errors import UsageError

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


def apply_target(target: str | None, precisions, io_type: str, rewrite: bool):
    """-> (precisions, io_type, rewrite) for ``target``; a user option that contradicts the target is an error."""
    if target is None:
        return list(precisions), io_type, rewrite
    if target not in TARGETS:
        raise UsageError(f"unknown target {target!r}; known: {', '.join(TARGETS)}")
    t = TARGETS[target]
    if t.io_type is not None and io_type != t.io_type:
        raise UsageError(f"--target {target} needs {t.io_type} I/O (full int8); drop --io {io_type}")
    keys = list(precisions) + [k for k in t.adds if k not in precisions]
    return keys, io_type, rewrite and t.rewrite


REWRITE_MIN_TOP1 = 0.98  # agreement with the converter's own int8 output on calibration inputs
REWRITE_CHECK_SAMPLES = 16


def finish_tflite(precision: str, data: bytes, extra: dict, loaded, calib_x, opts: PhoneOptions,
                  warnings: list) -> tuple[bytes, dict]:
    """Rewrite (int8) and embed metadata into one converted .tflite -> (bytes, extra for the manifest)."""
    from .manifest import tflite_details
    from .metadata import build_metadata, embed_metadata

    extra = dict(extra)
    if precision == "int8" and opts.rewrite:
        from .tflite_rewrite import check_parity, decompose_hard_swish

        res = decompose_hard_swish(data)
        if res.rewritten:
            parity = check_parity(data, res.model_bytes, calib_x[:REWRITE_CHECK_SAMPLES]) \
                if calib_x is not None and len(calib_x) else None
            if parity is None or parity["top1_agreement"] >= REWRITE_MIN_TOP1:
                data = res.model_bytes
                extra["tflite_rewrites"] = {**res.to_dict(), "parity_vs_converter": parity}
            else:
                warnings.append(f"int8 h-swish decomposition kept out: top-1 agreement with the converter's "
                                f"output {parity['top1_agreement']:.3f} < {REWRITE_MIN_TOP1}")
    if opts.target == "gpu" and precision in ("fp16", "fp32"):
        from .inspect import gpu_compatibility

        gpu = gpu_compatibility(data)
        extra["gpu_compatible"] = gpu["compatible"]
        if not gpu["compatible"]:
            warnings.append(f"{precision}: TF's analyzer says the GPU delegate cannot run every op: "
                            f"{'; '.join(gpu['issues'][:3])}")
    details = tflite_details(data)
    pre = loaded.preprocessing
    meta = build_metadata(name=loaded.name, version=opts.model_version, precision=precision,
                          preprocessing=pre.to_dict(), input_range=pre.input_range, labels=opts.labels,
                          inputs=details["inputs"], outputs=details["outputs"], target=opts.target)
    extra["metadata"] = {"embedded": True, "labels": len(opts.labels or [])}
    return embed_metadata(data, meta), extra
