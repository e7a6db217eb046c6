"""AlexNet (Krizhevsky et al. 2012), torchvision's single-tower variant, in the keras.applications idiom.

Layout, as torchvision's ``alexnet``: ``conv1`` 64@11x11/4 (padding 2) -> ``pool1`` 3x3/2 -> ``conv2`` 192@5x5 ->
``pool2`` -> ``conv3`` 384@3x3 -> ``conv4`` 256@3x3 -> ``conv5`` 256@3x3 -> ``pool5`` -> ``avg_pool`` (adaptive,
6x6) -> ``flatten`` -> ``dropout1`` -> ``fc1`` 4096 -> ``dropout2`` -> ``fc2`` 4096 -> ``predictions``. Every
convolution has a bias and ReLU; max pools are torch's floor mode (keras ``valid``); padded convolutions keep the
size (keras ``same`` equals torch's symmetric padding for odd kernels at stride 1).

:class:`edgeconv.models.layers.AdaptiveAveragePooling2D` is torch's ``AdaptiveAvgPool2d`` for static spatial sizes; VGG-11/13 use it too.
At the default input (224) it is the identity, as in torchvision.
"""
from __future__ import annotations

import keras
from keras import layers

from ..layers import check_positive, scaled, torchvision_classifier
from ..preprocessing import TORCH
from ..registry import register_model


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
    width_multiplier = check_positive("width_multiplier", width_multiplier)

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
