"""MobileNet V1, V2 and V3 (Small / Large): keras.applications' own builders, registered in the zoo.

The architectures, layer names and parameter counts are exactly those of ``keras.applications`` (random weights,
``weights=None``). With ``weights=None`` keras accepts any ``alpha`` (the lists of allowed values, 0.25-1.0 for V1,
0.35-1.4 for V2 and 0.75/1.0 for V3, only apply to loading ImageNet weights) and any input of at least 32x32,
square or not; it raises no warning for non-standard sizes (those warnings, too, are only for ImageNet weights).

Export-sensitive activations, as keras 3 writes them (``keras/src/applications/mobilenet*.py``):

- V1 and V2: every activation is ``layers.ReLU(6.0)`` (relu6); V2's classifier is a Dense softmax.
- V3: the "RE" blocks and the squeeze-excite bottleneck use plain ``layers.ReLU()`` (no cap, as in the paper),
  the "HS" blocks and the head use ``layers.Activation("hard_swish")``, and the squeeze-excite gate is
  hard-sigmoid written with ops, ``layers.ReLU(6.0)(x + 3.0) * (1.0 / 6.0)``: the only ``ReLU(6)`` layers of V3
  are the inner clip of that hard-sigmoid. ``minimalistic=True`` drops squeeze-excite and replaces hard-swish by
  ReLU (and uses 3x3 kernels), so a minimalistic V3 contains none of the sensitive activations; the registry's
  ``activations`` describe the default (non-minimalistic) model.

ImageNet weights (``weights="imagenet"``, keras' own download and cache; the ``Pretrained`` entries below say which
configurations keras accepts): 1000 classes; V1 for alpha 0.25/0.5/0.75/1.0 (depth multiplier 1) at 128/160/192/224;
V2 for alpha 0.35/0.5/0.75/1.0/1.3/1.4 at 96/128/160/192/224 (other sizes: keras raises); V3 for alpha 0.75/1.0
(minimalistic: 1.0 only) at 224, and since keras does not check V3's input size it loads those 224x224 weights into any
other size too (with a warning; accuracy drops).
"""
from __future__ import annotations

import keras

from ..layers import check_positive
from ..preprocessing import MINUS1_1, RAW_0_255
from ..pretrained import Pretrained
from ..registry import register_model


def _name_kwargs(name: str | None) -> dict:
    # keras picks its own model name (e.g. "mobilenet_1.00_224") unless the caller gives one.
    return {} if name is None else {"name": name}


_V1_SIZES = (128, 160, 192, 224)
_V2_SIZES = (96, 128, 160, 192, 224)
# keras.src.applications.mobilenet: "mobilenet_%s_%d_tf.h5" % (alpha_text, rows)
_V1_ALPHA_TEXT = {1.0: "1_0", 0.75: "7_5", 0.5: "5_0", 0.25: "2_5"}


def _v3_rule(config: dict) -> str | None:
    if config["minimalistic"] and config["alpha"] != 1.0:
        return f"ImageNet weights of the minimalistic variant exist for alpha 1 only, not {config['alpha']:g}"
    return None


def _v3_pretrained(kind: str) -> Pretrained:
    # keras.src.applications.mobilenet_v3: f"weights_mobilenet_v3_{model_name}.h5", model_name
    # "{small|large}{_minimalistic}_224_{str(alpha)}_float" (alpha is a float: the builder's check_positive)
    return Pretrained(
        file=lambda c: (f"weights_mobilenet_v3_{kind}{'_minimalistic' if c['minimalistic'] else ''}_224_"
                        f"{float(c['alpha'])}_float.h5"),
        sizes=(224,), any_size=True, widths={"alpha": (0.75, 1.0), "minimalistic": (False, True)}, rule=_v3_rule)


@register_model(
    family="mobilenet", input_shape=(224, 224, 3), preprocessing=MINUS1_1, params=4_253_864,
    reference_params=4_253_864, reference_source="keras.applications.MobileNet (paper: 4.2 M, 569 M mult-adds)",
    activations=("relu6",), param_tolerance=0.0, min_input_size=32, width_kwargs=("alpha", "depth_multiplier"),
    small_kwargs={"alpha": 0.25},
    pretrained=Pretrained(
        file=lambda c: f"mobilenet_{_V1_ALPHA_TEXT[float(c['alpha'])]}_{c['input_shape'][0]}_tf.h5",
        sizes=_V1_SIZES, widths={"alpha": tuple(sorted(_V1_ALPHA_TEXT))}),
)
def mobilenet_v1(input_shape=(224, 224, 3), classes=1000, alpha=1.0, depth_multiplier=1, weights=None, name=None):
    """MobileNet V1 (depthwise-separable convolutions, ReLU6), ``keras.applications.MobileNet``.

    ``alpha`` scales every layer's width (any positive value; keras truncates ``int(filters * alpha)``),
    ``depth_multiplier`` is the depthwise convolutions' channel multiplier (the paper's resolution multiplier is
    the input size here). Inputs in [-1, 1] (keras' 'tf' mode).
    """
    alpha = check_positive("alpha", alpha)
    if isinstance(depth_multiplier, bool) or not isinstance(depth_multiplier, int) or depth_multiplier < 1:
        raise ValueError(f"depth_multiplier must be an integer >= 1, got {depth_multiplier!r}")
    return keras.applications.MobileNet(
        input_shape=tuple(input_shape), alpha=alpha, depth_multiplier=depth_multiplier, include_top=True,
        weights=weights, classes=classes, classifier_activation="softmax", **_name_kwargs(name))


@register_model(
    family="mobilenet", input_shape=(224, 224, 3), preprocessing=MINUS1_1, params=3_538_984,
    reference_params=3_538_984, reference_source="keras.applications.MobileNetV2 (paper: 3.4 M, 300 M MACs)",
    activations=("relu6",), param_tolerance=0.0, min_input_size=32, width_kwargs=("alpha",),
    small_kwargs={"alpha": 0.35},
    pretrained=Pretrained(
        # keras.src.applications.mobilenet_v2: f"mobilenet_v2_weights_tf_dim_ordering_tf_kernels_{alpha}_{rows}.h5"
        file=lambda c: (f"mobilenet_v2_weights_tf_dim_ordering_tf_kernels_{float(c['alpha'])}_"
                        f"{c['input_shape'][0]}.h5"),
        sizes=_V2_SIZES, widths={"alpha": (0.35, 0.5, 0.75, 1.0, 1.3, 1.4)}),
)
def mobilenet_v2(input_shape=(224, 224, 3), classes=1000, alpha=1.0, weights=None, name=None):
    """MobileNet V2 (inverted residuals, linear bottlenecks, ReLU6), ``keras.applications.MobileNetV2``.

    ``alpha`` scales the widths (rounded to multiples of 8; the last 1x1 conv keeps 1280 channels for
    ``alpha <= 1``). Inputs in [-1, 1] (keras' 'tf' mode).
    """
    alpha = check_positive("alpha", alpha)
    return keras.applications.MobileNetV2(
        input_shape=tuple(input_shape), alpha=alpha, include_top=True, weights=weights, classes=classes,
        classifier_activation="softmax", **_name_kwargs(name))


def _mobilenet_v3(builder, input_shape, classes, alpha, minimalistic, weights, name):
    alpha = check_positive("alpha", alpha)
    if not isinstance(minimalistic, bool):
        raise ValueError(f"minimalistic must be True or False, got {minimalistic!r}")
    # include_preprocessing=True: the model starts with Rescaling(1/127.5, offset=-1), so it takes pixels in [0, 255].
    return builder(
        input_shape=tuple(input_shape), alpha=alpha, minimalistic=minimalistic, include_top=True, weights=weights,
        classes=classes, classifier_activation="softmax", include_preprocessing=True, **_name_kwargs(name))


@register_model(
    family="mobilenet", input_shape=(224, 224, 3), preprocessing=RAW_0_255, params=2_554_968,
    reference_params=2_554_968,
    reference_source="keras.applications.MobileNetV3Small (ReLU, h-swish, SE with hard-sigmoid)",
    activations=("hard_swish", "hard_sigmoid"), param_tolerance=0.0, min_input_size=32,
    width_kwargs=("alpha", "minimalistic"), small_kwargs={"alpha": 0.75}, pretrained=_v3_pretrained("small"),
)
def mobilenetv3_small(input_shape=(224, 224, 3), classes=1000, alpha=1.0, minimalistic=False, weights=None,
                      name=None):
    """MobileNetV3-Small, ``keras.applications.MobileNetV3Small``: takes pixels in [0, 255] (rescales inside).

    Contains hard-swish (``Activation("hard_swish")``) and, in every squeeze-excite block, hard-sigmoid
    (``ReLU(6)(x + 3) * (1/6)``). ``alpha`` scales the widths (multiples of 8); ``minimalistic=True`` is the
    variant without squeeze-excite, hard-swish or 5x5 kernels (ReLU only).
    """
    return _mobilenet_v3(keras.applications.MobileNetV3Small, input_shape, classes, alpha, minimalistic, weights,
                         name)


@register_model(
    family="mobilenet", input_shape=(224, 224, 3), preprocessing=RAW_0_255, params=5_507_432,
    reference_params=5_507_432,
    reference_source="keras.applications.MobileNetV3Large (ReLU, h-swish, SE with hard-sigmoid)",
    activations=("hard_swish", "hard_sigmoid"), param_tolerance=0.0, min_input_size=32,
    width_kwargs=("alpha", "minimalistic"), small_kwargs={"alpha": 0.75}, pretrained=_v3_pretrained("large"),
)
def mobilenetv3_large(input_shape=(224, 224, 3), classes=1000, alpha=1.0, minimalistic=False, weights=None,
                      name=None):
    """MobileNetV3-Large, ``keras.applications.MobileNetV3Large``: takes pixels in [0, 255] (rescales inside).

    Contains hard-swish (``Activation("hard_swish")``) and, in every squeeze-excite block, hard-sigmoid
    (``ReLU(6)(x + 3) * (1/6)``). ``alpha`` scales the widths (multiples of 8); ``minimalistic=True`` is the
    variant without squeeze-excite, hard-swish or 5x5 kernels (ReLU only).
    """
    return _mobilenet_v3(keras.applications.MobileNetV3Large, input_shape, classes, alpha, minimalistic, weights,
                         name)
