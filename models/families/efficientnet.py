"""EfficientNet B0-B7: keras.applications' own builders, registered in the zoo.

Architectures, layer names and parameter counts are exactly ``keras.applications.EfficientNetB*`` (random weights,
``weights=None``). The models take pixels in [0, 255]: they start with ``Rescaling(1/255)`` and a ``Normalization``
layer. With ``weights=None`` keras leaves that Normalization un-adapted (mean 0, variance 1, so the stem sees
[0, 1]) and does not add the ImageNet-std ``Rescaling`` it adds for ImageNet weights; its mean/variance/count
(7 numbers) are part of keras' parameter counts.

Activations: swish (``Activation("swish")`` and the squeeze-excite reduce conv's ``activation="swish"``) and a
sigmoid gate in squeeze-excite (``Conv2D(activation="sigmoid")``, not an export-sensitive activation).

Width knobs: ``width_coefficient`` and ``depth_coefficient`` (default: the variant's own, e.g. 1.2 / 1.4 for B3).
Changing them calls keras' shared private builder ``keras.src.applications.efficientnet.EfficientNet`` (the
function every public ``EfficientNetB*`` calls) with the variant's default size and dropout rate.

ImageNet weights (``weights="imagenet"``, keras' own download and cache) exist for each variant's own coefficients,
1000 classes and its default input size (224 for B0 ... 600 for B7). With them keras also adds the ImageNet-std
``Rescaling`` after the Normalization layer and loads the Normalization's ImageNet mean and variance, so the model
still takes pixels in [0, 255].
"""
from __future__ import annotations

import keras

from ..layers import check_positive
from ..preprocessing import RAW_0_255
from ..pretrained import Pretrained
from ..registry import register_model

# variant -> (width_coefficient, depth_coefficient, default_size, dropout_rate), as in keras' EfficientNetB*.
_VARIANTS = {
    0: (1.0, 1.0, 224, 0.2),
    1: (1.0, 1.1, 240, 0.2),
    2: (1.1, 1.2, 260, 0.3),
    3: (1.2, 1.4, 300, 0.3),
    4: (1.4, 1.8, 380, 0.4),
    5: (1.6, 2.2, 456, 0.4),
    6: (1.8, 2.6, 528, 0.5),
    7: (2.0, 3.1, 600, 0.5),
}
_WIDTH_KWARGS = ("width_coefficient", "depth_coefficient")
_SMALL = {"width_coefficient": 0.25, "depth_coefficient": 0.25}


def _coefficient(what: str, value, default: float) -> float:
    if value is None:
        return default
    return check_positive(what, value)


def _efficientnet(variant: int, input_shape, classes: int, width_coefficient, depth_coefficient, weights, name):
    width0, depth0, default_size, dropout_rate = _VARIANTS[variant]
    width = _coefficient("width_coefficient", width_coefficient, width0)
    depth = _coefficient("depth_coefficient", depth_coefficient, depth0)
    # keras names the weights file after the model: name + ".h5" (keras.src.applications.efficientnet)
    name = name or f"efficientnetb{variant}"
    common = dict(include_top=True, weights=weights, input_shape=tuple(input_shape), classes=classes,
                  classifier_activation="softmax", name=name)
    if (width, depth) == (width0, depth0):
        return getattr(keras.applications, f"EfficientNetB{variant}")(**common)
    if weights is not None:
        raise ValueError(f"ImageNet weights exist only for EfficientNet-B{variant}'s own coefficients "
                         f"({width0:g}, {depth0:g}), not ({width:g}, {depth:g})")
    try:
        from keras.src.applications.efficientnet import EfficientNet
    except ImportError as e:  # a keras release that moved its private builder
        raise ValueError(f"this keras ({keras.__version__}) has no keras.src.applications.efficientnet.EfficientNet;"
                         " width_coefficient / depth_coefficient cannot be changed") from e
    return EfficientNet(width, depth, default_size, dropout_rate, **common)


def _register(variant: int, params: int, reference_source: str):
    size = _VARIANTS[variant][2]
    return register_model(
        family="efficientnet", input_shape=(size, size, 3), preprocessing=RAW_0_255, params=params,
        reference_params=params, reference_source=reference_source, activations=("swish",), param_tolerance=0.0,
        min_input_size=32, width_kwargs=_WIDTH_KWARGS, small_kwargs=_SMALL,
        pretrained=Pretrained(file=f"efficientnetb{variant}.h5", sizes=(size,)),
    )


@_register(0, 5_330_571, "keras.applications.EfficientNetB0")
def efficientnet_b0(input_shape=(224, 224, 3), classes=1000, width_coefficient=None,
                    depth_coefficient=None, weights=None, name=None):
    """EfficientNet-B0 (width 1.0, depth 1.0, 224), ``keras.applications.EfficientNetB0``; pixels in [0, 255]."""
    return _efficientnet(0, input_shape, classes, width_coefficient, depth_coefficient, weights, name)


@_register(1, 7_856_239, "keras.applications.EfficientNetB1")
def efficientnet_b1(input_shape=(240, 240, 3), classes=1000, width_coefficient=None,
                    depth_coefficient=None, weights=None, name=None):
    """EfficientNet-B1 (width 1.0, depth 1.1, 240), ``keras.applications.EfficientNetB1``; pixels in [0, 255]."""
    return _efficientnet(1, input_shape, classes, width_coefficient, depth_coefficient, weights, name)


@_register(2, 9_177_569, "keras.applications.EfficientNetB2")
def efficientnet_b2(input_shape=(260, 260, 3), classes=1000, width_coefficient=None,
                    depth_coefficient=None, weights=None, name=None):
    """EfficientNet-B2 (width 1.1, depth 1.2, 260), ``keras.applications.EfficientNetB2``; pixels in [0, 255]."""
    return _efficientnet(2, input_shape, classes, width_coefficient, depth_coefficient, weights, name)


@_register(3, 12_320_535, "keras.applications.EfficientNetB3")
def efficientnet_b3(input_shape=(300, 300, 3), classes=1000, width_coefficient=None,
                    depth_coefficient=None, weights=None, name=None):
    """EfficientNet-B3 (width 1.2, depth 1.4, 300), ``keras.applications.EfficientNetB3``; pixels in [0, 255]."""
    return _efficientnet(3, input_shape, classes, width_coefficient, depth_coefficient, weights, name)


@_register(4, 19_466_823, "keras.applications.EfficientNetB4")
def efficientnet_b4(input_shape=(380, 380, 3), classes=1000, width_coefficient=None,
                    depth_coefficient=None, weights=None, name=None):
    """EfficientNet-B4 (width 1.4, depth 1.8, 380), ``keras.applications.EfficientNetB4``; pixels in [0, 255]."""
    return _efficientnet(4, input_shape, classes, width_coefficient, depth_coefficient, weights, name)


@_register(5, 30_562_527, "keras.applications.EfficientNetB5")
def efficientnet_b5(input_shape=(456, 456, 3), classes=1000, width_coefficient=None,
                    depth_coefficient=None, weights=None, name=None):
    """EfficientNet-B5 (width 1.6, depth 2.2, 456), ``keras.applications.EfficientNetB5``; pixels in [0, 255]."""
    return _efficientnet(5, input_shape, classes, width_coefficient, depth_coefficient, weights, name)


@_register(6, 43_265_143, "keras.applications.EfficientNetB6")
def efficientnet_b6(input_shape=(528, 528, 3), classes=1000, width_coefficient=None,
                    depth_coefficient=None, weights=None, name=None):
    """EfficientNet-B6 (width 1.8, depth 2.6, 528), ``keras.applications.EfficientNetB6``; pixels in [0, 255]."""
    return _efficientnet(6, input_shape, classes, width_coefficient, depth_coefficient, weights, name)


@_register(7, 66_658_687, "keras.applications.EfficientNetB7")
def efficientnet_b7(input_shape=(600, 600, 3), classes=1000, width_coefficient=None,
                    depth_coefficient=None, weights=None, name=None):
    """EfficientNet-B7 (width 2.0, depth 3.1, 600), ``keras.applications.EfficientNetB7``; pixels in [0, 255]."""
    return _efficientnet(7, input_shape, classes, width_coefficient, depth_coefficient, weights, name)
