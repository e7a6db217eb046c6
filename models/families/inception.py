"""Inception V3, Inception-ResNet V2 (keras.applications) and Inception V4 (written here in the same idiom).

Inception V4 follows timm's ``inception_v4`` (itself a port of the TF-slim model) block for block: a stem
(``stem_conv1..3``, ``mixed_3a``, ``mixed_4a``, ``mixed_5a``), 4 x Inception-A, Reduction-A (``mixed_6a``),
7 x Inception-B, Reduction-B (``mixed_7a``), 3 x Inception-C, global average pooling and the classifier. Every
convolution is timm's ``ConvNormAct``: conv without bias, BatchNorm (eps 1e-3, affine) and ReLU; ``valid`` padding
where timm pads 0, ``same`` where it pads to keep the size. Average pools are 3x3/1 ``same`` (keras excludes the
padding from the average, like timm's ``count_include_pad=False``).

All three contain only ReLU (no export-sensitive activation) and take inputs in [-1, 1] (Inception preprocessing,
mean = std = 0.5, as the TF-slim/timm Inception V4 weights were trained with). Their stems need inputs of at least
75x75. keras publishes ImageNet weights for Inception V3 and Inception-ResNet V2 (1000 classes at 299x299,
``weights="imagenet"``); Inception V4 has none in keras.
"""
from __future__ import annotations

import keras
from keras import layers

from ..layers import check_positive, keras_application, scaled
from ..preprocessing import MINUS1_1
from ..pretrained import Pretrained
from ..registry import register_model


@register_model(
    family="inception", input_shape=(299, 299, 3), preprocessing=MINUS1_1, params=23_851_784,
    reference_params=23_851_784, reference_source="keras.applications.InceptionV3", activations=(),
    param_tolerance=0.0, min_input_size=75,
    pretrained=Pretrained(file="inception_v3_weights_tf_dim_ordering_tf_kernels.h5", sizes=(299,)),
)
def inception_v3(input_shape=(299, 299, 3), classes=1000, weights=None, name=None):
    """Inception V3 (no auxiliary head), ``keras.applications.InceptionV3``; inputs in [-1, 1]."""
    return keras_application(keras.applications.InceptionV3, input_shape, classes, name, weights)


@register_model(
    family="inception", input_shape=(299, 299, 3), preprocessing=MINUS1_1, params=55_873_736,
    reference_params=55_873_736, reference_source="keras.applications.InceptionResNetV2", activations=(),
    param_tolerance=0.0, min_input_size=75,
    pretrained=Pretrained(file="inception_resnet_v2_weights_tf_dim_ordering_tf_kernels.h5", sizes=(299,)),
)
def inception_resnet_v2(input_shape=(299, 299, 3), classes=1000, weights=None, name=None):
    """Inception-ResNet V2, ``keras.applications.InceptionResNetV2``; inputs in [-1, 1]."""
    return keras_application(keras.applications.InceptionResNetV2, input_shape, classes, name, weights)


# ---------------------------------------------------------------------------------------------------- Inception V4

def conv2d_bn(x, filters, kernel_size, strides=1, padding="same", name=None):
    """Conv (no bias) -> BatchNorm (eps 1e-3, with scale and offset) -> ReLU: timm's ``ConvNormAct``.

    Layers are ``{name}`` (conv), ``{name}_bn`` and ``{name}_ac``, as in keras' ``inception_resnet_v2.conv2d_bn``
    (which, unlike timm, drops the BatchNorm scale).
    """
    x = layers.Conv2D(filters, kernel_size, strides=strides, padding=padding, use_bias=False, name=name)(x)
    x = layers.BatchNormalization(axis=3, epsilon=1e-3, name=f"{name}_bn")(x)
    return layers.Activation("relu", name=f"{name}_ac")(x)


def _stem(x, f):
    x = conv2d_bn(x, f(32), 3, strides=2, padding="valid", name="stem_conv1")
    x = conv2d_bn(x, f(32), 3, padding="valid", name="stem_conv2")
    x = conv2d_bn(x, f(64), 3, name="stem_conv3")
    # mixed_3a: max pool || 3x3/2 conv
    b0 = layers.MaxPooling2D(3, strides=2, name="mixed_3a_pool")(x)
    b1 = conv2d_bn(x, f(96), 3, strides=2, padding="valid", name="mixed_3a_conv")
    x = layers.Concatenate(axis=3, name="mixed_3a")([b0, b1])
    # mixed_4a: 1x1 -> 3x3 || 1x1 -> 1x7 -> 7x1 -> 3x3
    b0 = conv2d_bn(x, f(64), 1, name="mixed_4a_branch0_1")
    b0 = conv2d_bn(b0, f(96), 3, padding="valid", name="mixed_4a_branch0_2")
    b1 = conv2d_bn(x, f(64), 1, name="mixed_4a_branch1_1")
    b1 = conv2d_bn(b1, f(64), (1, 7), name="mixed_4a_branch1_2")
    b1 = conv2d_bn(b1, f(64), (7, 1), name="mixed_4a_branch1_3")
    b1 = conv2d_bn(b1, f(96), 3, padding="valid", name="mixed_4a_branch1_4")
    x = layers.Concatenate(axis=3, name="mixed_4a")([b0, b1])
    # mixed_5a: 3x3/2 conv || max pool
    b0 = conv2d_bn(x, f(192), 3, strides=2, padding="valid", name="mixed_5a_conv")
    b1 = layers.MaxPooling2D(3, strides=2, name="mixed_5a_pool")(x)
    return layers.Concatenate(axis=3, name="mixed_5a")([b0, b1])


def _inception_a(x, f, name):
    b0 = conv2d_bn(x, f(96), 1, name=f"{name}_branch0")
    b1 = conv2d_bn(x, f(64), 1, name=f"{name}_branch1_1")
    b1 = conv2d_bn(b1, f(96), 3, name=f"{name}_branch1_2")
    b2 = conv2d_bn(x, f(64), 1, name=f"{name}_branch2_1")
    b2 = conv2d_bn(b2, f(96), 3, name=f"{name}_branch2_2")
    b2 = conv2d_bn(b2, f(96), 3, name=f"{name}_branch2_3")
    b3 = layers.AveragePooling2D(3, strides=1, padding="same", name=f"{name}_branch3_pool")(x)
    b3 = conv2d_bn(b3, f(96), 1, name=f"{name}_branch3")
    return layers.Concatenate(axis=3, name=name)([b0, b1, b2, b3])


def _reduction_a(x, f, name="mixed_6a"):
    b0 = conv2d_bn(x, f(384), 3, strides=2, padding="valid", name=f"{name}_branch0")
    b1 = conv2d_bn(x, f(192), 1, name=f"{name}_branch1_1")
    b1 = conv2d_bn(b1, f(224), 3, name=f"{name}_branch1_2")
    b1 = conv2d_bn(b1, f(256), 3, strides=2, padding="valid", name=f"{name}_branch1_3")
    b2 = layers.MaxPooling2D(3, strides=2, name=f"{name}_branch2_pool")(x)
    return layers.Concatenate(axis=3, name=name)([b0, b1, b2])


def _inception_b(x, f, name):
    b0 = conv2d_bn(x, f(384), 1, name=f"{name}_branch0")
    b1 = conv2d_bn(x, f(192), 1, name=f"{name}_branch1_1")
    b1 = conv2d_bn(b1, f(224), (1, 7), name=f"{name}_branch1_2")
    b1 = conv2d_bn(b1, f(256), (7, 1), name=f"{name}_branch1_3")
    b2 = conv2d_bn(x, f(192), 1, name=f"{name}_branch2_1")
    b2 = conv2d_bn(b2, f(192), (7, 1), name=f"{name}_branch2_2")
    b2 = conv2d_bn(b2, f(224), (1, 7), name=f"{name}_branch2_3")
    b2 = conv2d_bn(b2, f(224), (7, 1), name=f"{name}_branch2_4")
    b2 = conv2d_bn(b2, f(256), (1, 7), name=f"{name}_branch2_5")
    b3 = layers.AveragePooling2D(3, strides=1, padding="same", name=f"{name}_branch3_pool")(x)
    b3 = conv2d_bn(b3, f(128), 1, name=f"{name}_branch3")
    return layers.Concatenate(axis=3, name=name)([b0, b1, b2, b3])


def _reduction_b(x, f, name="mixed_7a"):
    b0 = conv2d_bn(x, f(192), 1, name=f"{name}_branch0_1")
    b0 = conv2d_bn(b0, f(192), 3, strides=2, padding="valid", name=f"{name}_branch0_2")
    b1 = conv2d_bn(x, f(256), 1, name=f"{name}_branch1_1")
    b1 = conv2d_bn(b1, f(256), (1, 7), name=f"{name}_branch1_2")
    b1 = conv2d_bn(b1, f(320), (7, 1), name=f"{name}_branch1_3")
    b1 = conv2d_bn(b1, f(320), 3, strides=2, padding="valid", name=f"{name}_branch1_4")
    b2 = layers.MaxPooling2D(3, strides=2, name=f"{name}_branch2_pool")(x)
    return layers.Concatenate(axis=3, name=name)([b0, b1, b2])


def _inception_c(x, f, name):
    b0 = conv2d_bn(x, f(256), 1, name=f"{name}_branch0")
    b1 = conv2d_bn(x, f(384), 1, name=f"{name}_branch1_1")
    b1a = conv2d_bn(b1, f(256), (1, 3), name=f"{name}_branch1_2a")
    b1b = conv2d_bn(b1, f(256), (3, 1), name=f"{name}_branch1_2b")
    b1 = layers.Concatenate(axis=3, name=f"{name}_branch1")([b1a, b1b])
    b2 = conv2d_bn(x, f(384), 1, name=f"{name}_branch2_1")
    b2 = conv2d_bn(b2, f(448), (3, 1), name=f"{name}_branch2_2")
    b2 = conv2d_bn(b2, f(512), (1, 3), name=f"{name}_branch2_3")
    b2a = conv2d_bn(b2, f(256), (1, 3), name=f"{name}_branch2_4a")
    b2b = conv2d_bn(b2, f(256), (3, 1), name=f"{name}_branch2_4b")
    b2 = layers.Concatenate(axis=3, name=f"{name}_branch2")([b2a, b2b])
    b3 = layers.AveragePooling2D(3, strides=1, padding="same", name=f"{name}_branch3_pool")(x)
    b3 = conv2d_bn(b3, f(256), 1, name=f"{name}_branch3")
    return layers.Concatenate(axis=3, name=name)([b0, b1, b2, b3])


@register_model(
    family="inception", input_shape=(299, 299, 3), preprocessing=MINUS1_1, params=42_742_984,
    reference_params=42_679_816, reference_source="timm inception_v4 (Inception-v4 paper: about 42.7 M)",
    activations=(), param_tolerance=0.0015, min_input_size=75, width_kwargs=("width_multiplier",),
    small_kwargs={"width_multiplier": 0.25}, reference_counts="trainable",
)
def inception_v4(input_shape=(299, 299, 3), classes=1000, width_multiplier=1.0, name="inception_v4"):
    """Inception V4 (Szegedy et al. 2016), timm's ``inception_v4`` in the keras applications idiom; inputs [-1, 1].

    The trainable params are exactly timm's 42,679,816. The total params (``count_params()``, 42,742,984) differ
    from timm by 63,168 (0.148%) because Keras counts BatchNormalization's moving mean and moving variance
    (2 x 31,584 channels over the 149 conv-BN blocks) as non-trainable weights, while PyTorch keeps them as
    buffers outside ``parameters()``. (keras' own ``conv2d_bn`` drops the BN scale, which would leave 31,584
    params fewer than timm's trainable count: the zoo keeps timm's affine BatchNorm, the reference.)
    ``width_multiplier`` scales every convolution's filters (rounded, at least 1); the smallest input is 75x75.
    """
    width_multiplier = check_positive("width_multiplier", width_multiplier)

    def f(filters: int) -> int:
        return scaled(filters, width_multiplier)

    inputs = layers.Input(shape=tuple(input_shape))
    x = _stem(inputs, f)
    for i in range(1, 5):
        x = _inception_a(x, f, name=f"inception_a{i}")
    x = _reduction_a(x, f)
    for i in range(1, 8):
        x = _inception_b(x, f, name=f"inception_b{i}")
    x = _reduction_b(x, f)
    for i in range(1, 4):
        x = _inception_c(x, f, name=f"inception_c{i}")
    x = layers.GlobalAveragePooling2D(name="avg_pool")(x)
    x = layers.Dense(classes, activation="softmax", name="predictions")(x)
    return keras.Model(inputs, x, name=name)
