"""edgeconv.pipeline.load: zoo names, .keras, .h5, SavedModel folders and weights files all become the same Keras model."""
from __future__ import annotations

import numpy as np
import pytest

from edgeconv.errors import EdgeconvError, UsageError
from edgeconv.pipeline.load import load_model


@pytest.fixture(scope="module")
def small_model():
    import keras

    keras.utils.set_random_seed(0)
    inp = keras.Input((16, 16, 3), name="img")
    x = keras.layers.Conv2D(4, 3, activation="relu6", name="c")(inp)
    x = keras.layers.GlobalAveragePooling2D(name="p")(x)
    out = keras.layers.Dense(3, activation="softmax", name="d")(x)
    return keras.Model(inp, out, name="small")


def _x():
    return np.random.default_rng(0).uniform(0, 1, (4, 16, 16, 3)).astype("float32")


def test_zoo_name_with_builder_options():
    m = load_model("mobilenet_v2", input_size=48, classes=5, width={"alpha": 0.35})
    assert m.source_kind == "zoo" and m.input_shape == (48, 48, 3)
    assert m.model.output_shape == (None, 5)
    assert m.preprocessing.name == "tf_-1_1" and not m.preprocessing_assumed
    assert m.build_kwargs == {"input_shape": [48, 48, 3], "classes": 5, "alpha": 0.35}


@pytest.mark.parametrize("suffix", [".keras", ".h5"])
def test_keras_and_h5_files(small_model, tmp_path, suffix):
    path = tmp_path / f"mine{suffix}"
    small_model.save(path)
    m = load_model(path)
    assert m.name == "mine" and m.source_kind == suffix[1:].replace("keras", "keras")
    np.testing.assert_allclose(np.asarray(m.model(_x())), np.asarray(small_model(_x())), atol=1e-6)
    assert m.preprocessing_assumed and m.preprocessing.name == "unit_0_1"  # no Rescaling layer -> [0, 1] guessed


def test_savedmodel_folder(small_model, tmp_path):
    path = tmp_path / "exported"
    small_model.export(str(path), verbose=False)
    m = load_model(path)
    assert m.source_kind == "savedmodel" and m.input_shape == (16, 16, 3)
    np.testing.assert_allclose(np.asarray(m.model(_x())), np.asarray(small_model(_x())), atol=1e-6)


def test_weights_file_into_zoo_model(tmp_path):
    from edgeconv import models

    ref = models.create_model("lenet5", classes=10)
    wfile = tmp_path / "lenet.weights.h5"
    ref.save_weights(wfile)
    m = load_model("lenet5", weights=str(wfile))
    x = np.random.default_rng(0).uniform(0, 1, (2, 32, 32, 1)).astype("float32")
    np.testing.assert_array_equal(np.asarray(m.model(x)), np.asarray(ref(x)))
    with pytest.raises(EdgeconvError, match="cannot load weights"):
        load_model("lenet5", weights=str(wfile), classes=3)  # head shape differs


def test_bad_sources(tmp_path, small_model):
    with pytest.raises(EdgeconvError, match="not found"):
        load_model(tmp_path / "x.keras")
    with pytest.raises(UsageError, match="did you mean"):
        load_model("resnet5O")
    (tmp_path / "folder").mkdir()
    with pytest.raises(EdgeconvError, match="not a SavedModel"):
        load_model(tmp_path / "folder")
    path = tmp_path / "m.keras"
    small_model.save(path)
    with pytest.raises(UsageError, match="only apply to zoo models"):
        load_model(path, classes=4)
    with pytest.raises(EdgeconvError, match="weights file not found"):
        load_model("lenet5", weights=str(tmp_path / "none.h5"))


@pytest.fixture(scope="module")
def open_size_model(tmp_path_factory):
    """The transfer-learning shape in miniature: a backbone built on (None, None, 3) with its Rescaling inside,
    pooled, and a Dense head, saved with an open input size."""
    import keras

    keras.utils.set_random_seed(0)
    b_in = keras.Input((None, None, 3), name="b_in")
    b = keras.layers.Rescaling(1 / 255.0, name="rescale")(b_in)
    b = keras.layers.Conv2D(4, 3, strides=2, activation="hard_swish", name="c")(b)
    backbone = keras.Model(b_in, keras.layers.GlobalAveragePooling2D(name="p")(b), name="backbone")
    inp = keras.Input((None, None, 3), name="image")
    out = keras.layers.Dense(3, activation="softmax", name="head")(backbone(inp))
    model = keras.Model(inp, out, name="transfer")
    path = tmp_path_factory.mktemp("open") / "transfer.keras"
    model.save(path)
    return path, model


def test_open_input_size_is_fixed_by_input_size(open_size_model):
    path, model = open_size_model
    with pytest.raises(UsageError, match=r"input size is open \(\?x\?x3\): pass --input-size H or HxW"):
        load_model(path)
    m = load_model(path, input_size=24)
    assert m.input_shape == (24, 24, 3) and m.model.input_shape == (None, 24, 24, 3)
    assert m.open_input_shape == (None, None, 3)
    assert m.preprocessing.name == "raw_0_255"  # the Rescaling inside the nested backbone was found
    x = np.random.default_rng(0).uniform(0, 255, (4, 24, 24, 3)).astype("float32")
    np.testing.assert_allclose(np.asarray(m.model(x)), np.asarray(model(x)), atol=1e-7)  # same weights, same function
    assert load_model(path, input_size=(24, 40)).input_shape == (24, 40, 3)


def test_input_size_on_a_fixed_size_model(small_model, tmp_path):
    path = tmp_path / "fixed.keras"
    small_model.save(path)
    assert load_model(path, input_size=16).input_shape == (16, 16, 3)  # the size it has: fine
    with pytest.raises(UsageError, match="fixed at 16x16, --input-size 32x32 differs"):
        load_model(path, input_size=32)
