"""BatchNorm statistics re-estimated from data, for zoo models that have no trained weights.

A freshly built network keeps BatchNormalization's moving statistics at mean 0 / variance 1, which matches nothing:
in a random MobileNetV3-Small the activations shrink from ~58 at the input to ~1e-10 at the logits, every input gives
the same softmax, and float16 underflows. Nothing about exporting such a model can be checked. Setting each BN's
moving mean/variance to the statistics of its own input on real images (BN re-estimation, the step used after
pruning or quantization-aware training) makes every BN output ~unit variance, so activations keep a realistic scale
through the whole depth and the output depends on the input. The weights stay random; only the 2 statistics per
channel change.

How: one forward pass in training mode with every BN's momentum set to 0 (moving statistics := batch statistics)
and dropout off. In training mode each BN normalizes with the batch statistics of its own input, which afterwards
equal the moving statistics inference uses, so inference on the same batch reproduces that pass exactly.
"""
from __future__ import annotations

import numpy as np

__all__ = ["estimate_batchnorm_statistics", "batchnorm_layers"]


def _all_layers(model):
    seen, stack = [], [model]
    while stack:
        layer = stack.pop()
        if any(layer is s for s in seen):
            continue
        seen.append(layer)
        stack.extend(getattr(layer, "_layers", None) or getattr(layer, "layers", None) or [])
    return seen


def batchnorm_layers(model) -> list:
    import keras

    return [la for la in _all_layers(model) if isinstance(la, keras.layers.BatchNormalization)]


def estimate_batchnorm_statistics(model, x: np.ndarray, max_samples: int = 64) -> int:
    """Set every BatchNormalization's moving mean/variance from ``x`` (model inputs, already preprocessed).

    Uses the first ``max_samples`` inputs in one batch. Returns the number of BN layers updated (0: nothing to do).
    """
    import keras

    bns = batchnorm_layers(model)
    if not bns:
        return 0
    x = np.asarray(x[:max_samples], np.float32)
    if len(x) < 2:
        raise ValueError("estimating BatchNorm statistics needs at least 2 inputs")
    drops = [la for la in _all_layers(model) if isinstance(la, keras.layers.Dropout)]
    saved_m = [bn.momentum for bn in bns]
    saved_r = [d.rate for d in drops]
    try:
        for bn in bns:
            bn.momentum = 0.0
        for d in drops:
            d.rate = 0.0
        model(x, training=True)
    finally:
        for bn, m in zip(bns, saved_m):
            bn.momentum = m
        for d, r in zip(drops, saved_r):
            d.rate = r
    return len(bns)
