"""ShuffleNet v1 (Zhang et al. 2017), written in the keras.applications idiom after osmr's imgclsmob
``shufflenet_g*_w*`` (pytorchcv), the widely used implementation with published ImageNet weights and counts.

Layout: 3x3/2 conv (24) + BN + ReLU -> 3x3/2 max pool -> three stages of ShuffleNet units ([4, 8, 4] units, stage
widths from the paper's table 1, e.g. 240 / 480 / 960 for g = 3) -> global average pool -> fully connected.
A unit is: 1x1 group conv (``groups``; plain 1x1 for the very first unit, whose input has only 24 channels) + BN +
ReLU -> channel shuffle -> 3x3 depthwise conv (stride 2 in the first unit of a stage) + BN -> 1x1 group conv + BN;
then ``add`` the input (stride 1) or ``concat`` a 3x3/2 average pool of the input (stride 2), and ReLU. The
bottleneck is a quarter of the unit's output channels. Convolutions have no bias; BatchNorm eps 1e-5 (torch).

Export notes: the channel shuffle is ``Reshape(h, w, g, c/g) -> Permute -> Reshape(h, w, c)``, built-in Keras
layers that TFLite converts to RESHAPE / TRANSPOSE / RESHAPE (and tf2onnx to Reshape / Transpose / Reshape); the
group convolutions are ``Conv2D(groups=g)``. Padded pools and strided convolutions use ``ZeroPadding2D`` + ``valid``
so the windows are torch's symmetric ones: the average pool counts the zero padding (torch's default
``count_include_pad=True``) and the max pool's zero padding equals torch's -inf padding because it follows a ReLU.
Layer names: ``conv1_conv``, ``pool1``, ``stage2_unit1_compress_conv``, ``stage2_unit1_shuffle_split``,
``stage3_unit4_dw_conv``, ``stage4_unit1_expand_bn``, ``stage4_unit1_shortcut_pool``, ``stage2_unit2_out``,
``avg_pool``, ``predictions``.
"""
from __future__ import annotations

import keras
from keras import layers

from ..preprocessing import TORCH
from ..registry import register_model

BN_EPSILON = 1e-5  # torch.nn.BatchNorm2d default
BN_MOMENTUM = 0.9  # torch momentum 0.1
STAGE_UNITS = (4, 8, 4)
# output channels of stage 2 (stages 3 and 4 double it), per group count: the paper's table 1 at 1x
STAGE2_CHANNELS = {1: 144, 2: 200, 3: 240, 4: 272, 8: 384}
STEM_CHANNELS = 24


def channel_shuffle(x, groups, name):
    """Interleave the channels of ``groups`` groups: (h, w, g * n) -> (h, w, g, n) -> (h, w, n, g) -> (h, w, n * g)."""
    if groups == 1:
        return x
    height, width, channels = x.shape[1:]
    x = layers.Reshape((height, width, groups, channels // groups), name=name + "_split")(x)
    x = layers.Permute((1, 2, 4, 3), name=name + "_transpose")(x)
    return layers.Reshape((height, width, channels), name=name + "_merge")(x)


def _bn(x, name):
    return layers.BatchNormalization(epsilon=BN_EPSILON, momentum=BN_MOMENTUM, name=name + "_bn")(x)


def shuffle_unit(x, out_channels, groups, stride, first_groups, name):
    """One ShuffleNet unit; with ``stride`` 2 the residual branch gives ``out_channels - in_channels`` channels and
    is concatenated with the average-pooled input."""
    in_channels = x.shape[-1]
    mid_channels = out_channels // 4
    branch_channels = out_channels - in_channels if stride == 2 else out_channels
    y = layers.Conv2D(mid_channels, 1, groups=first_groups, use_bias=False, name=name + "_compress_conv")(x)
    y = _bn(y, name + "_compress")
    y = layers.Activation("relu", name=name + "_compress_relu")(y)
    y = channel_shuffle(y, groups, name + "_shuffle")
    if stride == 2:
        y = layers.ZeroPadding2D(padding=1, name=name + "_dw_pad")(y)
    y = layers.DepthwiseConv2D(3, strides=stride, padding="valid" if stride == 2 else "same", use_bias=False,
                               name=name + "_dw_conv")(y)
    y = _bn(y, name + "_dw")
    y = layers.Conv2D(branch_channels, 1, groups=groups, use_bias=False, name=name + "_expand_conv")(y)
    y = _bn(y, name + "_expand")
    if stride == 2:
        shortcut = layers.ZeroPadding2D(padding=1, name=name + "_shortcut_pad")(x)
        shortcut = layers.AveragePooling2D(3, strides=2, name=name + "_shortcut_pool")(shortcut)
        y = layers.Concatenate(axis=-1, name=name + "_concat")([y, shortcut])
    else:
        y = layers.Add(name=name + "_add")([x, y])
    return layers.Activation("relu", name=name + "_out")(y)


def _widths(groups, scale):
    """Stem and stage widths: every stage a multiple of ``4 * groups`` (so the bottleneck splits into the groups),
    each stage twice the previous one; at ``scale`` 1 these are exactly the paper's table 1."""
    unit = 4 * groups
    stage2 = unit * max(1, round(STAGE2_CHANNELS[groups] * scale / unit))
    stem = groups * max(1, round(STEM_CHANNELS * scale / groups))
    return stem, (stage2, 2 * stage2, 4 * stage2)


@register_model(
    family="shufflenet", input_shape=(224, 224, 3), preprocessing=TORCH, params=1_890_208,
    reference_params=1_865_728,
    reference_source="osmr imgclsmob (pytorchcv) shufflenet_g3_w1 (ShuffleNet paper: about 1.9 M, 140 MFLOPs)",
    activations=(), param_tolerance=0.0132, min_input_size=32, width_kwargs=("groups", "scale"),
    small_kwargs={"groups": 3, "scale": 0.25}, reference_counts="trainable",
)
def shufflenet(input_shape=(224, 224, 3), classes=1000, groups=3, scale=1.0, name="shufflenet"):
    """ShuffleNet v1, 1x, g = 3 by default; trainable params identical to imgclsmob's shufflenet_g3_w1.

    ``groups`` (1, 2, 3, 4 or 8) picks the paper's stage widths for that group count; ``scale`` (the paper's
    0.25x .. 2x) multiplies them (each stage rounded to a multiple of ``4 * groups``; the trainable counts equal
    imgclsmob's for every model it publishes: g = 1, 2, 3, 4, 8 at 1x and g = 1, 3 at 0.75x, 0.5x, 0.25x).
    Inputs use torchvision's ImageNet mean/std; only ReLU.

    Parameter count: there is no single canonical implementation; the paper gives "about 1.9 M" for 1x g = 3 and
    imgclsmob's shufflenet_g3_w1 has 1,865,728, which the trainable params here equal exactly
    (``reference_counts='trainable'``). keras' ``count_params()`` (1,890,208, +1.31%) adds the batch-norm moving
    mean and variance (2 x 12,240 BN channels), which PyTorch keeps as buffers outside ``parameters()``.
    """
    if isinstance(groups, bool) or groups not in STAGE2_CHANNELS:
        raise ValueError(f"groups must be one of {sorted(STAGE2_CHANNELS)}, got {groups!r}")
    if isinstance(scale, bool) or not isinstance(scale, (int, float)) or not scale > 0:
        raise ValueError(f"scale must be a positive number (the paper uses 0.25 .. 2.0), got {scale!r}")
    stem, stage_widths = _widths(groups, scale)

    inputs = keras.Input(shape=tuple(input_shape), name="input")
    x = layers.ZeroPadding2D(padding=1, name="conv1_pad")(inputs)
    x = layers.Conv2D(stem, 3, strides=2, use_bias=False, name="conv1_conv")(x)
    x = _bn(x, "conv1")
    x = layers.Activation("relu", name="conv1_relu")(x)
    x = layers.ZeroPadding2D(padding=1, name="pool1_pad")(x)
    x = layers.MaxPooling2D(3, strides=2, name="pool1")(x)
    for stage, (width, units) in enumerate(zip(stage_widths, STAGE_UNITS), start=2):
        for unit in range(1, units + 1):
            first = unit == 1
            x = shuffle_unit(x, width, groups, stride=2 if first else 1,
                             first_groups=1 if (stage == 2 and first) else groups, name=f"stage{stage}_unit{unit}")
    x = layers.GlobalAveragePooling2D(name="avg_pool")(x)
    x = layers.Dense(classes, activation="softmax", name="predictions")(x)
    return keras.Model(inputs, x, name=name)
