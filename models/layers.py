"""Building blocks shared by the zoo's families, in one place (a family never imports another family's module).

- :func:`keras_application`: a keras.applications builder with the zoo's conventions (softmax top; random weights,
  or keras' own ImageNet weights).
- :func:`check_positive`, :func:`check_dropout`, :func:`scaled`: the builders' argument checks and width scaling,
  one clear ``ValueError`` per mistake (the registry turns it into a usage error).
- :func:`torch_conv`: a bias-free convolution with torch's symmetric ``kernel_size // 2`` padding.
- :class:`AdaptiveAveragePooling2D`, :func:`torchvision_classifier`: torchvision's adaptive pool + classifier head.
- :func:`ceil_mode_max_pool`: torch's ``MaxPool2d(ceil_mode=True)`` with keras paddings.
"""
from __future__ import annotations

import math

import keras
from keras import layers, ops

__all__ = ["keras_application", "check_positive", "check_dropout", "scaled", "torch_conv",
           "AdaptiveAveragePooling2D", "torchvision_classifier", "ceil_mode_max_pool"]


def keras_application(app, input_shape, classes: int, name: str | None, weights: str | None = None, **kwargs):
    """``app`` (a keras.applications builder) with a softmax top of ``classes`` classes and random weights, or with
    ``weights="imagenet"`` keras' own pretrained weights (its download and cache; the registry's ``pretrained``
    entry has checked the configuration first). keras keeps its own model name (e.g. "mobilenet_1.00_224") when
    ``name`` is None."""
    if name is not None:
        kwargs["name"] = name
    if weights not in (None, "imagenet"):
        raise ValueError(f"weights must be None or 'imagenet', not {weights!r}")
    return app(include_top=True, weights=weights, input_shape=tuple(input_shape), classes=classes,
               classifier_activation="softmax", **kwargs)


def check_positive(what: str, value) -> float:
    """A positive real number (not a bool), e.g. a width multiplier."""
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not value > 0:
        raise ValueError(f"{what} must be a positive number, got {value!r}")
    return float(value)


def check_dropout(dropout) -> float:
    if isinstance(dropout, bool) or not isinstance(dropout, (int, float)) or not 0.0 <= dropout < 1.0:
        raise ValueError(f"dropout must be in [0, 1), got {dropout!r}")
    return float(dropout)


def scaled(filters: int, width_multiplier: float) -> int:
    """``filters`` scaled by ``width_multiplier``, rounded, at least 1."""
    return max(1, int(round(filters * width_multiplier)))


def torch_conv(x, filters: int, kernel_size: int, strides: int, name: str, groups: int = 1):
    """A bias-free convolution ``{name}_conv`` with torch-style symmetric padding ``kernel_size // 2``: keras
    ``same`` at stride 1, an explicit ``{name}_pad`` + ``valid`` when strided (TF's ``same`` pads bottom/right only)."""
    pad = kernel_size // 2
    if strides == 1 or pad == 0:
        padding = "same" if pad else "valid"
    else:
        x = layers.ZeroPadding2D(padding=pad, name=name + "_pad")(x)
        padding = "valid"
    return layers.Conv2D(filters, kernel_size, strides=strides, padding=padding, groups=groups, use_bias=False,
                         name=name + "_conv")(x)


@keras.saving.register_keras_serializable(package="edgeconv")
class AdaptiveAveragePooling2D(layers.Layer):
    """``torch.nn.AdaptiveAvgPool2d(output_size)`` on NHWC inputs with a static height and width.

    Output bin ``i`` of an axis of size ``n`` averages rows ``floor(i * n / out)`` .. ``ceil((i + 1) * n / out) - 1``
    (torch's rule: bins may overlap, and a smaller input is repeated). Sizes that already match pass through, sizes
    that are multiples of the output become one ``average_pool``, the rest become slices, means and a concatenation
    per axis: plain ops that TFLite and ONNX convert.
    """

    def __init__(self, output_size, **kwargs):
        super().__init__(**kwargs)
        size = (output_size, output_size) if isinstance(output_size, int) else tuple(output_size)
        if len(size) != 2 or any(isinstance(s, bool) or not isinstance(s, int) or s < 1 for s in size):
            raise ValueError(f"output_size must be a positive integer or a pair of them, got {output_size!r}")
        self.output_size = size

    def compute_output_shape(self, input_shape):
        return (input_shape[0], *self.output_size, input_shape[3])

    def call(self, x):
        height, width = x.shape[1], x.shape[2]
        if height is None or width is None:
            raise ValueError(f"{self.name} needs a static height and width, got {tuple(x.shape)}")
        out_h, out_w = self.output_size
        if height % out_h == 0 and width % out_w == 0:
            if (height, width) == self.output_size:
                return x
            pool = (height // out_h, width // out_w)
            return ops.average_pool(x, pool, strides=pool, padding="valid")
        return _adaptive_mean(_adaptive_mean(x, 1, out_h), 2, out_w)

    def get_config(self):
        return {**super().get_config(), "output_size": list(self.output_size)}


def _adaptive_mean(x, axis: int, out: int):
    """Adaptive average along one spatial ``axis`` (1 or 2) to ``out`` bins, torch's bin boundaries."""
    size = x.shape[axis]
    if size == out:
        return x
    bins = []
    for i in range(out):
        start, end = (i * size) // out, math.ceil((i + 1) * size / out)
        part = x[:, start:end] if axis == 1 else x[:, :, start:end]
        bins.append(part if end - start == 1 else ops.mean(part, axis=axis, keepdims=True))
    return ops.concatenate(bins, axis=axis)


def torchvision_classifier(x, pooled_size: int, units: int, classes: int, dropout: float, dropout_first: bool):
    """Adaptive average pool to ``pooled_size`` -> flatten -> two ReLU dense layers -> softmax dense.

    torchvision puts each dropout before its linear layer in AlexNet (``dropout_first``) and after the ReLU in VGG.
    """
    check_dropout(dropout)
    x = AdaptiveAveragePooling2D(pooled_size, name="avg_pool")(x)
    x = layers.Flatten(name="flatten")(x)
    for i in (1, 2):
        if dropout_first:
            x = layers.Dropout(dropout, name=f"dropout{i}")(x)
        x = layers.Dense(units, activation="relu", name=f"fc{i}")(x)
        if not dropout_first:
            x = layers.Dropout(dropout, name=f"dropout{i}")(x)
    return layers.Dense(classes, activation="softmax", name="predictions")(x)


def _ceil_mode_padding(size: int, pool: int, stride: int) -> str:
    """The keras padding whose windows equal torch's ``MaxPool2d(pool, stride, ceil_mode=True)`` on ``size``."""
    out = math.ceil((size - pool) / stride) + 1
    overhang = (out - 1) * stride + pool - size  # rows the last ceil-mode window reaches past the input
    if overhang == 0:
        return "valid"
    # TF 'same': ceil(size / stride) outputs, padding max(...) split with the smaller half on top (here: none).
    same_total = max((math.ceil(size / stride) - 1) * stride + pool - size, 0)
    if math.ceil(size / stride) == out and same_total == overhang and same_total // 2 == 0:
        return "same"
    raise ValueError(f"no keras padding reproduces ceil-mode max pooling ({pool}x{pool}/{stride}) on size {size}")


def ceil_mode_max_pool(x, pool, stride, name):
    """torch ``MaxPool2d(pool, stride, ceil_mode=True)`` (no padding) on the static height and width."""
    height, width = x.shape[1], x.shape[2]
    modes = {_ceil_mode_padding(height, pool, stride), _ceil_mode_padding(width, pool, stride)}
    if len(modes) == 2:  # e.g. even height, odd width: pad the one side explicitly (inputs are ReLU outputs >= 0)
        pads = [(0, (math.ceil((s - pool) / stride)) * stride + pool - s) for s in (height, width)]
        x = layers.ZeroPadding2D(padding=tuple(pads), name=name + "_pad")(x)
        modes = {"valid"}
    return layers.MaxPooling2D(pool, strides=stride, padding=modes.pop(), name=name)(x)
