"""TFLITE_METADATA writer/reader: round trip, byte determinism, and what MediaPipe Tasks actually does with the file.

The models are tiny but *trained* (random weights give near-uniform outputs, on which agreement means nothing):
a colour classifier (dominant colour of a noisy 32x32 image, Rescaling inside the model) and a grayscale
"bright quadrant" classifier. "Probe" models output the per-channel mean of their input, so MediaPipe's
classification scores show exactly what it fed the model.
"""
from __future__ import annotations

import io
import os
import zipfile

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np
import pytest

from edgeconv.tflite import android_metadata as am
from edgeconv.tflite.android_metadata import (ImageInputSpec, MetadataError, ModelDescription, OutputSpec,
                                              Uint8InputMismatchError, UnsupportedPreprocessingError,
                                              mediapipe_problems, normalization_from_preprocessing, read_metadata,
                                              write_metadata)

SIZE = 32
COLORS = np.array([[220, 40, 40], [40, 200, 40], [40, 40, 220], [220, 220, 40]], np.float32)
COLOR_LABELS = ("red", "green", "blue", "yellow")
QUAD_LABELS = ("top-left", "top-right", "bottom-left", "bottom-right")
LUMA = np.array([0.299, 0.587, 0.114], np.float32)  # ITU-R BT.601, what most "to grayscale" code uses
DESC = ModelDescription(name="tiny colour net", version="3.1", description="Dominant colour of a 32x32 image.",
                        author="edgeconv tests", license="Apache-2.0")
MIN_AGREEMENT = 0.95


# ------------------------------------------------------------------------------------------------ data

def colour_images(n: int, seed: int):
    rng = np.random.default_rng(seed)
    y = rng.integers(0, len(COLORS), n)
    x = COLORS[y][:, None, None, :] + rng.normal(0, 35, (n, SIZE, SIZE, 3))
    return np.clip(x, 0, 255).astype(np.uint8), y


def quadrant_images(n: int, seed: int):
    """1-channel images whose class is the bright quadrant."""
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 4, n)
    x = rng.normal(70, 30, (n, SIZE, SIZE, 1))
    h = SIZE // 2
    for i, k in enumerate(y):
        r, c = divmod(int(k), 2)
        x[i, r * h:(r + 1) * h, c * h:(c + 1) * h] += 120
    return np.clip(x, 0, 255).astype(np.uint8), y


def with_extremes(x: np.ndarray) -> np.ndarray:
    """Calibration data plus one black and one white image, so the uint8 input range is exactly 0..255."""
    shape = (1,) + x.shape[1:]
    return np.concatenate([x.astype(np.float32), np.zeros(shape, np.float32), np.full(shape, 255, np.float32)])


# --------------------------------------------------------------------------------------- model helpers

def train(model, x, y, epochs: int = 3):
    import keras

    model.compile(keras.optimizers.Adam(1e-2), "sparse_categorical_crossentropy")
    model.fit(x.astype(np.float32), y, epochs=epochs, batch_size=64, verbose=0)
    return model


def convert(model, precision: str, calibration: np.ndarray | None = None, io_type=None) -> bytes:
    import tensorflow as tf

    conv = tf.lite.TFLiteConverter.from_keras_model(model)
    if precision == "fp16":
        conv.optimizations = [tf.lite.Optimize.DEFAULT]
        conv.target_spec.supported_types = [tf.float16]
    elif precision == "int8":
        cal = calibration.astype(np.float32)

        def representative():
            for i in range(len(cal)):
                yield [cal[i:i + 1]]

        conv.optimizations = [tf.lite.Optimize.DEFAULT]
        conv.representative_dataset = representative
        conv.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
        conv.inference_input_type = io_type or tf.uint8
        conv.inference_output_type = io_type or tf.uint8
    return conv.convert()


def run_litert(model_bytes: bytes, images: np.ndarray) -> np.ndarray:
    from ai_edge_litert.interpreter import Interpreter

    it = Interpreter(model_content=model_bytes)
    it.allocate_tensors()
    inp, out = it.get_input_details()[0], it.get_output_details()[0]
    res = []
    for im in images:
        it.set_tensor(inp["index"], im[None].astype(inp["dtype"]))
        it.invoke()
        res.append(it.get_tensor(out["index"])[0].copy())
    return np.stack(res)


def input_quantization(model_bytes: bytes) -> tuple[float, int]:
    from ai_edge_litert.interpreter import Interpreter

    return Interpreter(model_content=model_bytes).get_input_details()[0]["quantization"]


def buffer_data_offsets(model_bytes: bytes) -> list[int]:
    from ai_edge_litert import schema_py_generated as s

    m = s.Model.GetRootAs(model_bytes, 0)
    offs = []
    for i in range(m.BuffersLength()):
        b = m.Buffers(i)
        o = b._tab.Offset(4)
        if o and b.DataLength():
            offs.append(b._tab.Vector(o))
    return offs


# ------------------------------------------------------------------------------------------- MediaPipe

@pytest.fixture(scope="module")
def mp():
    return pytest.importorskip("mediapipe", reason="MediaPipe checks need the mediapipe package")


def mp_classify(mp, model_bytes: bytes, images: np.ndarray, max_results: int = 4):
    """MediaPipe Tasks ImageClassifier on uint8 RGB images at model size: list of categories per image."""
    from mediapipe.tasks.python import BaseOptions, vision

    opts = vision.ImageClassifierOptions(base_options=BaseOptions(model_asset_buffer=model_bytes),
                                         max_results=max_results)
    with vision.ImageClassifier.create_from_options(opts) as clf:
        return [clf.classify(mp.Image(image_format=mp.ImageFormat.SRGB, data=np.ascontiguousarray(im)))
                .classifications[0].categories for im in images]


def mp_error(mp, model_bytes: bytes) -> str:
    with pytest.raises(Exception) as exc:
        mp_classify(mp, model_bytes, np.zeros((1, SIZE, SIZE, 3), np.uint8))
    return str(exc.value)


def probe_scores(cats_per_image) -> np.ndarray:
    """Probe outputs (per-channel means) recovered from MediaPipe's categories (index = channel)."""
    out = np.zeros((len(cats_per_image), 3), np.float32)
    for i, cats in enumerate(cats_per_image):
        for c in cats:
            out[i, c.index] = c.score
    return out


# ---------------------------------------------------------------------------------------------- models

@pytest.fixture(scope="module")
def colour_data():
    return colour_images(512, 0), colour_images(40, 1)


@pytest.fixture(scope="module")
def colour_model(colour_data):
    """Trained colour classifier taking raw pixels 0..255 (normalization inside, as edgeconv exports)."""
    import keras
    from keras import layers

    keras.utils.set_random_seed(0)
    model = keras.Sequential([
        keras.Input((SIZE, SIZE, 3)), layers.Rescaling(1 / 127.5, offset=-1),
        layers.Conv2D(8, 3, strides=2, activation="relu"), layers.Conv2D(16, 3, strides=2, activation="relu"),
        layers.GlobalAveragePooling2D(), layers.Dense(len(COLORS), activation="softmax")])
    (x, y), _ = colour_data
    return train(model, x, y)


@pytest.fixture(scope="module")
def colour_keras(colour_model, colour_data):
    _, (xt, yt) = colour_data
    p = np.asarray(colour_model(xt.astype(np.float32), training=False))
    # The reference must be meaningful: right and confident, else agreement says nothing.
    assert (p.argmax(1) == yt).mean() >= 0.95 and p.max(1).mean() > 0.9
    return p


@pytest.fixture(scope="module")
def colour_tflite(colour_model, colour_data):
    (x, _), _ = colour_data
    return {"fp32": convert(colour_model, "fp32"), "fp16": convert(colour_model, "fp16"),
            "int8": convert(colour_model, "int8", with_extremes(x[:64]))}


def colour_meta(model_bytes: bytes) -> bytes:
    return write_metadata(model_bytes, DESC, [ImageInputSpec()], [OutputSpec(labels=COLOR_LABELS)])


@pytest.fixture(scope="module")
def probe_model():
    """Output = per-channel mean of the input: MediaPipe's scores then show the input it fed."""
    import keras

    inp = keras.Input((SIZE, SIZE, 3))
    return keras.Model(inp, keras.layers.GlobalAveragePooling2D()(inp))


PROBE_PIXELS = np.array([[0, 128, 255], [10, 100, 200], [255, 0, 50]], np.uint8)
PROBE_IMAGES = np.broadcast_to(PROBE_PIXELS[:, None, None, :], (3, SIZE, SIZE, 3)).copy()
PROBE_OUT = [OutputSpec(name="channel_means", description="Mean of each input channel.", kind="regression")]


# -------------------------------------------------------------------------------------- preprocessing

def test_normalization_from_preprocessing_matches_edgeconv_rule():
    rng = np.random.default_rng(0)
    pixels = rng.uniform(0, 255, (100, 3)).astype(np.float64)
    cases = [(1 / 127.5, (1.0,), (1.0,)), (1 / 255, (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)),
             (1.0, (0.0,), (1.0,)), (1 / 255, (0.5,), (0.25,))]
    for scale, mean_p, std_p in cases:
        mean, std = normalization_from_preprocessing(scale, mean_p, std_p, bgr=False)
        edgeconv = (pixels * scale - np.asarray(mean_p)) / np.asarray(std_p)
        metadata = (pixels - np.asarray(mean)) / np.asarray(std)
        np.testing.assert_allclose(metadata, edgeconv, rtol=1e-5, atol=1e-5)
    assert normalization_from_preprocessing(1 / 127.5, 1.0, 1.0) == ((127.5,), (127.5,))
    assert normalization_from_preprocessing(1.0, (0.0, 0.0, 0.0), (1.0,)) == ((0.0,), (1.0,))  # equal -> 1 value
    assert len(normalization_from_preprocessing(1 / 255, (0.485, 0.456, 0.406), (0.229, 0.224, 0.225))[0]) == 3


def test_bgr_preprocessing_is_refused():
    with pytest.raises(UnsupportedPreprocessingError, match="BGR"):
        normalization_from_preprocessing(1.0, (103.939, 116.779, 123.68), (1.0,), bgr=True)
    with pytest.raises(UnsupportedPreprocessingError, match="BGR"):
        ImageInputSpec.from_preprocessing(1.0, (103.939, 116.779, 123.68), (1.0,), bgr=True)
    with pytest.raises(UnsupportedPreprocessingError):
        normalization_from_preprocessing(0.0, 0.0, 1.0)


# ------------------------------------------------------------------------------------------ round trip

@pytest.mark.parametrize("precision", ["fp32", "fp16", "int8"])
def test_round_trip(colour_tflite, precision):
    plain = colour_tflite[precision]
    assert read_metadata(plain) is None
    meta = read_metadata(colour_meta(plain))
    assert (meta["name"], meta["version"], meta["description"], meta["author"], meta["license"]) == (
        DESC.name, DESC.version, DESC.description, DESC.author, DESC.license)
    assert meta["min_parser_version"] == "1.0.0"
    (inp,), (out,) = meta["inputs"], meta["outputs"]
    assert (inp["content"], inp["color_space"], inp["mean"], inp["std"]) == ("image", "RGB", [0.0], [1.0])
    assert inp["stats"] == {"min": [0.0], "max": [255.0]}  # float: (0-0)/1..(255-0)/1; uint8: 0..255
    assert out["labels"] == list(COLOR_LABELS)
    assert out["associated_files"][0]["name"] == "labels.txt"
    assert out["associated_files"][0]["type"] == "TENSOR_AXIS_LABELS"
    assert out["stats"] == {"min": [0.0], "max": [1.0 if precision != "int8" else 255.0]}
    assert meta["packed_files"] == ["labels.txt"] and meta["missing_files"] == []


def test_round_trip_per_channel_normalization(colour_tflite):
    spec = ImageInputSpec.from_preprocessing(1 / 255, (0.485, 0.456, 0.406), (0.229, 0.224, 0.225))
    meta = read_metadata(write_metadata(colour_tflite["fp32"], DESC, [spec], [OutputSpec(labels=COLOR_LABELS)]))
    np.testing.assert_allclose(meta["inputs"][0]["mean"], [123.675, 116.28, 103.53], rtol=1e-6)
    np.testing.assert_allclose(meta["inputs"][0]["std"], [58.395, 57.12, 57.375], rtol=1e-6)
    np.testing.assert_allclose(meta["inputs"][0]["stats"]["min"], [-123.675 / 58.395, -116.28 / 57.12,
                                                                  -103.53 / 57.375], rtol=1e-5)


def test_file_layout(colour_tflite):
    """Metadata buffer with identifier M001; labels in a stored zip at the end, offsets from the file start."""
    from ai_edge_litert import schema_py_generated as s

    data = colour_meta(colour_tflite["fp32"])
    m = s.Model.GetRootAs(data, 0)
    names = [m.Metadata(i).Name().decode() for i in range(m.MetadataLength())]
    assert names[-1] == "TFLITE_METADATA" and "min_runtime_version" in names
    buf = m.Buffers(m.Metadata(len(names) - 1).Buffer()).DataAsNumpy().tobytes()
    assert buf[4:8] == b"M001"
    with zipfile.ZipFile(io.BytesIO(data)) as zf:
        (info,) = zf.infolist()
        assert info.compress_type == zipfile.ZIP_STORED and info.date_time == (1980, 1, 1, 0, 0, 0)
        assert zf.read("labels.txt") == b"red\ngreen\nblue\nyellow\n"
        assert data[info.header_offset:info.header_offset + 4] == b"PK\x03\x04"
    assert data[:info.header_offset] == am._pack_model(am._load_model(data))  # zip starts right after the FlatBuffer
    # weights stay 16-byte aligned (schema: force_align 16), which a plain object-API re-pack does not ensure
    assert all(off % 16 == 0 for off in buffer_data_offsets(data))


def test_zip_offsets_are_absolute(colour_tflite):
    data = colour_meta(colour_tflite["fp32"])
    eocd = data.rindex(b"PK\x05\x06")
    cd_size, cd_offset = np.frombuffer(data[eocd + 12:eocd + 20], "<u4")
    assert cd_offset + cd_size == eocd  # no prefix correction needed: offsets count from the file start


# ------------------------------------------------------------------------------------------ determinism

def test_write_is_deterministic_and_idempotent(colour_tflite):
    for plain in colour_tflite.values():
        once = colour_meta(plain)
        assert colour_meta(plain) == once
        assert colour_meta(once) == once  # existing TFLITE_METADATA and zip replaced, not duplicated
        assert read_metadata(colour_meta(once))["packed_files"] == ["labels.txt"]
    plain = colour_tflite["fp32"]
    relabelled = write_metadata(colour_meta(plain), DESC, [ImageInputSpec()],
                                [OutputSpec(labels=("r", "g", "b", "y"))])
    assert relabelled == write_metadata(plain, DESC, [ImageInputSpec()], [OutputSpec(labels=("r", "g", "b", "y"))])
    assert read_metadata(relabelled)["outputs"][0]["labels"] == ["r", "g", "b", "y"]
    stripped = am.strip_metadata(colour_meta(plain))
    assert read_metadata(stripped) is None and colour_meta(stripped) == colour_meta(plain)


def test_other_metadata_entries_survive_a_rewrite(colour_tflite, colour_data):
    """A metadata entry added after TFLITE_METADATA keeps its buffer when buffers are renumbered."""
    from ai_edge_litert import schema_py_generated as s

    _, (xt, _) = colour_data
    once = colour_meta(colour_tflite["fp32"])
    model = am._load_model(once)
    extra = s.BufferT()
    extra.data = np.frombuffer(b'{"edgeconv": 1}', np.uint8)
    model.buffers.append(extra)
    entry = s.MetadataT()
    entry.name, entry.buffer = "EDGECONV_METADATA", len(model.buffers) - 1
    model.metadata.append(entry)
    mixed = am._pack_model(model)  # TFLITE_METADATA's buffer is now not the last one
    rewritten = colour_meta(mixed)
    m = s.Model.GetRootAs(rewritten, 0)
    entries = {m.Metadata(i).Name().decode(): m.Metadata(i).Buffer() for i in range(m.MetadataLength())}
    assert m.Buffers(entries["EDGECONV_METADATA"]).DataAsNumpy().tobytes() == b'{"edgeconv": 1}'
    assert m.BuffersLength() == s.Model.GetRootAs(once, 0).BuffersLength() + 1
    assert read_metadata(rewritten)["outputs"][0]["labels"] == list(COLOR_LABELS)
    np.testing.assert_array_equal(run_litert(rewritten, xt[:8]), run_litert(colour_tflite["fp32"], xt[:8]))


@pytest.mark.parametrize("precision", ["fp32", "fp16", "int8"])
def test_litert_outputs_unchanged(colour_tflite, colour_data, precision):
    _, (xt, _) = colour_data
    plain = colour_tflite[precision]
    np.testing.assert_array_equal(run_litert(colour_meta(plain), xt[:10]), run_litert(plain, xt[:10]))


# ------------------------------------------------------------------------------------------- validation

def test_mismatched_descriptions_are_refused(colour_tflite):
    plain = colour_tflite["fp32"]
    with pytest.raises(MetadataError, match="3 labels"):
        write_metadata(plain, DESC, [ImageInputSpec()], [OutputSpec(labels=COLOR_LABELS[:3])])
    with pytest.raises(MetadataError, match="input specs"):
        write_metadata(plain, DESC, [], [OutputSpec(labels=COLOR_LABELS)])
    with pytest.raises(MetadataError, match="output specs"):
        write_metadata(plain, DESC, [ImageInputSpec()], [OutputSpec(), OutputSpec()])
    with pytest.raises(MetadataError, match="GRAYSCALE"):
        write_metadata(plain, DESC, [ImageInputSpec(color_space="GRAYSCALE")], [OutputSpec(labels=COLOR_LABELS)])
    with pytest.raises(MetadataError, match="single-line"):
        OutputSpec(labels=("a\nb", "c"))
    with pytest.raises(MetadataError, match="std"):
        ImageInputSpec(mean=(0.0,), std=(0.0,))
    with pytest.raises(MetadataError, match="TFL3"):
        write_metadata(b"not a model", DESC, [ImageInputSpec()], [OutputSpec()])


# --------------------------------------------------------------------------------------------- MediaPipe

@pytest.mark.parametrize("precision", ["fp32", "fp16", "int8"])
def test_mediapipe_classifies_like_keras(mp, colour_tflite, colour_keras, colour_data, precision):
    _, (xt, _) = colour_data
    data = colour_meta(colour_tflite[precision])
    assert mediapipe_problems(data) == []
    cats = mp_classify(mp, data, xt)
    ref = colour_keras.argmax(1)
    index_agree = np.mean([c[0].index == r for c, r in zip(cats, ref)])
    name_agree = np.mean([c[0].category_name == COLOR_LABELS[r] for c, r in zip(cats, ref)])
    assert len(xt) >= 20
    assert index_agree >= MIN_AGREEMENT and name_agree >= MIN_AGREEMENT, (index_agree, name_agree)


def test_mediapipe_refuses_float_model_without_metadata(mp, colour_tflite):
    plain = colour_tflite["fp32"]
    msg = mp_error(mp, plain)
    assert "NormalizationOptions" in msg
    assert any("NormalizationOptions" in p for p in mediapipe_problems(plain))


def test_mediapipe_refuses_int8_input(mp, colour_model, colour_data):
    import tensorflow as tf

    (x, _), _ = colour_data
    data = colour_meta(convert(colour_model, "int8", with_extremes(x[:32]), io_type=tf.int8))
    msg = mp_error(mp, data)
    assert "Requested one of these types: uint8/float32, got INT8" in msg
    assert any("got INT8" in p for p in mediapipe_problems(data))


def test_mediapipe_refuses_per_channel_normalization(mp, colour_tflite):
    spec = ImageInputSpec.from_preprocessing(1 / 255, (0.485, 0.456, 0.406), (0.229, 0.224, 0.225))
    data = write_metadata(colour_tflite["fp32"], DESC, [spec], [OutputSpec(labels=COLOR_LABELS)])
    assert "Per-channel image normalization is not available." in mp_error(mp, data)
    assert mediapipe_problems(data) == ["Per-channel image normalization is not available."]


def test_mediapipe_needs_the_packed_labels(mp, colour_tflite):
    """Re-serializing after writing (what quantizers and rewriters do) drops the zip: MediaPipe then fails."""
    reserialized = am._pack_model(am._load_model(colour_meta(colour_tflite["fp32"])))
    assert read_metadata(reserialized)["missing_files"] == ["labels.txt"]
    assert "No associated file with name: labels.txt" in mp_error(mp, reserialized)
    assert any("not packed" in p for p in mediapipe_problems(reserialized))


def test_mediapipe_rejects_a_compressed_zip(mp, colour_tflite):
    """Why the writer stores the labels uncompressed."""
    bare = am.strip_metadata(colour_meta(colour_tflite["fp32"]))
    flat = am._pack_model(am._load_model(colour_meta(colour_tflite["fp32"])))
    assert len(flat) > len(bare)
    out = io.BytesIO(flat)
    out.seek(0, 2)
    with zipfile.ZipFile(out, "a", compression=zipfile.ZIP_DEFLATED) as zf:
        zf.writestr("labels.txt", "\n".join(COLOR_LABELS) + "\n")
    assert "Expected uncompressed zip archive." in mp_error(mp, out.getvalue())


def test_mediapipe_applies_normalization_exactly(mp, probe_model):
    """Float input: MediaPipe feeds (pixel - mean) / std (asymmetric values catch a swapped or inverted rule)."""
    data = write_metadata(convert(probe_model, "fp32"), DESC, [ImageInputSpec(mean=(100.0,), std=(50.0,))],
                          PROBE_OUT)
    got = probe_scores(mp_classify(mp, data, PROBE_IMAGES, max_results=3))
    # MediaPipe maps 0..255 linearly onto [(0 - mean) / std, (255 - mean) / std] in float32: ~2e-5 rounding
    np.testing.assert_allclose(got, (PROBE_PIXELS.astype(np.float32) - 100.0) / 50.0, atol=1e-4)


def test_mediapipe_feeds_raw_pixels_to_uint8_inputs(mp, probe_model):
    """uint8 input: MediaPipe copies raw pixels and ignores both normalization metadata and quantization."""
    plain = convert(probe_model, "int8", with_extremes(np.random.default_rng(0).uniform(0, 255, (8, SIZE, SIZE, 3))))
    assert input_quantization(plain) == (1.0, 0)  # calibrated on exactly 0..255: raw uint8 value IS the pixel
    good = write_metadata(plain, DESC, [ImageInputSpec()], PROBE_OUT)
    np.testing.assert_allclose(probe_scores(mp_classify(mp, good, PROBE_IMAGES, 3)), PROBE_PIXELS, atol=1e-5)
    # Metadata saying (p - 100) / 50 changes nothing in what MediaPipe feeds: our check refuses to write it.
    with pytest.raises(Uint8InputMismatchError):
        write_metadata(plain, DESC, [ImageInputSpec(mean=(100.0,), std=(50.0,))], PROBE_OUT)
    lying = write_metadata(plain, DESC, [ImageInputSpec(mean=(100.0,), std=(50.0,))], PROBE_OUT,
                           check_uint8_input=False)
    np.testing.assert_allclose(probe_scores(mp_classify(mp, lying, PROBE_IMAGES, 3)), PROBE_PIXELS, atol=1e-5)
    assert any("uint8 input" in p for p in mediapipe_problems(lying))


def test_uint8_input_calibrated_on_a_narrow_range_is_refused(mp, probe_model):
    """Without a white image in the calibration data the input scale is not 1: phones would feed wrong values."""
    cal = np.random.default_rng(0).uniform(30, 200, (8, SIZE, SIZE, 3)).astype(np.float32)
    plain = convert(probe_model, "int8", cal)
    scale, zero_point = input_quantization(plain)
    assert zero_point == 0 and scale < 0.9  # the converter keeps 0 in range but the max comes from the data
    with pytest.raises(Uint8InputMismatchError, match="white"):
        write_metadata(plain, DESC, [ImageInputSpec()], PROBE_OUT)
    forced = write_metadata(plain, DESC, [ImageInputSpec()], PROBE_OUT, check_uint8_input=False)
    got = probe_scores(mp_classify(mp, forced, PROBE_IMAGES, 3))
    assert np.abs(got - PROBE_PIXELS).max() > 20  # what the app would really get: pixels scaled by `scale`


def test_uint8_input_for_a_model_expecting_minus1_1(mp, colour_data):
    """Normalization outside the graph: calibrating on [-1, 1] gives scale 2/255, zero point 127 (0.5 level off)."""
    import keras
    from keras import layers

    (x, y), (xt, _) = colour_data
    keras.utils.set_random_seed(1)
    model = keras.Sequential([
        keras.Input((SIZE, SIZE, 3)), layers.Conv2D(8, 3, strides=2, activation="relu"),
        layers.Conv2D(16, 3, strides=2, activation="relu"), layers.GlobalAveragePooling2D(),
        layers.Dense(len(COLORS), activation="softmax")])
    train(model, x.astype(np.float32) / 127.5 - 1, y)
    ref = np.asarray(model(xt.astype(np.float32) / 127.5 - 1, training=False)).argmax(1)
    spec = ImageInputSpec.from_preprocessing(1 / 127.5, 1.0, 1.0)
    assert (spec.mean, spec.std) == ((127.5,), (127.5,))
    for precision in ("fp32", "int8"):
        plain = convert(model, precision, with_extremes(x[:64]) / 127.5 - 1)
        if precision == "int8":
            scale, zero_point = input_quantization(plain)
            assert abs(scale - 2 / 255) < 1e-7 and zero_point in (127, 128)
            assert am.uint8_input_error(scale, zero_point, spec.mean, spec.std) == pytest.approx(0.5, abs=1e-3)
        data = write_metadata(plain, DESC, [spec], [OutputSpec(labels=COLOR_LABELS)])
        assert mediapipe_problems(data) == []
        cats = mp_classify(mp, data, xt)
        assert np.mean([c[0].index == r for c, r in zip(cats, ref)]) >= MIN_AGREEMENT


# ---------------------------------------------------------------------------------------------- grayscale

@pytest.fixture(scope="module")
def gray_model():
    import keras
    from keras import layers

    keras.utils.set_random_seed(0)
    x, y = quadrant_images(512, 0)
    model = keras.Sequential([
        keras.Input((SIZE, SIZE, 1)), layers.Rescaling(1 / 127.5, offset=-1),
        layers.Conv2D(8, 3, strides=2, activation="relu"), layers.Conv2D(16, 3, strides=2, activation="relu"),
        layers.Flatten(), layers.Dense(4, activation="softmax")])
    return train(model, x, y)


def test_mediapipe_refuses_one_channel_models(mp, gray_model):
    plain = convert(gray_model, "fp32")
    data = write_metadata(plain, DESC, [ImageInputSpec(color_space="GRAYSCALE")],
                          [OutputSpec(labels=QUAD_LABELS)])
    assert read_metadata(data)["inputs"][0]["color_space"] == "GRAYSCALE"  # valid metadata, written and read
    assert "Only RGB color space is supported for now." in mp_error(mp, data)
    assert "where depth = 3 or 4. Got 1 x 32 x 32 x 1." in mp_error(mp, plain)
    assert len(mediapipe_problems(data)) == 2


@pytest.mark.parametrize("precision", ["fp32", "int8"])
def test_grayscale_model_behind_an_rgb_to_gray_front_end(mp, gray_model, precision):
    """The way to ship a grayscale model to phones: a 3-channel input and the luma conversion inside the graph."""
    import keras

    front = keras.layers.Conv2D(1, 1, use_bias=False, trainable=False, name="rgb_to_gray")
    inp = keras.Input((SIZE, SIZE, 3))
    gray = front(inp)
    front.set_weights([LUMA.reshape(1, 1, 3, 1)])
    rgb_model = keras.Model(inp, gray_model(gray))

    xg, yg = quadrant_images(40, 1)
    tint = np.random.default_rng(3).uniform(0.6, 1.4, (len(xg), 1, 1, 3))  # coloured test images
    xc = np.clip(xg.astype(np.float32) * tint, 0, 255).astype(np.uint8)
    ref = np.asarray(gray_model((xc.astype(np.float32) @ LUMA)[..., None], training=False))
    assert (ref.argmax(1) == yg).mean() >= 0.95 and ref.max(1).mean() > 0.9

    cal = with_extremes(np.repeat(quadrant_images(64, 2)[0], 3, axis=-1))
    plain = convert(rgb_model, precision, cal)
    data = write_metadata(plain, DESC, [ImageInputSpec(description="RGB image; converted to gray (BT.601 luma) "
                                                                   "inside the model.")],
                          [OutputSpec(labels=QUAD_LABELS)])
    assert mediapipe_problems(data) == []
    cats = mp_classify(mp, data, xc)
    agree = np.mean([c[0].category_name == QUAD_LABELS[r] for c, r in zip(cats, ref.argmax(1))])
    assert agree >= MIN_AGREEMENT, agree
