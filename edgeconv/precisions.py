"""The formats table: every artifact kind edgeconv writes, in one place (CLI flags, file names, manifest, tolerances,
and the converter that makes it).
"""
from __future__ import annotations

from dataclasses import dataclass

from edgeconv.errors import UsageError
from edgeconv.options import Format, PrecisionName
from edgeconv.pipeline.convert import (Converter, convert_onnx_artifact, convert_onnx_int8_artifact,
                                       convert_tflite_artifact)


@dataclass(frozen=True)
class Precision:
    key: str  # unique id, also the CLI flag (--fp16, --onnx-int8)
    format: Format
    precision: PrecisionName  # manifest "precision"
    suffix: str  # file name suffix after the model name
    needs_calibration: bool
    quantized_activations: bool  # judged by SQNR / top-k rather than atol
    help: str
    convert: Converter

    @property
    def flag(self) -> str:
        return "--" + self.key.replace("_", "-")

    def filename(self, model_name: str) -> str:
        return f"{model_name}{self.suffix}"


PRECISIONS: dict[str, Precision] = {p.key: p for p in [
    Precision("fp32", "tflite", "fp32", "_fp32.tflite", False, False,
              "float32 TFLite (always written as the baseline)", convert_tflite_artifact),
    Precision("fp16", "tflite", "fp16", "_fp16.tflite", False, False, "float16 weights, ~1/2 size",
              convert_tflite_artifact),
    Precision("dynamic", "tflite", "dynamic", "_dynamic.tflite", False, False,
              "dynamic-range: int8 weights, float activations, ~1/4 size", convert_tflite_artifact),
    Precision("int8", "tflite", "int8", "_int8.tflite", True, True,
              "full integer int8 (int8 input/output unless --io float), calibrated", convert_tflite_artifact),
    Precision("int16x8", "tflite", "int16x8", "_int16x8.tflite", True, True,
              "int16 activations, int8 weights, calibrated", convert_tflite_artifact),
    Precision("onnx", "onnx", "fp32", ".onnx", False, False, "float32 ONNX through tf2onnx", convert_onnx_artifact),
    Precision("onnx_int8", "onnx", "int8", "_int8.onnx", True, True,
              "static int8 ONNX (QDQ, per-channel), onnxruntime.quantization, calibrated", convert_onnx_int8_artifact),
]}

ALL_KEYS = tuple(PRECISIONS)


def resolve(keys) -> list[Precision]:
    """Selected keys -> Precision list in table order; fp32 TFLite is always included as the float baseline."""
    keys = set(keys) | {"fp32"}
    unknown = keys - set(PRECISIONS)
    if unknown:
        raise UsageError(f"unknown precision(s) {sorted(unknown)}; known: {', '.join(PRECISIONS)}")
    return [p for k, p in PRECISIONS.items() if k in keys]
