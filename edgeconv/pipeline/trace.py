"""Trace the Keras model once to a SavedModel; every TFLite precision converts from that one export.

``model.export`` with a fixed input signature is about 2x faster than ``TFLiteConverter.from_keras_model`` per
precision (which re-exports every call), and a fixed batch of 1 removes the SHAPE / STRIDED_SLICE / PACK ops a
dynamic batch adds (see shared/FINDINGS.md). The serving signature's outputs are keyed by the Keras output names
(:func:`edgeconv.runtime.runners.keras_output_names`), so every .tflite says which tensor is which output: the
converter orders a file's outputs by its own rules, the signature is what proves the mapping.
"""
from __future__ import annotations

import contextlib
import io
import os
from pathlib import Path

from edgeconv.errors import EdgeconvError, first_line


def trace(model, workdir: str | os.PathLike, batch_size: int | None = 1) -> Path:
    """Export ``model`` to ``workdir/saved_model`` with input signature (batch_size, H, W, C); returns the folder."""
    import keras
    import tensorflow as tf

    from edgeconv.runtime.runners import keras_output_names

    out = Path(workdir) / "saved_model"
    shape = (batch_size, *model.input_shape[1:])
    dtype = getattr(model.inputs[0], "dtype", "float32") or "float32"
    sig = [tf.TensorSpec(shape, tf.as_dtype(dtype), name=model.inputs[0].name.split(":")[0] or "input")]
    names = keras_output_names(model)

    def serve(x):  # outputs keyed by their Keras names: the TFLite signature maps each name to its tensor
        return dict(zip(names, keras.tree.flatten(model(x, training=False))))

    try:
        with contextlib.redirect_stdout(io.StringIO()):
            archive = keras.export.ExportArchive()  # what model.export does, with named outputs
            archive.track(model)
            archive.add_endpoint(name="serve", fn=serve, input_signature=sig)
            archive.write_out(str(out), verbose=False)
    except Exception as e:
        raise EdgeconvError(f"cannot trace {model.name} to a SavedModel: {first_line(e)}") from None
    return out
