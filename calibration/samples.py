"""The one data type every loader returns, its error type, argument checks and the split rule they all share."""
from __future__ import annotations

import numbers
from dataclasses import dataclass, field
from typing import Iterable, Sequence

import numpy as np

from edgeconv.errors import EdgeconvError

SPLITS = ("calibration", "validation", "all")
KINDS = ("pixels", "model_input")


class CalibrationError(EdgeconvError):
    """Calibration/validation data that cannot be used: a one-line message naming the path, what is wrong and what
    would be accepted. Bad arguments (size, channels, num, split, seed) carry exit code 2 like ``UsageError``."""


@dataclass
class Samples:
    """A batch of calibration or validation samples, before any model preprocessing.

    ``data`` is (N, H, W, C) float32. With ``kind == "pixels"`` it holds pixel values in [0, 255] (RGB, or gray
    when C == 1) that still need the model's preprocessing; with ``kind == "model_input"`` it holds inputs the user
    already preprocessed, to be used as is. ``ids[i]`` names sample i stably ("chelsea.png#crop3-flip",
    "cats/001.jpg", "data.npy[17]"); ``skipped`` lists (file, reason) for unreadable images; ``labels`` comes from
    an .npz's ``y``/``labels`` array, aligned with ``data``.
    """

    data: np.ndarray
    kind: str
    source: str
    ids: list[str]
    skipped: list[tuple[str, str]] = field(default_factory=list)
    labels: np.ndarray | None = None

    def __post_init__(self):
        if self.kind not in KINDS:
            raise ValueError(f"Samples.kind must be one of {KINDS}, not {self.kind!r}")
        if self.data.ndim != 4 or self.data.dtype != np.float32:
            raise ValueError(f"Samples.data must be (N, H, W, C) float32, got {self.data.dtype} {self.data.shape}")
        if len(self.ids) != len(self.data):
            raise ValueError(f"Samples has {len(self.data)} samples but {len(self.ids)} ids")
        if self.labels is not None and len(self.labels) != len(self.data):
            raise ValueError(f"Samples has {len(self.data)} samples but {len(self.labels)} labels")

    def __len__(self) -> int:
        return len(self.data)


def usage_error(message: str) -> CalibrationError:
    return CalibrationError(message, exit_code=2)


def _positive_int(v) -> bool:
    return isinstance(v, numbers.Integral) and not isinstance(v, bool) and v > 0


def check_args(size, channels, num, split, seed) -> tuple[int, int]:
    """Validate the arguments shared by every loader; returns ``size`` as a (height, width) tuple of ints."""
    if not isinstance(size, Sequence) or len(size) != 2 or not all(_positive_int(v) for v in size):
        raise usage_error(f"size must be (height, width) with two positive integers, not {size!r}")
    if not _positive_int(channels):
        raise usage_error(f"channels must be a positive integer (1 gray, 3 RGB), not {channels!r}")
    if not _positive_int(num):
        raise usage_error(f"the number of samples must be a positive integer, not {num!r}")
    if split not in SPLITS:
        raise usage_error(f"split must be one of {', '.join(SPLITS)}, not {split!r}")
    if not isinstance(seed, numbers.Integral) or isinstance(seed, bool) or seed < 0:
        raise usage_error(f"seed must be a non-negative integer, not {seed!r}")
    return int(size[0]), int(size[1])


def check_image_channels(channels: int, what: str) -> None:
    """Images become gray (1) or RGB (3); other channel counts only come from preprocessed float arrays."""
    if channels not in (1, 3):
        raise usage_error(f"{what} can only give 1-channel (gray) or 3-channel (RGB) inputs, this model wants "
                          f"{channels} channels: pass a float .npy/.npz of preprocessed (N, H, W, {channels}) inputs")


def exclusion_set(exclude_ids: Iterable[str]) -> frozenset[str]:
    if isinstance(exclude_ids, (str, bytes)):
        return frozenset([str(exclude_ids)])
    return frozenset(str(i) for i in exclude_ids)


def split_order(n: int, split: str, seed: int) -> np.ndarray:
    """The order in which a finite set of ``n`` samples is taken for ``split``.

    One permutation seeded by ``seed``: "calibration" and "all" walk it from the front, "validation" from the back,
    so with the same seed a validation set is disjoint from the calibration set whenever there are enough samples
    even before the calibration ids are excluded explicitly.
    """
    perm = np.random.default_rng(seed).permutation(n)
    return perm[::-1] if split == "validation" else perm


def pick(ids: Sequence[str], order: Iterable[int], excluded: frozenset[str], num: int) -> list[int]:
    """The first ``num`` indices of ``order`` whose id is not excluded."""
    out: list[int] = []
    for i in order:
        if len(out) == num:
            break
        if ids[i] not in excluded:
            out.append(int(i))
    return out


def nothing_left(source: str, total: int, split: str) -> CalibrationError:
    """All ``total`` samples of ``source`` were excluded (they are the calibration samples)."""
    return CalibrationError(f"no {split_label(split)} samples left in {source}: all {total} are excluded "
                            f"(used for calibration); pass held-out data that was not used for calibration")


def stack(arrays: list[np.ndarray]) -> np.ndarray:
    return np.ascontiguousarray(np.stack(arrays).astype(np.float32, copy=False))


def split_label(split: str) -> str:
    return {"calibration": "calibration", "validation": "validation"}.get(split, "sample")
