"""AlexNet (Krizhevsky et al. 2012), torchvision's single-tower variant, in the keras.applications idiom.

Layout, as torchvision's ``alexnet``: ``conv1`` 64@11x11/4 (padding 2) -> ``pool1`` 3x3/2 -> ``conv2`` 192@5x5 ->
``pool2`` -> ``conv3`` 384@3x3 -> ``conv4`` 256@3x3 -> ``conv5`` 256@3x3 -> ``pool5`` -> ``avg_pool`` (adaptive,
6x6) -> ``flatten`` -> ``dropout1`` -> ``fc1`` 4096 -> ``dropout2`` -> ``fc2`` 4096 -> ``predictions``. Every
convolution has a bias and ReLU; max pools are torch's floor mode (keras ``valid``); padded convolutions keep the
size (keras ``same`` equals torch's symmetric padding for odd kernels at stride 1).

:class:`AdaptiveAveragePooling2D` is torch's ``AdaptiveAvgPool2d`` for static spatial sizes; VGG-11/13 use it too.
At the default input (224) it is the identity, as in torchvision.
"""
from __future__ import annotations

import math

import keras
from keras import layers, ops

from ..preprocessing import TORCH
from ..registry import register_model


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


def check_width_multiplier(width_multiplier) -> float:
    if isinstance(width_multiplier, bool) or not isinstance(width_multiplier, (int, float)) \
            or not width_multiplier > 0:
        raise ValueError(f"width_multiplier must be a positive number, got {width_multiplier!r}")
    return float(width_multiplier)


def scaled(filters: int, width_multiplier: float) -> int:
    return max(1, int(round(filters * width_multiplier)))


def torchvision_classifier(x, pooled_size: int, units: int, classes: int, dropout: float, dropout_first: bool):
    """Adaptive average pool to ``pooled_size`` -> flatten -> two ReLU dense layers -> softmax dense.

    torchvision puts each dropout before its linear layer in AlexNet (``dropout_first``) and after the ReLU in VGG.
    """
    if not 0.0 <= dropout < 1.0:
        raise ValueError(f"dropout must be in [0, 1), got {dropout!r}")
    x = AdaptiveAveragePooling2D(pooled_size, name="avg_pool")(x)
    x = layers.Flatten(name="flatten")(x)
    for i in (1, 2):
        if dropout_first:
            x = layers.Dropout(dropout, name=f"dropout{i}")(x)
        x = layers.Dense(units, activation="relu", name=f"fc{i}")(x)
        if not dropout_first:
            x = layers.Dropout(dropout, name=f"dropout{i}")(x)
    return layers.Dense(classes, activation="softmax", name="predictions")(x)


@register_model(
    family="alexnet", input_shape=(224, 224, 3), preprocessing=TORCH, params=61_100_840,
    reference_params=61_100_840, reference_source="torchvision alexnet (AlexNet paper: about 60 M, two towers)",
    activations=(), param_tolerance=0.0, min_input_size=63, width_kwargs=("width_multiplier",),
    small_kwargs={"width_multiplier": 0.125},
)
def alexnet(input_shape=(224, 224, 3), classes=1000, width_multiplier=1.0, dropout=0.5, name="alexnet"):
    """AlexNet, torchvision's single-tower layout; params identical to torchvision's alexnet (61,100,840).

    ``width_multiplier`` scales every convolution and the two 4096-unit dense layers (rounded, at least 1). Inputs
    use torchvision's ImageNet mean/std. Only ReLU activations. The smallest input is 63x63 (``pool5`` needs a 3x3
    map); the adaptive 6x6 pool keeps ``fc1`` at ``256 * 6 * 6`` inputs for every input size.
    """
    width_multiplier = check_width_multiplier(width_multiplier)

    def f(filters: int) -> int:
        return scaled(filters, width_multiplier)

    inputs = keras.Input(shape=tuple(input_shape), name="input")
    x = layers.ZeroPadding2D(padding=2, name="conv1_pad")(inputs)
    x = layers.Conv2D(f(64), 11, strides=4, activation="relu", name="conv1")(x)
    x = layers.MaxPooling2D(3, strides=2, name="pool1")(x)
    x = layers.Conv2D(f(192), 5, padding="same", activation="relu", name="conv2")(x)
    x = layers.MaxPooling2D(3, strides=2, name="pool2")(x)
    x = layers.Conv2D(f(384), 3, padding="same", activation="relu", name="conv3")(x)
    x = layers.Conv2D(f(256), 3, padding="same", activation="relu", name="conv4")(x)
    x = layers.Conv2D(f(256), 3, padding="same", activation="relu", name="conv5")(x)
    x = layers.MaxPooling2D(3, strides=2, name="pool5")(x)
    x = torchvision_classifier(x, 6, f(4096), classes, dropout, dropout_first=True)
    return keras.Model(inputs, x, name=name)
