"""Trace the Keras model once to a SavedModel; every TFLite precision converts from that one export.

``model.export`` with a fixed input signature is about 2x faster than ``TFLiteConverter.from_keras_model`` per
precision (which re-exports every call), and a fixed batch of 1 removes the SHAPE / STRIDED_SLICE / PACK ops a
dynamic batch adds (see shared/FINDINGS.md).
"""
from __future__ import annotations

import contextlib
import io
import os
from pathlib import Path

from edgeconv.errors import EdgeconvError, first_line


def trace(model, workdir: str | os.PathLike, batch_size: int | None = 1) -> Path:
    """Export ``model`` to ``workdir/saved_model`` with input signature (batch_size, H, W, C); returns the folder."""
    import tensorflow as tf

    out = Path(workdir) / "saved_model"
    shape = (batch_size, *model.input_shape[1:])
    dtype = getattr(model.inputs[0], "dtype", "float32") or "float32"
    sig = [tf.TensorSpec(shape, tf.as_dtype(dtype), name=model.inputs[0].name.split(":")[0] or "input")]
    try:
        with contextlib.redirect_stdout(io.StringIO()):
            model.export(str(out), format="tf_saved_model", verbose=False, input_signature=sig)
    except Exception as e:
        raise EdgeconvError(f"cannot trace {model.name} to a SavedModel: {first_line(e)}") from None
    return out
