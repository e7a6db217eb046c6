"""edgeconv.verify.layerwise on real architectures (issue 18): the fp32 layer report is a self-test of the matcher.

Random weights with BatchNorm statistics estimated on the inputs (as edgeconv's export does), 32x32 inputs. Every
matched layer must equal its fp32 TFLite tensor at float rounding on inputs the matches were not proven on, and the
squeeze-excite convs whose tensors the converter fused with the hard-sigmoid's ``+3`` and ReLU6 must be reported
not comparable (fused into the ReLU6 whose value the tensor holds), never matched by shape.
"""
from __future__ import annotations

import numpy as np
import pytest

from edgeconv.verify.layerwise import PROOF_SAMPLES, PROOF_SQNR_DB, compare_layers

SIZE = 32


def _app(name):
    import keras

    a = keras.applications
    shape = (SIZE, SIZE, 3)
    return {"MobileNetV3Small": lambda: a.MobileNetV3Small(input_shape=shape, alpha=0.75, weights=None, classes=10),
            "MobileNetV3Large": lambda: a.MobileNetV3Large(input_shape=shape, alpha=0.75, weights=None, classes=10),
            "MobileNetV2": lambda: a.MobileNetV2(input_shape=shape, alpha=0.35, weights=None, classes=10),
            "EfficientNetB0": lambda: a.EfficientNetB0(input_shape=shape, weights=None, classes=10)}[name]()


def _zoo(name):
    from edgeconv import models

    return models.create_model(name, input_shape=(SIZE, SIZE, 3), classes=10, **models.model_info(name).small_kwargs)


CASES = [pytest.param("zoo", "mobilenetv3_small", id="zoo-mobilenetv3_small"),
         pytest.param("app", "MobileNetV2", id="app-MobileNetV2", marks=pytest.mark.slow),
         pytest.param("app", "MobileNetV3Small", id="app-MobileNetV3Small", marks=pytest.mark.slow),
         pytest.param("app", "MobileNetV3Large", id="app-MobileNetV3Large", marks=pytest.mark.slow),
         pytest.param("app", "EfficientNetB0", id="app-EfficientNetB0", marks=pytest.mark.slow)]


@pytest.mark.parametrize("kind,name", CASES)
def test_fp32_layer_report_is_a_clean_self_test(kind, name, digits, tmp_path):
    import keras

    from edgeconv.models.batchnorm import estimate_batchnorm_statistics
    from edgeconv.pipeline.trace import trace
    from edgeconv.tflite.convert import convert_tflite

    keras.utils.set_random_seed(0)
    model = _zoo(name) if kind == "zoo" else _app(name)
    (xtr, _), (xte, _) = digits
    # V2 takes [-1, 1]; the others rescale pixels inside
    scale = (lambda x: x / 127.5 - 1.0) if name == "MobileNetV2" else (lambda x: x)
    estimate_batchnorm_statistics(model, scale(xtr[:64]))
    fp32 = convert_tflite(trace(model, tmp_path), "fp32")
    x = scale(xte[:PROOF_SAMPLES + 2])  # two inputs the matches were not proven on
    rep = compare_layers(model, fp32, x)
    assert rep.self_test and "passed" in rep.self_test
    assert min(s.sqnr_db for s in rep.layers) >= PROOF_SQNR_DB  # measured >= 90 dB
    assert all(s.output_sqnr_db is None for s in rep.layers)  # nothing to rank on fp32
    keras_layers = [layer.name for layer in model.layers if not isinstance(layer, keras.layers.InputLayer)]
    matched = {s.layer for s in rep.layers}
    assert set(rep.not_comparable) | matched <= set(keras_layers) and not set(rep.not_comparable) & matched
    assert len(matched) > 0.4 * len(keras_layers)
    assert rep.layers[-1].layer == model.outputs[0]._keras_history.operation.name  # noqa: SLF001
    reasons = set(rep.not_comparable.values())
    assert all(r.startswith(("fused into ", "same tensor as ")) for r in reasons), reasons
    se_convs = [n for n in keras_layers if "squeeze_excite_conv_1" in n or n.endswith("se_expand")]
    assert bool(se_convs) == (name != "MobileNetV2")
    for n in se_convs:
        if "squeeze_excite_conv_1" in n:  # MobileNetV3: the tensor holds relu6(conv + 3), the hard-sigmoid's ReLU6
            assert n not in matched and type(model.get_layer(rep.not_comparable[n].removeprefix("fused into ")))\
                .__name__ == "ReLU", rep.not_comparable[n]
        else:  # EfficientNet's Conv2D(activation="sigmoid") computes its own output: matched at float rounding
            assert rep.layer(n).sqnr_db >= PROOF_SQNR_DB
