"""VGG (Simonyan & Zisserman 2014): VGG-16/19 straight from ``keras.applications``, VGG-11/13 written in the same
idiom after torchvision's ``vgg11`` / ``vgg13`` (configurations A and B, no batch norm).

Every convolution is 3x3 ``same`` with a bias and ReLU, every stage ends in a 2x2/2 max pool; layer names are
keras' (``block1_conv1`` .. ``block5_pool``, ``fc1``, ``fc2``, ``predictions``). The hand-written models add
torchvision's head: ``avg_pool`` (adaptive, 7x7: the identity at 224) -> ``flatten`` -> ``fc1`` -> ``dropout1`` ->
``fc2`` -> ``dropout2`` -> ``predictions``. keras' VGG-16/19 flatten ``block5_pool`` directly, so there ``fc1``
has ``512 * (height // 32) * (width // 32)`` inputs (exact counts are for 224x224; torchvision's vgg16/vgg19 have the
same counts). No export-sensitive activation. keras publishes ImageNet weights for VGG-16/19 (1000 classes at
224x224, ``weights="imagenet"``); the torchvision-layout VGG-11/13 have none.
"""
from __future__ import annotations

import keras
from keras import layers

from ..layers import check_positive, keras_application, scaled, torchvision_classifier
from ..preprocessing import CAFFE, TORCH
from ..pretrained import Pretrained
from ..registry import register_model

# convolutions per stage (64, 128, 256, 512, 512 filters): torchvision's cfgs "A" and "B"
STAGES = {"vgg11": (1, 1, 2, 2, 2), "vgg13": (2, 2, 2, 2, 2)}
STAGE_FILTERS = (64, 128, 256, 512, 512)


def _torchvision_vgg(variant, input_shape, classes, width_multiplier, dropout, name):
    width_multiplier = check_positive("width_multiplier", width_multiplier)
    inputs = keras.Input(shape=tuple(input_shape), name="input")
    x = inputs
    for stage, (convs, filters) in enumerate(zip(STAGES[variant], STAGE_FILTERS), start=1):
        for i in range(1, convs + 1):
            x = layers.Conv2D(scaled(filters, width_multiplier), 3, padding="same", activation="relu",
                              name=f"block{stage}_conv{i}")(x)
        x = layers.MaxPooling2D(2, strides=2, name=f"block{stage}_pool")(x)
    x = torchvision_classifier(x, 7, scaled(4096, width_multiplier), classes, dropout, dropout_first=False)
    return keras.Model(inputs, x, name=name)


def _register_torchvision(params: int, reference_source: str):
    return register_model(
        family="vgg", input_shape=(224, 224, 3), preprocessing=TORCH, params=params, reference_params=params,
        reference_source=reference_source, activations=(), param_tolerance=0.0, min_input_size=32,
        width_kwargs=("width_multiplier",), small_kwargs={"width_multiplier": 0.125},
    )


@_register_torchvision(132_863_336, "torchvision vgg11 (VGG paper, configuration A)")
def vgg11(input_shape=(224, 224, 3), classes=1000, width_multiplier=1.0, dropout=0.5, name="vgg11"):
    """VGG-11 (configuration A, no batch norm); params identical to torchvision's vgg11; inputs as torchvision's.

    ``width_multiplier`` scales every convolution and both 4096-unit dense layers (rounded, at least 1).
    """
    return _torchvision_vgg("vgg11", input_shape, classes, width_multiplier, dropout, name)


@_register_torchvision(133_047_848, "torchvision vgg13 (VGG paper, configuration B)")
def vgg13(input_shape=(224, 224, 3), classes=1000, width_multiplier=1.0, dropout=0.5, name="vgg13"):
    """VGG-13 (configuration B, no batch norm); params identical to torchvision's vgg13.

    ``width_multiplier`` scales every convolution and the two 4096-unit dense layers (rounded, at least 1). Inputs
    use torchvision's ImageNet mean/std. The adaptive 7x7 pool keeps ``fc1`` at ``512 * 7 * 7`` inputs for any size.
    """
    return _torchvision_vgg("vgg13", input_shape, classes, width_multiplier, dropout, name)


@register_model(
    family="vgg", input_shape=(224, 224, 3), preprocessing=CAFFE, params=138_357_544,
    reference_params=138_357_544, reference_source="keras.applications.VGG16 (VGG paper, configuration D)",
    activations=(), param_tolerance=0.0, min_input_size=32,
    # keras.src.applications.vgg16: WEIGHTS_PATH
    pretrained=Pretrained(file="vgg16_weights_tf_dim_ordering_tf_kernels.h5", sizes=(224,)),
)
def vgg16(input_shape=(224, 224, 3), classes=1000, weights=None, name="vgg16"):
    """VGG-16 from keras.applications (Caffe-style BGR input); ``fc1`` grows with the input (module docstring)."""
    return keras_application(keras.applications.VGG16, input_shape, classes, name, weights)


@register_model(
    family="vgg", input_shape=(224, 224, 3), preprocessing=CAFFE, params=143_667_240,
    reference_params=143_667_240, reference_source="keras.applications.VGG19 (VGG paper, configuration E)",
    activations=(), param_tolerance=0.0, min_input_size=32,
    # keras.src.applications.vgg19: WEIGHTS_PATH
    pretrained=Pretrained(file="vgg19_weights_tf_dim_ordering_tf_kernels.h5", sizes=(224,)),
)
def vgg19(input_shape=(224, 224, 3), classes=1000, weights=None, name="vgg19"):
    """VGG-19 from keras.applications (Caffe-style BGR input); ``fc1`` grows with the input (module docstring)."""
    return keras_application(keras.applications.VGG19, input_shape, classes, name, weights)
