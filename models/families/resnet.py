"""ResNet family: ResNet-18/34 and ResNeXt-50/101 written in the keras.applications idiom, ResNet-50/101/152 (v1)
and ResNet-50/101/152 V2 straight from ``keras.applications``.

The hand-written models follow torchvision's layout exactly (``resnet18``, ``resnet34``, ``resnext50_32x4d``,
``resnext101_32x4d``): convolutions without bias, each followed by batch norm (eps 1e-5 as in torch), the stride of
a bottleneck on its 3x3 convolution ("ResNet v1.5"), a 1x1 projection (+ BN) on the shortcut when the shape
changes, global average pooling and one fully connected layer. Stride-2 convolutions pad explicitly
(``ZeroPadding2D`` + ``valid``) so the spatial arithmetic is torch's symmetric padding, not TF's ``same``.
Layer names follow keras' ResNet50: ``conv1_conv``, ``conv3_block2_1_conv``, ``conv4_block1_0_bn`` (the
shortcut), ``conv5_block2_out``, ``avg_pool``, ``predictions``.
"""
from __future__ import annotations

import keras
from keras import layers

from ..layers import check_positive, keras_application, scaled, torch_conv
from ..preprocessing import CAFFE, MINUS1_1, TORCH
from ..pretrained import Pretrained
from ..registry import register_model

BN_EPSILON = 1e-5  # torch.nn.BatchNorm2d default
BN_MOMENTUM = 0.9  # torch momentum 0.1


# ---------------------------------------------------------------------------------------------------------------
# building blocks (hand-written models)
# ---------------------------------------------------------------------------------------------------------------

def _bn(x, name):
    return layers.BatchNormalization(epsilon=BN_EPSILON, momentum=BN_MOMENTUM, name=name + "_bn")(x)


def _shortcut(x, filters, stride, name):
    """Identity, or a 1x1 projection + BN when the stride or the channel count changes (torchvision's downsample)."""
    if stride == 1 and x.shape[-1] == filters:
        return x
    s = layers.Conv2D(filters, 1, strides=stride, use_bias=False, name=name + "_0_conv")(x)
    return _bn(s, name + "_0")


def basic_block(x, filters, stride, name):
    """Two 3x3 convolutions (ResNet-18/34)."""
    shortcut = _shortcut(x, filters, stride, name)
    y = torch_conv(x, filters, 3, stride, name + "_1")
    y = _bn(y, name + "_1")
    y = layers.Activation("relu", name=name + "_1_relu")(y)
    y = torch_conv(y, filters, 3, 1, name + "_2")
    y = _bn(y, name + "_2")
    y = layers.Add(name=name + "_add")([shortcut, y])
    return layers.Activation("relu", name=name + "_out")(y)


def bottleneck_block(x, planes, stride, cardinality, base_width, name):
    """1x1 reduce -> grouped 3x3 (stride here) -> 1x1 expand to ``4 * planes`` (ResNeXt, torchvision layout)."""
    width = int(planes * (base_width / 64.0)) * cardinality
    out = planes * 4
    shortcut = _shortcut(x, out, stride, name)
    y = torch_conv(x, width, 1, 1, name + "_1")
    y = _bn(y, name + "_1")
    y = layers.Activation("relu", name=name + "_1_relu")(y)
    y = torch_conv(y, width, 3, stride, name + "_2", groups=cardinality)
    y = _bn(y, name + "_2")
    y = layers.Activation("relu", name=name + "_2_relu")(y)
    y = torch_conv(y, out, 1, 1, name + "_3")
    y = _bn(y, name + "_3")
    y = layers.Add(name=name + "_add")([shortcut, y])
    return layers.Activation("relu", name=name + "_out")(y)


def _stem(img_input, filters):
    x = torch_conv(img_input, filters, 7, 2, "conv1")
    x = _bn(x, "conv1")
    x = layers.Activation("relu", name="conv1_relu")(x)
    x = layers.ZeroPadding2D(padding=1, name="pool1_pad")(x)
    return layers.MaxPooling2D(3, strides=2, name="pool1_pool")(x)


def _head(x, classes):
    x = layers.GlobalAveragePooling2D(name="avg_pool")(x)
    return layers.Dense(classes, activation="softmax", name="predictions")(x)


def _basic_resnet(depths, input_shape, classes, width_multiplier, name):
    width_multiplier = check_positive("width_multiplier", width_multiplier)
    widths = [scaled(c, width_multiplier) for c in (64, 128, 256, 512)]
    img_input = keras.Input(shape=input_shape, name="input")
    x = _stem(img_input, widths[0])
    for stage, (filters, blocks) in enumerate(zip(widths, depths)):
        for i in range(blocks):
            stride = 2 if (i == 0 and stage > 0) else 1
            x = basic_block(x, filters, stride, name=f"conv{stage + 2}_block{i + 1}")
    return keras.Model(img_input, _head(x, classes), name=name)


def _resnext(depths, input_shape, classes, cardinality, base_width, name):
    if int(cardinality) != cardinality or cardinality < 1:
        raise ValueError(f"cardinality must be a positive integer, got {cardinality}")
    if int(base_width) != base_width or base_width < 1:
        raise ValueError(f"base_width must be a positive integer, got {base_width}")
    img_input = keras.Input(shape=input_shape, name="input")
    x = _stem(img_input, 64)
    for stage, (planes, blocks) in enumerate(zip((64, 128, 256, 512), depths)):
        for i in range(blocks):
            stride = 2 if (i == 0 and stage > 0) else 1
            x = bottleneck_block(x, planes, stride, int(cardinality), int(base_width),
                                 name=f"conv{stage + 2}_block{i + 1}")
    return keras.Model(img_input, _head(x, classes), name=name)


# ---------------------------------------------------------------------------------------------------------------
# ResNet-18 / 34 (hand-written, torchvision layout)
# ---------------------------------------------------------------------------------------------------------------

@register_model(family="resnet", input_shape=(224, 224, 3), preprocessing=TORCH, params=11_699_112,
                reference_params=11_689_512, reference_source="torchvision resnet18 (ResNet paper, basic blocks)",
                width_kwargs=("width_multiplier",), small_kwargs={"width_multiplier": 0.25},
                param_tolerance=0.0013, reference_counts="trainable")
def resnet18(input_shape=(224, 224, 3), classes=1000, width_multiplier=1.0, name=None):
    """ResNet-18: basic blocks [2, 2, 2, 2]; trainable params identical to torchvision's resnet18.

    ``width_multiplier`` scales every stage width (64, 128, 256, 512). Inputs use torchvision's ImageNet mean/std.

    Parameter count: keras' ``count_params()`` includes the batch-norm moving mean and variance (2 per BN channel,
    9,600 here), which torchvision keeps as buffers; the trainable params equal torchvision's 11,689,512 exactly
    (``reference_counts='trainable'``, checked by tests/zoo).
    """
    return _basic_resnet((2, 2, 2, 2), input_shape, classes, width_multiplier, name or "resnet18")


@register_model(family="resnet", input_shape=(224, 224, 3), preprocessing=TORCH, params=21_814_696,
                reference_params=21_797_672, reference_source="torchvision resnet34 (ResNet paper, basic blocks)",
                width_kwargs=("width_multiplier",), small_kwargs={"width_multiplier": 0.25},
                param_tolerance=0.0013, reference_counts="trainable")
def resnet34(input_shape=(224, 224, 3), classes=1000, width_multiplier=1.0, name=None):
    """ResNet-34: basic blocks [3, 4, 6, 3]; trainable params identical to torchvision's resnet34.

    ``width_multiplier`` scales every stage width (64, 128, 256, 512). Inputs use torchvision's ImageNet mean/std.

    Parameter count: keras' ``count_params()`` includes the batch-norm moving mean and variance (2 per BN channel,
    17,024 here), which torchvision keeps as buffers; the trainable params equal torchvision's 21,797,672 exactly
    (``reference_counts='trainable'``, checked by tests/zoo).
    """
    return _basic_resnet((3, 4, 6, 3), input_shape, classes, width_multiplier, name or "resnet34")


# ---------------------------------------------------------------------------------------------------------------
# ResNet v1 / v2 (keras.applications, with its ImageNet weights: 1000 classes at 224x224)
# ---------------------------------------------------------------------------------------------------------------

def _imagenet(weights_name: str) -> Pretrained:
    # keras.src.applications.resnet: f"{weights_name}_weights_tf_dim_ordering_tf_kernels.h5"
    return Pretrained(file=f"{weights_name}_weights_tf_dim_ordering_tf_kernels.h5", sizes=(224,))


@register_model(family="resnet", input_shape=(224, 224, 3), preprocessing=CAFFE, params=25_636_712,
                reference_params=25_636_712, reference_source="keras.applications.ResNet50",
                pretrained=_imagenet("resnet50"))
def resnet50(input_shape=(224, 224, 3), classes=1000, weights=None, name=None):
    """ResNet-50 v1 from keras.applications (Caffe-style BGR mean-subtracted input)."""
    return keras_application(keras.applications.ResNet50, input_shape, classes, name or "resnet50", weights)


@register_model(family="resnet", input_shape=(224, 224, 3), preprocessing=CAFFE, params=44_707_176,
                reference_params=44_707_176, reference_source="keras.applications.ResNet101",
                pretrained=_imagenet("resnet101"))
def resnet101(input_shape=(224, 224, 3), classes=1000, weights=None, name=None):
    """ResNet-101 v1 from keras.applications (Caffe-style BGR mean-subtracted input)."""
    return keras_application(keras.applications.ResNet101, input_shape, classes, name or "resnet101", weights)


@register_model(family="resnet", input_shape=(224, 224, 3), preprocessing=CAFFE, params=60_419_944,
                reference_params=60_419_944, reference_source="keras.applications.ResNet152",
                pretrained=_imagenet("resnet152"))
def resnet152(input_shape=(224, 224, 3), classes=1000, weights=None, name=None):
    """ResNet-152 v1 from keras.applications (Caffe-style BGR mean-subtracted input)."""
    return keras_application(keras.applications.ResNet152, input_shape, classes, name or "resnet152", weights)


@register_model(family="resnet", input_shape=(224, 224, 3), preprocessing=MINUS1_1, params=25_613_800,
                reference_params=25_613_800, reference_source="keras.applications.ResNet50V2",
                pretrained=_imagenet("resnet50v2"))
def resnet50v2(input_shape=(224, 224, 3), classes=1000, weights=None, name=None):
    """ResNet-50 V2 (pre-activation) from keras.applications (inputs in [-1, 1])."""
    return keras_application(keras.applications.ResNet50V2, input_shape, classes, name or "resnet50v2", weights)


@register_model(family="resnet", input_shape=(224, 224, 3), preprocessing=MINUS1_1, params=44_675_560,
                reference_params=44_675_560, reference_source="keras.applications.ResNet101V2",
                pretrained=_imagenet("resnet101v2"))
def resnet101v2(input_shape=(224, 224, 3), classes=1000, weights=None, name=None):
    """ResNet-101 V2 (pre-activation) from keras.applications (inputs in [-1, 1])."""
    return keras_application(keras.applications.ResNet101V2, input_shape, classes, name or "resnet101v2", weights)


@register_model(family="resnet", input_shape=(224, 224, 3), preprocessing=MINUS1_1, params=60_380_648,
                reference_params=60_380_648, reference_source="keras.applications.ResNet152V2",
                pretrained=_imagenet("resnet152v2"))
def resnet152v2(input_shape=(224, 224, 3), classes=1000, weights=None, name=None):
    """ResNet-152 V2 (pre-activation) from keras.applications (inputs in [-1, 1])."""
    return keras_application(keras.applications.ResNet152V2, input_shape, classes, name or "resnet152v2", weights)


# ---------------------------------------------------------------------------------------------------------------
# ResNeXt (hand-written, torchvision layout)
# ---------------------------------------------------------------------------------------------------------------

@register_model(family="resnext", input_shape=(224, 224, 3), preprocessing=TORCH, params=25_097_128,
                reference_params=25_028_904, reference_source="torchvision resnext50_32x4d (ResNeXt paper)",
                width_kwargs=("cardinality", "base_width"), small_kwargs={"cardinality": 4, "base_width": 4},
                param_tolerance=0.0032, reference_counts="trainable")
def resnext50(input_shape=(224, 224, 3), classes=1000, cardinality=32, base_width=4, name=None):
    """ResNeXt-50 (32x4d): bottlenecks [3, 4, 6, 3] with a grouped 3x3 ``Conv2D(groups=cardinality)``.

    Each bottleneck is ``int(planes * base_width / 64) * cardinality`` wide; trainable params identical to torchvision's
    resnext50_32x4d. Inputs use torchvision's ImageNet mean/std.

    Parameter count: keras' ``count_params()`` includes the batch-norm moving mean and variance (2 per BN channel,
    68,224 here), which torchvision keeps as buffers; the trainable params equal torchvision's 25,028,904 exactly
    (``reference_counts='trainable'``, checked by tests/zoo).
    """
    return _resnext((3, 4, 6, 3), input_shape, classes, cardinality, base_width, name or "resnext50")


@register_model(family="resnext", input_shape=(224, 224, 3), preprocessing=TORCH, params=44_315_560,
                reference_params=44_177_704, reference_source="torchvision resnext101_32x4d (ResNeXt paper)",
                width_kwargs=("cardinality", "base_width"), small_kwargs={"cardinality": 4, "base_width": 4},
                param_tolerance=0.0036, reference_counts="trainable")
def resnext101(input_shape=(224, 224, 3), classes=1000, cardinality=32, base_width=4, name=None):
    """ResNeXt-101 (32x4d): bottlenecks [3, 4, 23, 3] with a grouped 3x3 ``Conv2D(groups=cardinality)``.

    Each bottleneck is ``int(planes * base_width / 64) * cardinality`` wide; trainable params identical to torchvision's
    resnext101_32x4d. Inputs use torchvision's ImageNet mean/std.

    Parameter count: keras' ``count_params()`` includes the batch-norm moving mean and variance (2 per BN channel,
    137,856 here), which torchvision keeps as buffers; the trainable params equal torchvision's 44,177,704 exactly
    (``reference_counts='trainable'``, checked by tests/zoo).
    """
    return _resnext((3, 4, 23, 3), input_shape, classes, cardinality, base_width, name or "resnext101")
