"""How a zoo model expects its input: ``model_input = (rgb_pixel_0_255 * scale - mean) / std``.

The pipeline (calibration, validation) turns real RGB images in [0, 255] into model inputs with exactly this rule,
so calibration and validation see the same distribution the model was (or would be) trained on.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np


@dataclass(frozen=True)
class Preprocessing:
    """Pixel -> model-input mapping.

    ``name`` is a short label for reports; ``scale``, ``mean`` and ``std`` are per channel (a 1-tuple broadcasts);
    ``bgr`` flips the channel order (Caffe-style models) before mean/std are applied.
    """

    name: str = "raw"
    scale: float = 1.0
    mean: tuple[float, ...] = (0.0,)
    std: tuple[float, ...] = (1.0,)
    bgr: bool = False

    def apply(self, pixels: np.ndarray) -> np.ndarray:
        """Map RGB pixels in [0, 255] (N, H, W, C) to float32 model inputs."""
        x = np.asarray(pixels, dtype=np.float32)
        if self.bgr:
            x = x[..., ::-1]
        x = x * np.float32(self.scale)
        x = (x - np.asarray(self.mean, np.float32)) / np.asarray(self.std, np.float32)
        return x.astype(np.float32, copy=False)

    @property
    def input_range(self) -> tuple[float, float]:
        """The (min, max) model input that pixels 0..255 map to, over all channels."""
        lo = self.apply(np.zeros((1, 1, 1, max(len(self.mean), len(self.std), 3)), np.float32))
        hi = self.apply(np.full((1, 1, 1, max(len(self.mean), len(self.std), 3)), 255.0, np.float32))
        return float(min(lo.min(), hi.min())), float(max(lo.max(), hi.max()))

    def to_dict(self) -> dict:
        d = asdict(self)
        d["mean"], d["std"] = list(self.mean), list(self.std)
        d["input_range"] = list(self.input_range)
        return d

    @classmethod
    def from_dict(cls, d: dict) -> "Preprocessing":
        return cls(name=d.get("name", "custom"), scale=float(d.get("scale", 1.0)),
                   mean=tuple(float(v) for v in d.get("mean", (0.0,))),
                   std=tuple(float(v) for v in d.get("std", (1.0,))), bgr=bool(d.get("bgr", False)))


# The conventions used by the zoo (and by keras.applications' preprocess_input modes).
RAW_0_255 = Preprocessing("raw_0_255")  # the model rescales inside (a Rescaling layer)
UNIT = Preprocessing("unit_0_1", scale=1 / 255.0)
MINUS1_1 = Preprocessing("tf_-1_1", scale=1 / 127.5, mean=(1.0,))  # keras 'tf' mode
TORCH = Preprocessing("torch_imagenet", scale=1 / 255.0, mean=(0.485, 0.456, 0.406), std=(0.229, 0.224, 0.225))
CAFFE = Preprocessing("caffe_bgr", mean=(103.939, 116.779, 123.68), bgr=True)  # keras 'caffe' mode
