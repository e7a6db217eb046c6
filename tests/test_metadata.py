"""edgeconv.pipeline.metadata: embed / read back, replacing an earlier entry, the model still runs the same; labels files."""
from __future__ import annotations

import numpy as np
import pytest

from edgeconv.errors import UsageError
from edgeconv.pipeline.metadata import (METADATA_NAME, build_metadata, embed_metadata, embed_onnx_metadata, labels_text,
                               load_class_labels, read_metadata, read_model_object)
from edgeconv.runtime.runners import LiteRTRunner


@pytest.fixture(scope="module")
def tiny_tflite():
    """A small int8 + float .tflite pair from a two-layer Keras model (no training needed for these checks)."""
    import keras

    from edgeconv.tflite.convert import convert_tflite
    from edgeconv.pipeline.trace import trace

    keras.utils.set_random_seed(0)
    inp = keras.Input((8, 8, 3))
    x = keras.layers.Conv2D(4, 3, activation="relu")(inp)
    out = keras.layers.Dense(3, activation="softmax")(keras.layers.GlobalAveragePooling2D()(x))
    model = keras.Model(inp, out)
    import tempfile
    from pathlib import Path

    saved = trace(model, Path(tempfile.mkdtemp()), 1)
    x = np.random.default_rng(0).uniform(-1, 1, (16, 8, 8, 3)).astype(np.float32)
    return convert_tflite(saved, "fp32"), convert_tflite(saved, "int8", x, "int"), x


def _meta(**kw):
    base = dict(name="m", version="3", precision="int8", preprocessing={"name": "tf_-1_1", "scale": 1 / 127.5,
                "mean": [1.0], "std": [1.0], "bgr": False}, input_range=(-1.0, 1.0), labels=["cat", "dog", "ünï"])
    base.update(kw)
    return build_metadata(**base)


def test_round_trip_and_model_unchanged(tiny_tflite):
    fp32, int8, x = tiny_tflite
    for data in (fp32, int8):
        assert read_metadata(data) is None
        meta = _meta()
        out = embed_metadata(data, meta)
        assert read_metadata(out) == meta
        names = [m.name.decode() for m in read_model_object(out).metadata]
        assert names.count(METADATA_NAME) == 1 and "min_runtime_version" in names  # converter's entries kept
        a, b = LiteRTRunner(data), LiteRTRunner(out)
        assert a.inputs == b.inputs and a.outputs == b.outputs
        np.testing.assert_array_equal(a.run(x)[0], b.run(x)[0])


def test_embedding_again_replaces(tiny_tflite):
    _, int8, _ = tiny_tflite
    once = embed_metadata(int8, _meta())
    twice = embed_metadata(once, _meta(version="4", labels=None))
    assert read_metadata(twice)["model"]["version"] == "4" and read_metadata(twice)["labels"] is None
    assert len(read_model_object(twice).buffers) == len(read_model_object(once).buffers)
    assert embed_metadata(int8, _meta()) == once  # deterministic bytes


def test_onnx_metadata():
    import onnx
    from onnx import TensorProto, helper

    g = helper.make_graph([helper.make_node("Relu", ["x"], ["y"])], "g",
                          [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 2])],
                          [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 2])])
    data = helper.make_model(g).SerializeToString()
    out = embed_onnx_metadata(embed_onnx_metadata(data, _meta(version="1")), _meta())
    props = {p.key: p.value for p in onnx.load_from_string(out).metadata_props}
    from edgeconv.pipeline.metadata import parse_metadata

    assert list(props) == [METADATA_NAME] and parse_metadata(props[METADATA_NAME]) == _meta()


def test_class_labels_file(tmp_path):
    f = tmp_path / "l.txt"
    f.write_text("cat\ndog\n\n", encoding="utf-8")
    assert load_class_labels(f, classes=2) == ["cat", "dog"]
    assert labels_text(["cat", "dog"]) == "cat\ndog\n"
    with pytest.raises(UsageError, match="has 2 names but the model has 3 classes"):
        load_class_labels(f, classes=3)
    f.write_text("cat\n\ndog\n")
    with pytest.raises(UsageError, match="one non-empty class name per line"):
        load_class_labels(f)
    with pytest.raises(UsageError, match="not found"):
        load_class_labels(tmp_path / "missing.txt")
