"""``load_samples``: one entry point for every kind of calibration/validation data."""
from __future__ import annotations

import os
from pathlib import Path

from .arrays import array_samples, read_arrays
from .embedded import default_samples
from .folder import folder_samples, image_files
from .samples import CalibrationError, Samples, split_label

ARRAY_SUFFIXES = (".npy", ".npz")


def load_samples(path: str | os.PathLike | None = None, *, size=(224, 224), channels: int = 3, num: int = 200,
                 split: str = "calibration", seed: int = 0, exclude_ids=()) -> Samples:
    """Up to ``num`` samples of ``split`` ("calibration", "validation" or "all") at ``size`` = (height, width).

    ``path`` None: the embedded photo set (:mod:`calibration.embedded`), whose calibration and validation splits
    use different photos. A folder: its images, recursively (:mod:`calibration.folder`). A ``.npy``/``.npz``:
    uint8 pixels or float model inputs (:mod:`calibration.arrays`). Fewer than ``num`` samples are returned when
    fewer exist (the caller says so). ``seed`` sets the order; the same arguments give bitwise the same arrays.
    Ids in ``exclude_ids`` are never returned: validation passes the calibration ids recorded in the manifest.
    """
    kwargs = dict(size=size, channels=channels, num=num, split=split, seed=seed, exclude_ids=exclude_ids)
    if path is None:
        return default_samples(**kwargs)
    p = Path(path)
    if p.is_dir():
        return folder_samples(p, **kwargs)
    if not p.exists():
        raise CalibrationError(f"{split_label(split)} data not found: {p}")
    if p.suffix.lower() in ARRAY_SUFFIXES:
        return array_samples(p, **kwargs)
    raise CalibrationError(f"{p} is not a folder of images, a .npy or an .npz: cannot use it as "
                           f"{split_label(split)} data")


def count_samples(path: str | os.PathLike) -> int:
    """How many samples ``path`` holds (images in a folder, rows of a .npy/.npz) without decoding any image; the
    split of a user's data into calibration and held-out validation samples is planned with it."""
    p = Path(path)
    if p.is_dir():
        return len(image_files(p))
    if p.suffix.lower() in ARRAY_SUFFIXES and p.exists():
        x, _ = read_arrays(p)
        return int(x.shape[0]) if x.ndim >= 1 else 0
    raise CalibrationError(f"{p} is not a folder of images, a .npy or an .npz")
