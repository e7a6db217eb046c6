"""LeNet-5 (LeCun et al. 1998), written in the keras.applications idiom.

Layout, named after the paper's layers: ``c1_conv`` 6@5x5 -> ``s2_pool`` 2x2 average -> ``c3_conv`` 16@5x5 ->
``s4_pool`` 2x2 average -> ``c5_conv`` 120@5x5 (on a 32x32 input its output is 1x1, i.e. fully connected) ->
``flatten`` -> ``f6`` 84 -> ``predictions`` (softmax). Every hidden layer uses ``tanh`` (the paper's squashing
function is the scaled tanh ``1.7159 * tanh(2/3 * a)``; plain tanh is the modern reading). No export-sensitive
activation.
"""
from __future__ import annotations

import keras
from keras import layers

from ..preprocessing import UNIT
from ..registry import register_model


@register_model(
    family="lenet", input_shape=(32, 32, 1), classes=10, preprocessing=UNIT, params=61_706,
    reference_params=61_706,
    reference_source="LeNet-5 layer table (conv 6@5x5, pool, conv 16@5x5, pool, conv 120@5x5, fc 84, fc 10)",
    activations=(), param_tolerance=0.0, min_input_size=32,
)
def lenet5(input_shape=(32, 32, 1), classes=10, name="lenet5"):
    """LeNet-5 with tanh activations and average-pool subsampling; inputs in [0, 1].

    Any channel count works (the default is 1, grayscale). On inputs larger than 32x32 ``c5_conv`` is no longer
    1x1, and ``flatten`` makes ``f6``'s parameter count grow with the input size.

    Parameter count: 61,706 as in the usual LeNet-5 table. The 1998 paper has 60,000 trainable parameters: its S2/S4
    subsampling layers have a trainable coefficient and bias per map (plain average pooling here) and C3 connects each
    of its 16 maps to only some of S2's 6 maps (fully connected here), and its output layer is RBF units, not a
    dense softmax.
    """
    inputs = keras.Input(shape=tuple(input_shape), name="input")
    x = layers.Conv2D(6, 5, activation="tanh", name="c1_conv")(inputs)
    x = layers.AveragePooling2D(2, name="s2_pool")(x)
    x = layers.Conv2D(16, 5, activation="tanh", name="c3_conv")(x)
    x = layers.AveragePooling2D(2, name="s4_pool")(x)
    x = layers.Conv2D(120, 5, activation="tanh", name="c5_conv")(x)
    x = layers.Flatten(name="flatten")(x)
    x = layers.Dense(84, activation="tanh", name="f6")(x)
    x = layers.Dense(classes, activation="softmax", name="predictions")(x)
    return keras.Model(inputs, x, name=name)
