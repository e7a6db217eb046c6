"""Seed locally: deterministic builds and estimates without touching the caller's random generators.

Keras draws the seeds of unseeded initializers from Python's ``random`` (``keras.random.make_default_seed``), so a
zoo model is only reproducible when that generator is seeded. ``keras.utils.set_random_seed`` would do it by
reseeding Python, NumPy, TensorFlow and Keras' global generator *for the whole process*: a library must not do that
to its caller. :func:`seeded` sets them for the block and puts every one back afterwards.
"""
from __future__ import annotations

import contextlib
import random

import numpy as np

__all__ = ["seeded"]


def _tf_seed():
    try:
        from tensorflow.python.eager import context

        return context.global_seed()
    except Exception:  # noqa: BLE001 - a TF without this private API: nothing to restore
        return None


def _set_tf_seed(seed) -> None:
    try:
        from tensorflow.python.eager import context

        context.set_global_seed(seed)
    except Exception:  # noqa: BLE001
        pass


@contextlib.contextmanager
def seeded(seed: int):
    """Run the block with Python, NumPy, TensorFlow and Keras seeded by ``seed``; restore the caller's state after."""
    import keras
    from keras.src.backend.common import global_state

    keys = ("global_random_seed", "global_seed_generator")  # keras.src.utils.rng_utils / random.seed_generator
    saved_keras = {k: global_state.get_global_attribute(k) for k in keys}
    saved_py, saved_np, saved_tf = random.getstate(), np.random.get_state(), _tf_seed()
    keras.utils.set_random_seed(int(seed))
    try:
        yield
    finally:
        random.setstate(saved_py)
        np.random.set_state(saved_np)
        _set_tf_seed(saved_tf)
        for k, v in saved_keras.items():
            global_state.set_global_attribute(k, v)
