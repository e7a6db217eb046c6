"""GoogLeNet (Inception v1, Szegedy et al. 2014), written in the keras.applications idiom after torchvision's
``googlenet`` (``aux_logits=False``, ``transform_input=False``).

Layout, as torchvision builds it: ``conv1`` 7x7/2 (64) -> max pool -> ``conv2`` 1x1 (64) -> ``conv3`` 3x3 (192) ->
max pool -> inception 3a, 3b -> max pool -> 4a .. 4e -> 2x2 max pool -> 5a, 5b -> global average pool -> dropout
0.2 -> fully connected. Every convolution is torchvision's ``BasicConv2d``: conv without bias, BatchNorm (eps 1e-3)
and ReLU. An inception block has four branches: 1x1 | 1x1 -> 3x3 | 1x1 -> 3x3 | 3x3/1 max pool -> 1x1. The third
branch is a 3x3 convolution where the paper has a 5x5: torchvision keeps this known deviation so that its ported
weights load, and the zoo copies torchvision (the reference count).

torchvision's max pools use ``ceil_mode=True``. Keras has no ceil mode, so ``ceil_mode_max_pool`` (:mod:`edgeconv.models.layers`) picks, from the static
shape, the padding that gives the very same windows: ``valid`` where the windows tile the input exactly, ``same``
where TF's padding (all of it at the bottom/right) adds exactly the one overhanging row/column the ceil mode
covers. Layer names: ``conv1_conv`` / ``conv1_bn`` / ``conv1_relu``, ``pool1`` .. ``pool4``,
``inception_3a_branch3_conv2`` (keras 3 does not allow ``/`` in layer names), ``inception_3a`` (the concat),
``avg_pool``, ``dropout``, ``predictions``.
"""
from __future__ import annotations

import keras
from keras import layers

from ..layers import ceil_mode_max_pool, check_dropout, check_positive, scaled, torch_conv
from ..preprocessing import TORCH
from ..registry import register_model

BN_EPSILON = 1e-3  # torchvision BasicConv2d: BatchNorm2d(eps=0.001)
BN_MOMENTUM = 0.9  # torch momentum 0.1

# name: (1x1, 3x3 reduce, 3x3, "5x5" reduce, "5x5" (a 3x3 in torchvision), pool proj) -- the paper's table 1
INCEPTION_BLOCKS = {
    "3a": (64, 96, 128, 16, 32, 32),
    "3b": (128, 128, 192, 32, 96, 64),
    "4a": (192, 96, 208, 16, 48, 64),
    "4b": (160, 112, 224, 24, 64, 64),
    "4c": (128, 128, 256, 24, 64, 64),
    "4d": (112, 144, 288, 32, 64, 64),
    "4e": (256, 160, 320, 32, 128, 128),
    "5a": (256, 160, 320, 32, 128, 128),
    "5b": (384, 192, 384, 48, 128, 128),
}


def basic_conv(x, filters, kernel_size, name, strides=1):
    """torchvision ``BasicConv2d``: conv (no bias, torch padding ``kernel_size // 2``) -> BN (eps 1e-3) -> ReLU."""
    x = torch_conv(x, filters, kernel_size, strides, name)
    x = layers.BatchNormalization(epsilon=BN_EPSILON, momentum=BN_MOMENTUM, name=name + "_bn")(x)
    return layers.Activation("relu", name=name + "_relu")(x)


def inception_block(x, filters, name):
    """Four branches concatenated on channels: 1x1 | 1x1->3x3 | 1x1->3x3 | 3x3/1 max pool->1x1."""
    b1x1, b3x3_reduce, b3x3, b5x5_reduce, b5x5, pool_proj = filters
    branch1 = basic_conv(x, b1x1, 1, name=f"{name}_branch1")
    branch2 = basic_conv(x, b3x3_reduce, 1, name=f"{name}_branch2_1")
    branch2 = basic_conv(branch2, b3x3, 3, name=f"{name}_branch2_2")
    branch3 = basic_conv(x, b5x5_reduce, 1, name=f"{name}_branch3_1")
    branch3 = basic_conv(branch3, b5x5, 3, name=f"{name}_branch3_2")  # 3x3, as torchvision (paper: 5x5)
    # torch MaxPool2d(3, 1, padding=1, ceil_mode=True) == keras 'same' (padding ignored by the max, size kept)
    branch4 = layers.MaxPooling2D(3, strides=1, padding="same", name=f"{name}_branch4_pool")(x)
    branch4 = basic_conv(branch4, pool_proj, 1, name=f"{name}_branch4")
    return layers.Concatenate(axis=-1, name=name)([branch1, branch2, branch3, branch4])


@register_model(
    family="googlenet", input_shape=(224, 224, 3), preprocessing=TORCH, params=6_639_464,
    reference_params=6_624_904, reference_source="torchvision googlenet, aux_logits=False (GoogLeNet paper: about 6.8 M)",
    activations=(), param_tolerance=0.0022, min_input_size=32, width_kwargs=("width_multiplier",),
    small_kwargs={"width_multiplier": 0.125}, reference_counts="trainable",
)
def googlenet(input_shape=(224, 224, 3), classes=1000, width_multiplier=1.0, dropout=0.2, name="googlenet"):
    """GoogLeNet / Inception v1 without the auxiliary heads; trainable params identical to torchvision's googlenet.

    ``width_multiplier`` scales every convolution's filters (rounded, at least 1). Inputs use torchvision's
    ImageNet mean/std. Only ReLU activations.

    Parameter count: the trainable params equal torchvision's 6,624,904 exactly (``reference_counts='trainable'``);
    keras' ``count_params()`` (6,639,464) adds the batch-norm moving mean and variance (2 x 7,280 BN channels),
    which torchvision keeps as buffers outside ``parameters()``.
    """
    width_multiplier = check_positive("width_multiplier", width_multiplier)
    check_dropout(dropout)

    def f(filters: int) -> int:
        return scaled(filters, width_multiplier)

    inputs = keras.Input(shape=tuple(input_shape), name="input")
    x = basic_conv(inputs, f(64), 7, name="conv1", strides=2)
    x = ceil_mode_max_pool(x, 3, 2, name="pool1")
    x = basic_conv(x, f(64), 1, name="conv2")
    x = basic_conv(x, f(192), 3, name="conv3")
    x = ceil_mode_max_pool(x, 3, 2, name="pool2")
    for block, filters in INCEPTION_BLOCKS.items():
        x = inception_block(x, [f(c) for c in filters], name=f"inception_{block}")
        if block == "3b":
            x = ceil_mode_max_pool(x, 3, 2, name="pool3")
        elif block == "4e":
            x = ceil_mode_max_pool(x, 2, 2, name="pool4")
    x = layers.GlobalAveragePooling2D(name="avg_pool")(x)
    x = layers.Dropout(dropout, name="dropout")(x)
    x = layers.Dense(classes, activation="softmax", name="predictions")(x)
    return keras.Model(inputs, x, name=name)
