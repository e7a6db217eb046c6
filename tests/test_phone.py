"""Phone-side truth: the files a default export writes load in MediaPipe Tasks (the API Android / iOS / Python apps
call) and classify like Keras; grayscale models reach it through --rgb-input; the standard TFLITE_METADATA
describes the model's own preprocessing."""
from __future__ import annotations

import numpy as np
import pytest

mp = pytest.importorskip("mediapipe")

LABELS = [f"digit {i}" for i in range(10)]
MIN_AGREEMENT = 0.97  # MediaPipe's top-1 vs Keras' on held-out digits (measured: 0.99-1.00 for fp32/fp16/int8)


def mediapipe_top1(path, images: np.ndarray) -> tuple[np.ndarray, list[str]]:
    from mediapipe.tasks.python import BaseOptions, vision

    opts = vision.ImageClassifierOptions(base_options=BaseOptions(model_asset_path=str(path)), max_results=1)
    idx, names = [], []
    with vision.ImageClassifier.create_from_options(opts) as clf:
        for img in images:
            rgb = np.ascontiguousarray(np.repeat(img, 3, -1) if img.shape[-1] == 1 else img, np.uint8)
            c = clf.classify(mp.Image(image_format=mp.ImageFormat.SRGB, data=rgb)).classifications[0].categories[0]
            idx.append(c.index)
            names.append(c.category_name)
    return np.array(idx), names


@pytest.fixture(scope="module")
def rgb_export(trained_tiny, digits_calibration_npy, tmp_path_factory):
    from edgeconv import export

    path, _ = trained_tiny
    cal, _ = digits_calibration_npy
    tmp = tmp_path_factory.mktemp("phone")
    (tmp / "labels.txt").write_text("\n".join(LABELS) + "\n")
    return export(str(path), precisions=["fp16", "int8"], out_dir=tmp / "out", calibration=cal, calib_samples=100,
                  class_labels=tmp / "labels.txt", quiet=True)


def test_default_export_loads_in_mediapipe_and_classifies_like_keras(rgb_export, digits):
    import keras

    _, (xte, _) = digits
    res = rgb_export
    assert res.validation.passed, res.validation.summary_line()
    model = keras.models.load_model(res.out_dir / res.manifest.reference["file"])
    images = xte[:100].astype(np.uint8)
    ref = model.predict(images.astype(np.float32), verbose=0).argmax(1)
    assert [a.precision for a in res.artifacts] == ["fp32", "fp16", "int8"]
    for a in res.artifacts:
        got, names = mediapipe_top1(res.out_dir / a.file, images)
        agreement = float(np.mean(got == ref))
        assert agreement >= MIN_AGREEMENT, (a.file, agreement)
        assert names == [LABELS[i] for i in got]  # class names from --class-labels, packed in the file
        assert a.metadata["tflite_metadata"]["written"] and a.metadata["tflite_metadata"]["mediapipe_problems"] == []


def test_int8_default_io_is_uint8_raw_pixels(rgb_export):
    int8 = rgb_export.manifest.artifact("tiny_mnv3_int8.tflite")
    assert int8.io_type == "uint8" and int8.inputs[0]["dtype"] == "uint8"
    assert int8.inputs[0]["quantization"] == {"scale": 1.0, "zero_point": 0}  # Rescaling inside: q == pixel
    assert int8.uint8_input == {"scale": 1.0, "zero_point": 0, "error_levels": 0.0}


def test_int8_io_is_refused_by_mediapipe_and_inspect_says_so(trained_tiny, digits_calibration_npy, tmp_path):
    from edgeconv import export
    from edgeconv.inspect import inspect_artifact

    path, _ = trained_tiny
    cal, _ = digits_calibration_npy
    res = export(str(path), precisions=["int8"], io_type="int", out_dir=tmp_path, calibration=cal,
                 calib_samples=50, validate=False, quiet=True)
    assert any("MediaPipe Tasks cannot use" in w and "INT8" in w for w in res.warnings)
    rep = inspect_artifact(res.path("int8"), xnnpack=False, gpu=False)
    assert any("got INT8" in p for p in rep.mediapipe)


def test_metadata_round_trips_through_inspect_with_the_models_normalization(trained_tiny, tmp_path):
    """A user model that expects x / 127.5 - 1 outside the graph: NormalizationOptions mean = std = 127.5."""
    from edgeconv import export
    from edgeconv.inspect import inspect_artifact
    from edgeconv.models import Preprocessing

    path, _ = trained_tiny
    pre = Preprocessing("custom", scale=1 / 127.5, mean=(1.0,), std=(1.0,))
    res = export(str(path), preprocessing=pre, out_dir=tmp_path, validate=False, quiet=True, model_version="3.2")
    rep = inspect_artifact(res.path("fp32"), xnnpack=False, gpu=False)
    tm = rep.tflite_metadata
    assert tm["name"] == "tiny_mnv3" and tm["version"] == "3.2"
    assert tm["inputs"][0]["mean"] == pytest.approx([127.5]) and tm["inputs"][0]["std"] == pytest.approx([127.5])
    assert tm["inputs"][0]["color_space"] == "RGB" and rep.metadata["model"]["name"] == "tiny_mnv3"
    assert rep.mediapipe == []
    assert any("TFLITE_METADATA" in line for line in rep.summary_lines())


def test_bgr_preprocessing_is_reported_not_written_wrong(trained_tiny, tmp_path):
    from edgeconv import export
    from edgeconv.models import Preprocessing

    path, _ = trained_tiny
    pre = Preprocessing("custom", scale=1.0, mean=(0.0,), std=(1.0,), bgr=True)
    res = export(str(path), preprocessing=pre, out_dir=tmp_path, validate=False, quiet=True)
    fp32 = res.artifacts[0]
    assert fp32.metadata["tflite_metadata"]["written"] is False and "BGR" in fp32.metadata["tflite_metadata"]["reason"]
    assert any("no TFLITE_METADATA written" in w for w in res.warnings)


@pytest.fixture(scope="module")
def gray_model(tmp_path_factory, digits):
    """A small grayscale digits classifier (1-channel input, Rescaling inside), trained."""
    import keras

    (xtr, ytr), (xte, yte) = digits
    keras.utils.set_random_seed(0)
    inp = keras.Input((32, 32, 1), name="gray")
    x = keras.layers.Rescaling(1 / 255.0)(inp)
    x = keras.layers.Conv2D(16, 3, strides=2, activation="relu")(x)
    x = keras.layers.Conv2D(32, 3, strides=2, activation="relu")(x)
    x = keras.layers.GlobalAveragePooling2D()(x)
    model = keras.Model(inp, keras.layers.Dense(10, activation="softmax")(x), name="gray_digits")
    model.compile(keras.optimizers.Adam(3e-3), "sparse_categorical_crossentropy")
    model.fit(xtr[..., :1], ytr, epochs=15, batch_size=32, verbose=0)
    d = tmp_path_factory.mktemp("gray")
    model.save(d / "gray_digits.keras")
    np.save(d / "gray.npy", xtr[..., :1].astype(np.uint8))
    return d / "gray_digits.keras", d / "gray.npy"


def test_grayscale_model_reaches_mediapipe_through_rgb_input(gray_model, digits, tmp_path):
    import keras

    from edgeconv import export

    model_file, cal = gray_model
    _, (xte, _) = digits
    gray = xte[:100, ..., :1].astype(np.uint8)
    plain = export(str(model_file), precisions=["int8"], out_dir=tmp_path / "plain", calibration=cal,
                   calib_samples=100, validate=False, quiet=True)
    assert any("--rgb-input" in w for w in plain.warnings)  # MediaPipe refuses 1-channel models: said, not hidden
    res = export(str(model_file), precisions=["int8"], out_dir=tmp_path / "rgb", calibration=cal,
                 calib_samples=100, rgb_input=True, quiet=True)
    assert res.validation.passed, res.validation.summary_line()
    assert res.manifest.model["input_shape"] == [32, 32, 3] and res.manifest.options["rgb_input"] is True
    ref = keras.models.load_model(model_file).predict(gray.astype(np.float32), verbose=0).argmax(1)
    for a in res.artifacts:
        got, _ = mediapipe_top1(res.out_dir / a.file, gray)
        assert float(np.mean(got == ref)) >= 0.95, a.file
