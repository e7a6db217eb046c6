"""edgeconv.tflite.convert: the converter made without from_saved_model's Python load writes the same bytes."""
import numpy as np


def test_saved_model_converter_gives_from_saved_models_bytes(tmp_path, monkeypatch):
    import tensorflow as tf
    from tensorflow.lite.python import lite
    from helpers import build_tiny_mnv3

    import edgeconv.tflite.convert as c
    from edgeconv.pipeline.trace import trace

    sm = trace(build_tiny_mnv3(), tmp_path)
    x = np.random.default_rng(0).uniform(0, 255, (8, 32, 32, 3)).astype(np.float32)
    loads, real_load = [], lite._load
    monkeypatch.setattr(lite, "_load", lambda *a, **k: loads.append(1) or real_load(*a, **k))
    fast = c.convert_tflite(sm, "int8", x, "uint8")  # calibrated: the converter's whole path
    fast_loads = len(loads)  # the converter's own load (for debug info) stays
    monkeypatch.setattr(c, "saved_model_converter", lambda d: tf.lite.TFLiteConverter.from_saved_model(str(d)))
    assert fast == c.convert_tflite(sm, "int8", x, "uint8")
    assert len(loads) == 2 * fast_loads + 1  # from_saved_model: one more Python load per conversion
