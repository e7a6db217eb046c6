"""SqueezeNet v1.0 (Iandola et al. 2016), written in the keras.applications idiom after torchvision's
``squeezenet1_0``.

Layout: ``conv1`` 96@7x7/2 -> ``pool1`` 3x3/2 -> fire2, fire3, fire4 -> ``pool4`` -> fire5 .. fire8 -> ``pool8`` ->
fire9 -> ``dropout`` 0.5 -> ``conv10`` (1x1, ``classes`` filters, ReLU) -> ``avg_pool`` (global) -> softmax. A fire
module squeezes with a 1x1 convolution and expands with a 1x1 and a 3x3 convolution side by side, concatenated
(``fire2_squeeze``, ``fire2_expand1x1``, ``fire2_expand3x3``, ``fire2``). Every convolution has a bias and ReLU. The
max pools are torch's ``ceil_mode=True`` (:func:`edgeconv.models.layers.ceil_mode_max_pool` reproduces them with keras paddings). No
export-sensitive activation.
"""
from __future__ import annotations

import keras
from keras import layers

from ..layers import ceil_mode_max_pool
from ..preprocessing import TORCH
from ..registry import register_model

# name: (squeeze, expand 1x1, expand 3x3) -- the paper's table 1, v1.0
FIRE_MODULES = {
    "fire2": (16, 64, 64),
    "fire3": (16, 64, 64),
    "fire4": (32, 128, 128),
    "fire5": (32, 128, 128),
    "fire6": (48, 192, 192),
    "fire7": (48, 192, 192),
    "fire8": (64, 256, 256),
    "fire9": (64, 256, 256),
}


def fire_module(x, squeeze, expand1x1, expand3x3, name):
    """1x1 squeeze -> (1x1 expand | 3x3 expand), concatenated on channels; ReLU after every convolution."""
    s = layers.Conv2D(squeeze, 1, activation="relu", name=name + "_squeeze")(x)
    e1 = layers.Conv2D(expand1x1, 1, activation="relu", name=name + "_expand1x1")(s)
    e3 = layers.Conv2D(expand3x3, 3, padding="same", activation="relu", name=name + "_expand3x3")(s)
    return layers.Concatenate(axis=-1, name=name)([e1, e3])


@register_model(
    family="squeezenet", input_shape=(224, 224, 3), preprocessing=TORCH, params=1_248_424,
    reference_params=1_248_424, reference_source="torchvision squeezenet1_0 (SqueezeNet paper: 1.25 M, v1.0)",
    activations=(), param_tolerance=0.0, min_input_size=32,
)
def squeezenet(input_shape=(224, 224, 3), classes=1000, dropout=0.5, name="squeezenet"):
    """SqueezeNet v1.0; params identical to torchvision's squeezenet1_0. Inputs use torchvision's ImageNet mean/std.

    The classifier is a 1x1 convolution with ReLU followed by global average pooling, as in torchvision; the zoo
    adds the softmax (torchvision returns the pooled logits).
    """
    if not 0.0 <= dropout < 1.0:
        raise ValueError(f"dropout must be in [0, 1), got {dropout!r}")
    inputs = keras.Input(shape=tuple(input_shape), name="input")
    x = layers.Conv2D(96, 7, strides=2, activation="relu", name="conv1")(inputs)
    x = ceil_mode_max_pool(x, 3, 2, name="pool1")
    for block, filters in FIRE_MODULES.items():
        x = fire_module(x, *filters, name=block)
        if block in ("fire4", "fire8"):
            x = ceil_mode_max_pool(x, 3, 2, name="pool" + block[-1])
    x = layers.Dropout(dropout, name="dropout")(x)
    x = layers.Conv2D(classes, 1, activation="relu", name="conv10")(x)
    x = layers.GlobalAveragePooling2D(name="avg_pool")(x)
    x = layers.Activation("softmax", name="predictions")(x)
    return keras.Model(inputs, x, name=name)
