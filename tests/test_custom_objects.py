"""edgeconv.pipeline.custom_objects and the load errors it explains: unregistered custom layers / functions in the
user's own file, Lambda layers, and what a saved config refers to."""
from __future__ import annotations

import hashlib
import importlib.util
import sys

import numpy as np
import pytest

from edgeconv.errors import EdgeconvError, UsageError
from edgeconv.pipeline.custom_objects import (MODULE_PREFIX, import_custom_objects, missing_objects, python_lambdas,
                                              read_model_config)
from edgeconv.pipeline.load import load_model
from helpers import USER_LAYERS



@pytest.fixture(scope="module")
def user_files(tmp_path_factory):
    """(layers .py, .keras using HSwish + Activation(hsigmoid) + a Lambda, the model): the classes come from the
    user's own module ``tiny_user_layers``, saved unregistered."""
    import keras

    d = tmp_path_factory.mktemp("user")
    src = d / "tiny_user_layers.py"
    src.write_text(USER_LAYERS)
    spec = importlib.util.spec_from_file_location("tiny_user_layers", src)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    keras.utils.set_random_seed(0)
    inp = keras.Input((16, 16, 3), name="img")
    x = keras.layers.Conv2D(8, 3, padding="same", name="conv")(inp)
    x = mod.HSwish(name="hs")(x)
    s = keras.layers.GlobalAveragePooling2D(keepdims=True, name="pool_se")(x)
    s = keras.layers.Activation(mod.hsigmoid, name="hsig")(s)
    x = keras.layers.Lambda(lambda ts: ts[0] * ts[1], name="lam")([x, s])
    x = keras.layers.GlobalAveragePooling2D(name="pool")(x)
    out = keras.layers.Dense(3, activation="softmax", name="probs")(x)
    model = keras.Model(inp, out, name="tiny_custom")
    path = tmp_path_factory.mktemp("models") / "tiny_custom.keras"  # not next to the .py
    model.save(path)
    return src, path, model


def test_import_collects_unregistered_layers_and_functions_only(user_files):
    src, _, _ = user_files
    co = import_custom_objects([src])
    assert set(co.objects) == {"HSwish", "hsigmoid"}  # not Layer (Keras'), math, SCALE
    (s,) = co.sources
    assert s.name == "tiny_user_layers.py" and s.path == str(src.resolve())
    assert s.sha256 == hashlib.sha256(src.read_bytes()).hexdigest()
    assert s.module == f"{MODULE_PREFIX}tiny_user_layers_{s.sha256[:8]}" and s.objects == ("HSwish", "hsigmoid")
    assert sys.modules[s.module].HSwish is co.objects["HSwish"]
    assert import_custom_objects([src]).objects["HSwish"] is co.objects["HSwish"]  # same bytes: same module
    assert co.to_manifest()[0]["sha256"] == s.sha256


def test_import_as_module_name_and_bad_sources(user_files, tmp_path, monkeypatch):
    src, _, _ = user_files
    monkeypatch.syspath_prepend(str(src.parent))
    co = import_custom_objects(["tiny_user_layers"])
    assert co.sources[0].name == "tiny_user_layers" and set(co.objects) == {"HSwish", "hsigmoid"}
    with pytest.raises(UsageError, match="file not found"):
        import_custom_objects([tmp_path / "nope.py"])
    with pytest.raises(UsageError, match="no module of that name"):
        import_custom_objects(["no_such_module_xyz"])
    empty = tmp_path / "empty.py"
    empty.write_text("X = 1\n")
    with pytest.raises(UsageError, match="defines no Keras layer"):
        import_custom_objects([empty])
    broken = tmp_path / "broken.py"
    broken.write_text("import keras\nraise RuntimeError('boom at import')\n")
    with pytest.raises(EdgeconvError, match="importing it failed: RuntimeError: boom at import") as e:
        import_custom_objects([broken])
    assert e.value.exit_code == 1 and not isinstance(e.value, UsageError)  # the user's code, not a usage error


def test_config_walk_names_what_is_missing_and_the_lambdas(user_files):
    src, path, _ = user_files
    cfg = read_model_config(path)
    assert missing_objects(cfg) == [("HSwish", "class", "tiny_user_layers"), ("hsigmoid", "function", None)]
    assert missing_objects(cfg, import_custom_objects([src])) == []
    assert python_lambdas(cfg) == ["lam"]


def test_load_says_which_class_and_which_flag(user_files):
    src, path, model = user_files
    with pytest.raises(EdgeconvError) as e:
        load_model(path)
    msg = str(e.value)
    assert msg == ("cannot load tiny_custom.keras: it uses class HSwish (module tiny_user_layers) and function "
                   "hsigmoid, which are not defined by Keras: pass --custom-objects FILE.py that defines them")
    assert e.value.exit_code == 1
    with pytest.raises(EdgeconvError, match="Lambda layer lam holds Python code.*pass --unsafe-deserialization"):
        load_model(path, custom_objects=[str(src)])
    m = load_model(path, custom_objects=[str(src)], unsafe_deserialization=True)
    x = np.random.default_rng(0).uniform(0, 1, (4, 16, 16, 3)).astype(np.float32)
    np.testing.assert_array_equal(np.asarray(m.model(x)), np.asarray(model(x)))
    assert [type(layer).__name__ for layer in m.model.layers if layer.name in ("hs", "lam")] == ["HSwish", "Lambda"]
    assert m.custom_objects.sources[0].name == "tiny_user_layers.py"
    assert len(m.warnings) == 1 and "ran Python code stored in the model file (Lambda layer lam)" in m.warnings[0]
    with pytest.raises(UsageError, match="not zoo models"):
        load_model("lenet5", custom_objects=[str(src)])


def test_legacy_h5_is_explained_the_same_way(user_files, tmp_path):
    import warnings

    src, _, model = user_files
    path = tmp_path / "tiny_custom.h5"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        model.save(path)
    cfg = read_model_config(path)
    assert missing_objects(cfg) == [("HSwish", "class", None), ("hsigmoid", "function", None)]  # .h5: no module
    assert python_lambdas(cfg) == ["lam"]
    with pytest.raises(EdgeconvError, match="it uses class HSwish and function hsigmoid, which are not defined"):
        load_model(path)
    with pytest.raises(EdgeconvError, match="Lambda layer lam holds Python code"):
        load_model(path, custom_objects=[str(src)])
    m = load_model(path, custom_objects=[str(src)], unsafe_deserialization=True)
    x = np.random.default_rng(0).uniform(0, 1, (4, 16, 16, 3)).astype(np.float32)
    np.testing.assert_array_equal(np.asarray(m.model(x)), np.asarray(model(x)))


def test_a_function_named_like_a_keras_builtin_is_flagged(tmp_path):
    """Keras saves Activation(user_fn) as the bare name when the name is a built-in's, and reloads its own built-in,
    custom objects or not: the user's function is not in the file. Measured here: a different function comes back."""
    import keras

    src = tmp_path / "acts.py"
    src.write_text("from keras import ops\n\n\ndef hard_sigmoid(x):  # Keras 2's formula, not Keras 3's\n"
                   "    return ops.clip(0.2 * x + 0.5, 0.0, 1.0)\n")
    co = import_custom_objects([src])
    inp = keras.Input((1, 1, 4))
    model = keras.Model(inp, keras.layers.Activation(co.objects["hard_sigmoid"], name="act")(inp))
    path = tmp_path / "acts.keras"
    model.save(path)
    m = load_model(path, custom_objects=co)
    x = np.array([-2.0, -1.0, 1.0, 2.0], np.float32).reshape(1, 1, 1, 4)
    assert np.allclose(np.asarray(model(x)).ravel(), [0.1, 0.3, 0.7, 0.9])
    assert np.allclose(np.asarray(m.model(x)).ravel(), [1 / 6, 2 / 6, 4 / 6, 5 / 6])  # keras.activations' own
    assert len(m.warnings) == 1
    assert "acts.py defines hard_sigmoid, but acts.keras stores it by name only" in m.warnings[0]
