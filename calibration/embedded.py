"""The embedded default set: real photographs that ship inside scikit-image and scikit-learn, cut into
deterministic crops and horizontal flips.

Only files that are inside the installed wheels are used (no ``pooch`` download, no network): 18 photos, 10 in color
and 8 gray. Each photo gives 20 crops (the whole cover crop, 5 at 80 %, a 3x3 grid at 60 %, 5 at 45 % of the
largest box of the requested aspect) and their mirror images: 40 samples per photo, 720 in all.

Calibration and validation are disjoint *by photo*: the 6 photos marked "validation" below are never used for
calibration, so validation measures how the quantized model does on pictures it was not calibrated on. Calibration
has 12 photos (480 samples), validation 6 (240 samples), "all" both.

Channels: gray photos become RGB by repeating the gray channel (they are real photographs with realistic pixel
statistics); with ``channels=1`` color photos become gray with Pillow's ITU-R 601-2 luma. Left out on purpose:
``cat`` (same picture as ``chelsea``), ``motorcycle_right`` (the stereo twin of ``motorcycle_left``), the
synthetic images (logo, color wheel, checkerboards, phantom), document scans (page, text) and tiny images.
"""
from __future__ import annotations

import importlib.util
import os
from dataclasses import dataclass
from functools import lru_cache

import numpy as np
from PIL import Image

from .imaging import crop_box, read_image, resize_box, to_array
from .samples import (CalibrationError, Samples, check_args, check_image_channels, exclusion_set, nothing_left,
                      pick, split_label, split_order, stack)

EMBEDDED_SOURCE = "embedded photo set (scikit-image + scikit-learn sample photos)"


@dataclass(frozen=True)
class Photo:
    name: str  # file name, also the prefix of every sample id
    package: str  # the installed package that ships it
    folder: str  # folder inside the package
    split: str  # "calibration" or "validation"


def _skimage(name: str, split: str = "calibration") -> Photo:
    return Photo(name, "skimage", "data", split)


def _sklearn(name: str, split: str = "calibration") -> Photo:
    return Photo(name, "sklearn", "datasets/images", split)


PHOTOS: tuple[Photo, ...] = (
    # color
    _skimage("astronaut.png"),
    _skimage("chelsea.png"),
    _skimage("motorcycle_left.png"),
    _skimage("ihc.png"),  # immunohistochemistry
    _skimage("retina.jpg"),
    _sklearn("china.jpg"),
    _skimage("coffee.png", "validation"),
    _skimage("rocket.jpg", "validation"),
    _skimage("hubble_deep_field.jpg", "validation"),
    _sklearn("flower.jpg", "validation"),
    # gray
    _skimage("camera.png"),
    _skimage("moon.png"),
    _skimage("clock_motion.png"),
    _skimage("brick.png"),
    _skimage("gravel.png"),
    _skimage("cell.png"),
    _skimage("coins.png", "validation"),
    _skimage("grass.png", "validation"),
)

#: (scale of the largest box of the target aspect, (x, y) position of the box in the room left around it)
CROPS: tuple[tuple[float, tuple[float, float]], ...] = (
    (1.0, (0.5, 0.5)),
    *((0.8, p) for p in ((0.0, 0.0), (1.0, 0.0), (0.0, 1.0), (1.0, 1.0), (0.5, 0.5))),
    *((0.6, (x, y)) for y in (0.0, 0.5, 1.0) for x in (0.0, 0.5, 1.0)),
    *((0.45, p) for p in ((0.25, 0.25), (0.75, 0.25), (0.25, 0.75), (0.75, 0.75), (0.5, 0.5))),
)


def photo_of(sample_id: str) -> str:
    """"chelsea.png#crop3-flip" -> "chelsea.png"."""
    return sample_id.split("#", 1)[0]


def photo_path(photo: Photo) -> str | None:
    """Where the installed package keeps ``photo``, or None when the package or the file is missing.

    ``find_spec`` on a top-level name locates the package without importing it (importing sklearn takes seconds).
    """
    spec = importlib.util.find_spec(photo.package)
    if spec is None or not spec.submodule_search_locations:
        return None
    path = os.path.join(list(spec.submodule_search_locations)[0], photo.folder, photo.name)
    return path if os.path.isfile(path) else None


def photos_for(split: str) -> list[Photo]:
    return [p for p in PHOTOS if split == "all" or p.split == split]


def sample_ids(photos: list[Photo]) -> list[str]:
    """Every sample id of ``photos``: photo by photo, crop by crop, plain then flipped."""
    return [f"{p.name}#crop{c}{flip}" for p in photos for c in range(len(CROPS)) for flip in ("", "-flip")]


@lru_cache(maxsize=None)
def _decoded(path: str, channels: int) -> Image.Image:
    """A photo decoded once per process and channel count (never modified: resizing returns a new image)."""
    return read_image(path, channels=channels)


def _render(path: str, sample_id: str, size: tuple[int, int], channels: int) -> np.ndarray:
    """(H, W, C) uint8 pixels of one sample id."""
    crop, _, flip = sample_id.split("#", 1)[1].partition("-")
    scale, pos = CROPS[int(crop[len("crop"):])]
    im = _decoded(path, channels)
    a = to_array(resize_box(im, size, crop_box(im.width, im.height, size, scale, pos)))
    return a[:, ::-1] if flip else a


def default_samples(*, size=(224, 224), channels: int = 3, num: int = 200, split: str = "calibration",
                    seed: int = 0, exclude_ids=()) -> Samples:
    """``num`` samples (or all there are) of the embedded photo set for ``split``, in an order set by ``seed``."""
    size = check_args(size, channels, num, split, seed)
    check_image_channels(channels, "the embedded photo set")
    paths = {p.name: path for p in photos_for(split) if (path := photo_path(p)) is not None}
    if not paths:
        raise CalibrationError(f"the embedded photo set needs scikit-image and scikit-learn installed: none of its "
                               f"{split_label(split)} photos was found; pass your own data instead")
    ids = sample_ids([p for p in photos_for(split) if p.name in paths])
    # the split already chose the photos: every split walks its own ids front to back
    chosen = pick(ids, split_order(len(ids), "all", seed), exclusion_set(exclude_ids), num)
    if not chosen:
        raise nothing_left(f"the {EMBEDDED_SOURCE}", len(ids), split)
    pixels = [_render(paths[photo_of(ids[i])], ids[i], size, channels) for i in chosen]
    return Samples(stack(pixels), "pixels", EMBEDDED_SOURCE, [ids[i] for i in chosen])
