"""A .npy or .npz array -> samples.

The dtype decides what the numbers are:

- integer arrays (uint8 as saved by most tools) are **pixels** in 0..255, RGB or gray. They get the model's
  preprocessing like images do, and are resized (centered "cover" crop, as for image folders) when their height and
  width differ from the model's.
- float arrays are **model inputs that are already preprocessed**: they are used exactly as given, so their
  (H, W) must be the model's; they are never resized or rescaled. Save pixels as uint8 to let edgeconv do both.

Shapes: (N, H, W, C) with C the model's channel count, or (N, H, W) for 1-channel models. An .npz holds the
samples under ``x`` or ``images`` (or as its only array) and may hold labels under ``y`` or ``labels``.
Sample ids are ``"<file name>[<index>]"``.
"""
from __future__ import annotations

import os
from pathlib import Path

import numpy as np
from PIL import Image

from .imaging import cover_resize, describe_failure, to_array
from .samples import CalibrationError, Samples, check_args, exclusion_set, nothing_left, pick, split_order, stack

DATA_KEYS = ("x", "images")
LABEL_KEYS = ("y", "labels")


def read_arrays(path: Path) -> tuple[np.ndarray, np.ndarray | None]:
    """(samples, labels or None) of a .npy/.npz file; a corrupt file or an ambiguous .npz is a CalibrationError."""
    try:
        if path.suffix.lower() == ".npy":
            return np.load(path, mmap_mode="r", allow_pickle=False), None
        with np.load(path, allow_pickle=False) as z:
            keys = list(z.files)
            data_key = next((k for k in DATA_KEYS if k in keys), None)
            others = [k for k in keys if k not in LABEL_KEYS]
            if data_key is None and len(others) == 1:
                data_key = others[0]
            if data_key is None:
                raise CalibrationError(f"{path} holds the arrays {', '.join(keys) or '(none)'}: store the samples "
                                       f"as 'x' (or 'images') and any labels as 'y' (or 'labels')")
            label_key = next((k for k in LABEL_KEYS if k in keys), None)
            return z[data_key], None if label_key is None else np.asarray(z[label_key])
    except CalibrationError:
        raise
    except Exception as e:  # noqa: BLE001 - numpy/zipfile raise many types for a damaged or pickled file
        raise CalibrationError(f"cannot read {path}: {describe_failure(e, path)}") from None


def check_array(x: np.ndarray, path: Path, size: tuple[int, int], channels: int) -> np.ndarray:
    """The (N, H, W, C) view of ``x`` after every check of dtype, rank, channels, size and values."""
    if x.dtype.kind not in "uif":
        raise CalibrationError(f"{path} holds {x.dtype} values: save uint8 pixels 0..255 or float32 model inputs")
    if x.size == 0:
        raise CalibrationError(f"{path} is empty (shape {tuple(x.shape)})")
    if x.ndim == 3 and channels == 1:
        x = x[..., None]
    if x.dtype.kind in "ui" and channels == 3 and x.ndim == 4 and x.shape[-1] == 1:
        x = np.repeat(x, 3, axis=-1)  # (N, H, W, 1) gray pixels for an RGB input (--rgb-input): R = G = B = gray
    if x.ndim != 4:
        want = "(N, H, W)" if channels == 1 else f"(N, H, W, {channels})"
        raise CalibrationError(f"{path} has shape {tuple(x.shape)}, expected {want} samples (N images of H x W)")
    if x.shape[-1] != channels:
        raise CalibrationError(f"{path} has {x.shape[-1]} channels (shape {tuple(x.shape)}), the model wants "
                               f"{channels} channel{'s' if channels > 1 else ''}")
    if x.dtype.kind == "f":
        finite = np.isfinite(x).reshape(len(x), -1).all(axis=1)
        if not finite.all():
            raise CalibrationError(f"{path} contains NaN or inf values ({int((~finite).sum())} of {len(x)} samples, "
                                   f"first: sample {int(np.argmin(finite))})")
        if x.shape[1:3] != size:
            raise CalibrationError(f"{path} holds float (already preprocessed) inputs of {x.shape[1]}x{x.shape[2]} "
                                   f"but the model wants {size[0]}x{size[1]}: float arrays are used as given, "
                                   f"save them at the model's size or save uint8 pixels 0..255 to have them resized")
        return x
    lo, hi = int(x.min()), int(x.max())
    if lo < 0 or hi > 255:
        raise CalibrationError(f"{path} holds {x.dtype} values {lo}..{hi}: integer arrays are pixels and must be "
                               f"0..255 (save preprocessed inputs as float32)")
    return x


def _pixels(a: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    a = np.asarray(a, dtype=np.uint8)
    if a.shape[:2] == size:
        return a
    im = Image.fromarray(a[..., 0] if a.shape[-1] == 1 else a)
    return to_array(cover_resize(im, size))


def array_samples(path: str | os.PathLike, *, size=(224, 224), channels: int = 3, num: int = 200,
                  split: str = "calibration", seed: int = 0, exclude_ids=()) -> Samples:
    """``num`` samples (or all there are) of a .npy/.npz file, in an order set by ``split`` and ``seed``."""
    size = check_args(size, channels, num, split, seed)
    path = Path(path)
    x, labels = read_arrays(path)
    x = check_array(x, path, size, channels)
    if labels is not None and (labels.ndim == 0 or len(labels) != len(x)):
        raise CalibrationError(f"{path} has {len(x)} samples but labels of shape {tuple(labels.shape)}")
    ids = [f"{path.name}[{i}]" for i in range(len(x))]
    chosen = pick(ids, split_order(len(ids), split, seed), exclusion_set(exclude_ids), num)
    if not chosen:
        raise nothing_left(str(path), len(ids), split)
    if x.dtype.kind == "f":
        data, kind = stack([x[i] for i in chosen]), "model_input"
    else:
        data, kind = stack([_pixels(x[i], size) for i in chosen]), "pixels"
    return Samples(data, kind, str(path), [ids[i] for i in chosen], [],
                   None if labels is None else labels[chosen])
