"""DenseNet-121, -169 and -201 (Huang et al. 2017): keras.applications' own builders, registered in the zoo.

Architectures, layer names (``conv1_conv``, ``conv2_block1_0_bn``, ``pool2_conv``, ``bn``, ``avg_pool``,
``predictions``) and parameter counts are exactly those of ``keras.applications`` (random weights,
``weights=None``): dense blocks of [6, 12, 24, 16], [6, 12, 32, 32] and [6, 12, 48, 32] bottleneck layers
(BN-ReLU-1x1 conv-BN-ReLU-3x3 conv, growth rate 32), transitions halving the channels, global average pooling and a
softmax dense layer. Inputs use torchvision's ImageNet mean/std (keras' 'torch' mode). Only ReLU activations.
keras builds them at any input of at least 32x32; its ImageNet weights (``weights="imagenet"``) need 1000 classes at
224x224.
"""
from __future__ import annotations

import keras

from ..layers import keras_application
from ..preprocessing import TORCH
from ..pretrained import Pretrained
from ..registry import register_model


def _imagenet(name: str) -> Pretrained:
    # keras.src.applications.densenet: DENSENET121_WEIGHT_PATH etc.
    return Pretrained(file=f"{name}_weights_tf_dim_ordering_tf_kernels.h5", sizes=(224,))


@register_model(family="densenet", input_shape=(224, 224, 3), preprocessing=TORCH, params=8_062_504,
                reference_params=8_062_504, reference_source="keras.applications.DenseNet121",
                pretrained=_imagenet("densenet121"))
def densenet121(input_shape=(224, 224, 3), classes=1000, weights=None, name="densenet121"):
    """DenseNet-121 from keras.applications (blocks [6, 12, 24, 16])."""
    return keras_application(keras.applications.DenseNet121, input_shape, classes, name, weights)


@register_model(family="densenet", input_shape=(224, 224, 3), preprocessing=TORCH, params=14_307_880,
                reference_params=14_307_880, reference_source="keras.applications.DenseNet169",
                pretrained=_imagenet("densenet169"))
def densenet169(input_shape=(224, 224, 3), classes=1000, weights=None, name="densenet169"):
    """DenseNet-169 from keras.applications (blocks [6, 12, 32, 32])."""
    return keras_application(keras.applications.DenseNet169, input_shape, classes, name, weights)


@register_model(family="densenet", input_shape=(224, 224, 3), preprocessing=TORCH, params=20_242_984,
                reference_params=20_242_984, reference_source="keras.applications.DenseNet201",
                pretrained=_imagenet("densenet201"))
def densenet201(input_shape=(224, 224, 3), classes=1000, weights=None, name="densenet201"):
    """DenseNet-201 from keras.applications (blocks [6, 12, 48, 32])."""
    return keras_application(keras.applications.DenseNet201, input_shape, classes, name, weights)
