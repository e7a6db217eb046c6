"""edgeconv.pipeline.inputs: samples + preprocessing -> model inputs, the same rule for calibration and validation."""
from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from edgeconv.calibration import CalibrationError, load_samples
from edgeconv.errors import EdgeconvError
from edgeconv.pipeline.inputs import InputSet, model_inputs
from edgeconv.models.preprocessing import CAFFE, MINUS1_1, RAW_0_255, TORCH, UNIT, Preprocessing

SHAPE = (16, 16, 3)


def test_embedded_inputs_follow_the_preprocessing_formula_exactly():
    pixels = load_samples(None, size=SHAPE[:2], num=40, seed=5).data.astype(np.float64)
    s = model_inputs(None, input_shape=SHAPE, preprocessing=TORCH, num=40, seed=5)
    assert isinstance(s, InputSet) and s.x.shape == (40, 16, 16, 3) and s.x.dtype == np.float32
    expected = (pixels / 255.0 - np.array([0.485, 0.456, 0.406])) / np.array([0.229, 0.224, 0.225])
    np.testing.assert_allclose(s.x, expected, rtol=0, atol=2e-6)
    assert -2.12 < s.x.min() < -2.0 and 2.5 < s.x.max() < 2.65
    caffe = model_inputs(None, input_shape=SHAPE, preprocessing=CAFFE, num=40, seed=5).x
    np.testing.assert_allclose(caffe, pixels[..., ::-1] - np.array([103.939, 116.779, 123.68]), atol=1e-4)
    tf = model_inputs(None, input_shape=SHAPE, preprocessing=MINUS1_1, num=40, seed=5).x
    np.testing.assert_allclose(tf, pixels / 127.5 - 1.0, atol=1e-6)
    assert tf.min() == -1.0 and tf.max() == 1.0
    raw = model_inputs(None, input_shape=SHAPE, preprocessing=RAW_0_255, num=40, seed=5)
    assert np.array_equal(raw.x, pixels.astype(np.float32))
    # the manifest's dict form gives the same inputs
    again = model_inputs(None, input_shape=SHAPE, preprocessing=TORCH.to_dict(), num=40, seed=5)
    assert np.array_equal(again.x, s.x) and again.ids == s.ids


def test_describe_embedded():
    s = model_inputs(None, input_shape=SHAPE, preprocessing=TORCH, num=200)
    assert s.describe() == ("200 samples from the embedded photo set (scikit-image + scikit-learn sample photos), "
                            "calibration split, preprocessing torch_imagenet = (x/255 - mean) / std")
    assert s.skipped == [] and s.labels is None and s.warnings == [] and s.kind == "pixels"


def test_validation_never_sees_calibration_samples(tmp_path):
    cal = model_inputs(None, input_shape=SHAPE, preprocessing=UNIT, num=200)
    val = model_inputs(None, input_shape=SHAPE, preprocessing=UNIT, num=200, split="validation",
                       exclude_ids=cal.ids)
    assert len(val) == 200 and not {i.split("#")[0] for i in val.ids} & {i.split("#")[0] for i in cal.ids}
    assert "validation split" in val.describe()
    # a user folder used for both: validation takes what calibration did not
    for i in range(8):
        Image.fromarray(np.full((8, 8, 3), 20 * i, np.uint8)).save(tmp_path / f"{i}.png")
    (tmp_path / "x.png").write_bytes(b"broken")
    fcal = model_inputs(tmp_path, input_shape=(4, 4, 3), preprocessing=UNIT, num=5)
    fval = model_inputs(tmp_path, input_shape=(4, 4, 3), preprocessing=UNIT, num=200, split="validation",
                        exclude_ids=fcal.ids)
    assert len(fcal) == 5 and len(fcal) + len(fval) == 8 and not set(fcal.ids) & set(fval.ids)
    np.testing.assert_allclose(fval.x[:, 0, 0, 0], [int(i[0]) * 20 / 255 for i in fval.ids], atol=1e-7)
    assert (fcal.skipped + fval.skipped) == [("x.png", "cannot identify image file")]
    noted = fcal if fcal.skipped else fval
    assert noted.describe().endswith(", 1 unreadable file skipped")


def test_float_arrays_are_used_as_given_and_suspicious_ranges_noted(tmp_path):
    x = np.random.default_rng(0).uniform(-1, 1, (6, 16, 16, 3)).astype(np.float32)
    np.savez(tmp_path / "pre.npz", x=x, y=np.arange(6))
    s = model_inputs(tmp_path / "pre.npz", input_shape=SHAPE, preprocessing=MINUS1_1, num=6, split="all")
    assert s.kind == "model_input" and s.warnings == []
    assert np.array_equal(s.x, x[s.labels]) and sorted(s.labels.tolist()) == list(range(6))
    assert s.describe() == (f"6 samples from {tmp_path / 'pre.npz'}, all split, float model inputs used as given "
                            f"(no preprocessing), with labels")
    np.save(tmp_path / "pixels_as_float.npy", (x + 1) * 127.5)
    s = model_inputs(tmp_path / "pixels_as_float.npy", input_shape=SHAPE, preprocessing=MINUS1_1, num=6)
    assert len(s.warnings) == 1 and "but preprocessing tf_-1_1 gives -1..1" in s.warnings[0]
    np.testing.assert_allclose(s.x.max(), ((x + 1) * 127.5).max())  # noted, not altered


def test_uint8_arrays_get_preprocessed_and_gray_models(tmp_path):
    px = np.random.default_rng(1).integers(0, 256, (5, 16, 16, 1), dtype=np.uint8)
    np.save(tmp_path / "gray.npy", px)
    gray = Preprocessing("gray", scale=1 / 255.0, mean=(0.5,), std=(0.25,))
    s = model_inputs(tmp_path / "gray.npy", input_shape=(16, 16, 1), preprocessing=gray, num=5, split="all")
    idx = [int(i.split("[")[1][:-1]) for i in s.ids]
    np.testing.assert_allclose(s.x, (px[idx] / 255.0 - 0.5) / 0.25, atol=2e-6)
    assert s.describe().endswith("preprocessing gray = (x/255 - 0.5) / 0.25")
    with pytest.raises(CalibrationError) as e:
        model_inputs(tmp_path / "gray.npy", input_shape=(16, 16, 1), preprocessing=TORCH, num=5)
    assert "does not fit a 1-channel model input" in str(e.value) and e.value.exit_code == 2


def test_bad_shapes_and_preprocessing(tmp_path):
    with pytest.raises(EdgeconvError) as e:
        model_inputs(None, input_shape=(None, None, 3), preprocessing=TORCH, num=4)
    assert "is not a fixed (H, W, C) image shape" in str(e.value) and e.value.exit_code == 2
    with pytest.raises(CalibrationError) as e:
        model_inputs(None, input_shape=SHAPE, preprocessing=Preprocessing("broken", std=(0.0,)), num=4)
    assert str(e.value) == ("preprocessing broken = x / 0 turns embedded photo set (scikit-image + scikit-learn "
                            "sample photos) into NaN or inf model inputs: check its scale, mean and std")
    with pytest.raises(CalibrationError, match="no preprocessing was given"):
        model_inputs(None, input_shape=SHAPE, preprocessing=None, num=4)
    np.save(tmp_path / "nan.npy", np.full((2, 16, 16, 3), np.nan, np.float32))
    with pytest.raises(CalibrationError, match="contains NaN or inf values"):
        model_inputs(tmp_path / "nan.npy", input_shape=SHAPE, preprocessing=TORCH, num=4)
