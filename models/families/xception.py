"""Xception (Chollet 2017): keras.applications' own builder, registered in the zoo.

Architecture, layer names (``block1_conv1``, ``block4_sepconv2_bn``, ``add``, ``add_1``, ..., ``avg_pool``,
``predictions``) and parameter count are exactly those of ``keras.applications.Xception`` (random weights,
``weights=None``): entry flow, 8 middle-flow blocks and exit flow of depthwise-separable convolutions with residual
connections, global average pooling and a softmax dense layer. Only ReLU activations (no ReLU6). Inputs in [-1, 1]
(keras' 'tf' mode). keras needs an input of at least 71x71; its ImageNet weights (``weights="imagenet"``) need 1000
classes at 299x299.
"""
from __future__ import annotations

import keras

from ..layers import keras_application
from ..preprocessing import MINUS1_1
from ..pretrained import Pretrained
from ..registry import register_model


@register_model(family="xception", input_shape=(299, 299, 3), preprocessing=MINUS1_1, params=22_910_480,
                reference_params=22_910_480, reference_source="keras.applications.Xception", min_input_size=71,
                pretrained=Pretrained(file="xception_weights_tf_dim_ordering_tf_kernels.h5", sizes=(299,)))
def xception(input_shape=(299, 299, 3), classes=1000, weights=None, name="xception"):
    """Xception from keras.applications (299x299 by default, at least 71x71)."""
    return keras_application(keras.applications.Xception, input_shape, classes, name, weights)
