"""Shared fixtures (helpers live in helpers.py): the trained tiny model, the digits, calibration arrays."""
from __future__ import annotations

import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np
import pytest

from helpers import cached_trained_tiny, cached_two_head, digits_pixels


@pytest.fixture(scope="session")
def digits():
    return digits_pixels()


@pytest.fixture(scope="session")
def trained_tiny(tmp_path_factory):
    """(path to .keras, held-out float accuracy) of a trained tiny MobileNetV3-style model: a private copy of the
    one trained model every test process shares (:func:`helpers.cached_trained_tiny`)."""
    import shutil

    cached, acc = cached_trained_tiny()
    path = tmp_path_factory.mktemp("trained") / "tiny_mnv3.keras"
    shutil.copyfile(cached, path)
    return path, acc


@pytest.fixture(scope="session")
def two_head(tmp_path_factory):
    """(path to .keras, held-out figures) of the trained two-head digits model (class scores ``digit`` + regression
    ``blob``): a private copy of the cached one (:func:`helpers.cached_two_head`)."""
    import shutil

    cached, info = cached_two_head()
    path = tmp_path_factory.mktemp("two_head") / "two_head.keras"
    shutil.copyfile(cached, path)
    return path, info


@pytest.fixture(scope="session")
def digits_calibration_npy(tmp_path_factory, digits):
    """The training digits as a uint8 .npy (calibration data), and the held-out ones as another (validation)."""
    (xtr, _), (xte, yte) = digits
    d = tmp_path_factory.mktemp("digits")
    cal, val = d / "digits_train.npy", d / "digits_heldout.npz"
    np.save(cal, xtr.astype(np.uint8))
    np.savez(val, x=xte.astype(np.uint8), y=yte)
    return cal, val
