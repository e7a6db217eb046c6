"""Calibration and validation data: the embedded default photo set, image folders and .npy/.npz arrays.

Every loader returns :class:`Samples` (pixels 0..255 or already-preprocessed model inputs); turning pixels into
model inputs is :func:`edgeconv.pipeline.inputs.model_inputs`' job, the same way for calibration and validation.
"""
from .embedded import EMBEDDED_SOURCE, default_samples
from .imaging import IMAGE_SUFFIXES
from .load import count_samples, load_samples
from .samples import SPLITS, CalibrationError, Samples

__all__ = ["load_samples", "count_samples", "default_samples", "Samples", "CalibrationError", "EMBEDDED_SOURCE", "IMAGE_SUFFIXES",
           "SPLITS"]
