"""edgeconv.verify.layerwise: Keras layer outputs vs the TFLite tensors that hold them, on the trained tiny MobileNetV3."""
from __future__ import annotations

import math

import numpy as np
import pytest

from edgeconv.verify.layerwise import HEALTHY_RMSE_SCALE, SUSPECT_RMSE_SCALE, compare_layers

HSWISH = ["stem_hswish", "b2_expand_hswish", "b2_dw_hswish"]  # the h-swish layers conftest's model names


@pytest.fixture(scope="module")
def tiny(trained_tiny, digits, tmp_path_factory):
    """(Keras model, int8 .tflite bytes, fp16 .tflite bytes, held-out inputs)."""
    import keras

    from edgeconv.tflite.convert import convert_tflite
    from edgeconv.pipeline.trace import trace

    model = keras.saving.load_model(trained_tiny[0], compile=False)
    (xtr, _), (xte, _) = digits
    sm = trace(model, tmp_path_factory.mktemp("lw"))
    return model, convert_tflite(sm, "int8", xtr[:100], "int"), convert_tflite(sm, "fp16"), xte[:16]


def test_int8_layer_report_lists_every_hswish_with_finite_error(tiny, tmp_path):
    model, int8, _, x = tiny
    rep = compare_layers(model, int8, x, artifact="tiny_int8.tflite")
    names = [s.layer for s in rep.layers]
    keras_names = {layer.name for layer in model.layers}
    for h in HSWISH:
        s = rep.layer(h)
        assert "hard_swish" in s.flags and s.op == "HARD_SWISH" and s.matched_by == "name"
        assert all(math.isfinite(v) for v in (s.rmse, s.max_abs, s.sqnr_db, s.rmse_scale, s.local_sqnr_db))
    assert rep.flagged("hard_swish") == [rep.layer(h) for h in HSWISH]
    assert "relu6" in rep.layer("b1_relu6").flags
    assert {"hard_sigmoid", "squeeze_excite"} <= set(rep.layer("b1_se_hsigmoid").flags)
    assert "squeeze_excite" in rep.layer("b1_se_mul").flags
    # the model output (an unnamed TFLite tensor) is matched too, and graph order is kept
    assert rep.layer("probs").matched_by == "output" and names[-1] == "probs"
    assert [s.depth for s in rep.layers] == sorted(s.depth for s in rep.layers)
    worst = rep.worst(3)
    assert worst[0].layer in keras_names and worst[0].rmse_scale >= worst[1].rmse_scale >= worst[2].rmse_scale
    # an honest int8: every layer's own error is near pure rounding, none suspect
    med = float(np.median([s.rmse_scale for s in rep.layers]))
    assert 0.5 * HEALTHY_RMSE_SCALE < med < 1.5 * HEALTHY_RMSE_SCALE
    assert not any(s.suspect for s in rep.layers) and worst[0].rmse_scale < SUSPECT_RMSE_SCALE
    # the error accumulates with depth: the last conv is further from Keras than the stem
    assert rep.layer("b2_project_bn").sqnr_db < rep.layer("stem_bn").sqnr_db
    png = rep.plot(tmp_path / "layers.png")
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and rep.to_dict()["plot"] == "layers.png"


def test_fp16_layers_are_float_and_close(tiny):
    model, _, fp16, x = tiny
    rep = compare_layers(model, fp16, x, max_samples=4)
    assert rep.samples == 4 and all(s.scale is None and s.rmse_scale is None for s in rep.layers)
    assert min(s.sqnr_db for s in rep.layers) > 35  # fp16 weights: measured 47-72 dB
    assert rep.worst(1)[0].layer in {layer.name for layer in model.layers}


def test_tutorial_hswish_layer_is_flagged_by_its_tflite_op(tmp_path, digits):
    """A hand-written h-swish Layer has no telling class or activation name: the HARD_SWISH op gives it away."""
    from helpers import build_tiny_mnv3

    from edgeconv.tflite.convert import convert_tflite
    from edgeconv.pipeline.trace import trace

    model = build_tiny_mnv3(hswish="tutorial")
    fp32 = convert_tflite(trace(model, tmp_path), "fp32")
    rep = compare_layers(model, fp32, digits[1][0][:2])
    for h in HSWISH:
        s = rep.layer(h)
        assert s.layer_class == "TutorialHSwish" and "hard_swish" in s.flags and s.sqnr_db > 80
    assert "hard_sigmoid" in rep.layer("b1_se_hsigmoid").flags


def test_int16x8_tensors_are_judged_by_sqnr_not_the_8bit_rule(tiny, trained_tiny, digits, tmp_path):
    """int16 tensors have a step ~256x finer than the int8 weights' error, so rmse/scale would flag every layer;
    they are reported with their local SQNR instead, and an honest int16x8 is close to Keras everywhere."""
    import keras

    from edgeconv.tflite.convert import convert_tflite
    from edgeconv.pipeline.trace import trace

    model, _, _, x = tiny
    (xtr, _), _ = digits
    sm = trace(keras.saving.load_model(trained_tiny[0], compile=False), tmp_path)
    rep = compare_layers(model, convert_tflite(sm, "int16x8", xtr[:100], "int"), x, max_samples=8)
    int16 = [s for s in rep.layers if s.dtype == "int16"]
    assert len(int16) > 5 and all(s.scale > 0 and s.rmse_scale is None and not s.suspect for s in int16)
    assert min(s.local_sqnr_db for s in int16) > 25
