"""Runners: one protocol for Keras, LiteRT and onnxruntime; float in, float out; dtype names mapped exactly."""
from __future__ import annotations

import numpy as np
import pytest

from edgeconv.errors import EdgeconvError
from edgeconv.runtime.runners import (KerasRunner, LiteRTRunner, OnnxRunner, Runner, dequantize, onnx_dtype_name,
                                      match_outputs, quantize)


@pytest.mark.parametrize("ort,np_name", [("tensor(float)", "float32"), ("tensor(float16)", "float16"),
                                         ("tensor(double)", "float64"), ("tensor(int8)", "int8"),
                                         ("tensor(uint8)", "uint8"), ("tensor(int64)", "int64")])
def test_onnx_dtype_names(ort, np_name):
    assert onnx_dtype_name(ort) == np_name


def test_quantize_dequantize_round_trip_and_per_channel():
    x = np.linspace(-1, 1, 11, dtype=np.float32)
    q = quantize(x, np.int8, 1 / 127, 0)
    assert np.abs(dequantize(q, 1 / 127, 0) - x).max() <= 0.5 / 127 + 1e-7
    per_channel = dequantize(np.array([[2, 2]], np.int8), [0.5, 3.0], [0, 1], axis=1)
    assert per_channel.tolist() == [[1.0, 3.0]]


def test_outputs_matched_by_name_never_by_position():
    assert match_outputs(["zeta", "alpha", "mid"], ["mid", "zeta", "alpha"]) == [1, 2, 0]
    # Keras' default export keys: key i is the reference's output i (output_10 sorts before output_2)
    keys = [f"output_{i}" for i in (0, 1, 10, 11, 2, 3, 4, 5, 6, 7, 8, 9)]
    assert match_outputs([f"h{i}" for i in range(12)], keys) == [0, 1, 4, 5, 6, 7, 8, 9, 10, 11, 2, 3]
    assert match_outputs(["probs"], ["StatefulPartitionedCall:0"]) == [0]  # one output: nothing to prove
    with pytest.raises(EdgeconvError, match="cannot match the outputs .* has alpha, beta, the reference alpha, gamma"):
        match_outputs(["alpha", "gamma"], ["alpha", "beta"])


@pytest.fixture(scope="module")
def tiny_files(tmp_path_factory):
    import keras
    import tensorflow as tf

    keras.utils.set_random_seed(0)
    inp = keras.Input((8, 8, 3))
    y = keras.layers.Dense(4, activation="softmax")(keras.layers.GlobalAveragePooling2D()(
        keras.layers.Conv2D(6, 3, activation="relu")(inp)))
    model = keras.Model(inp, y)
    x = np.random.default_rng(0).uniform(0, 1, (5, 8, 8, 3)).astype(np.float32)
    conv = tf.lite.TFLiteConverter.from_keras_model(model)
    tflite = conv.convert()
    from edgeconv.onnx.convert import convert_onnx

    return model, x, bytes(tflite), convert_onnx(model).model_bytes


def test_every_runner_speaks_the_protocol_and_agrees(tiny_files):
    model, x, tflite, onnx = tiny_files
    runners = [KerasRunner(model), LiteRTRunner(tflite), OnnxRunner(onnx)]
    outs = []
    for r in runners:
        assert isinstance(r, Runner)
        assert r.inputs[0].shape[1:] == (8, 8, 3) and r.outputs[0].shape[-1] == 4
        assert r.outputs[0].dtype == "float32"
        outs.append(r.run(x)[0])
        assert outs[-1].shape == (5, 4) and outs[-1].dtype == np.float32
    assert np.abs(outs[1] - outs[0]).max() < 1e-5 and np.abs(outs[2] - outs[0]).max() < 1e-5


def test_litert_runner_public_introspection(tiny_files):
    _, x, tflite, _ = tiny_files
    r = LiteRTRunner(tflite, preserve_all_tensors=True)
    ops = [o["op_name"] for o in r.ops()]
    assert "CONV_2D" in ops and "SOFTMAX" in ops
    r.set_input(x[:1])
    r.invoke()
    out = r.output_details[0]
    assert r.tensor(out["index"]).shape == (1, 4) and len(r.tensors()) > len(ops)
