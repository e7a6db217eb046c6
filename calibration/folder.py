"""A folder of images (searched recursively) -> pixel samples.

Files whose name ends in one of :data:`~calibration.imaging.IMAGE_SUFFIXES` (any case) are candidates; other files
are ignored. Candidates are sorted by their path relative to the folder (that path is the sample id), put in the
order :func:`~calibration.samples.split_order` gives for ``split`` and ``seed``, and decoded one by one until
``num`` images were read: a big folder is never decoded whole. A file that cannot be decoded is skipped and listed
in ``Samples.skipped`` with the reason. Each image is brought to 8-bit gray or RGB (palette and 16-bit images are
converted, alpha is dropped, EXIF orientation is applied) and resized with a centered "cover" crop: scaled so it
covers ``size``, then the middle cut out, so nothing is stretched.
"""
from __future__ import annotations

import os
from pathlib import Path

from .imaging import IMAGE_SUFFIXES, cover_resize, describe_failure, read_image, to_array
from .samples import (CalibrationError, Samples, check_args, check_image_channels, exclusion_set, nothing_left,
                      split_order, stack)


def image_files(root: Path) -> list[str]:
    """Paths (relative, with "/") of every image file under ``root``, sorted; errors for an empty folder."""
    files = [p for p in root.rglob("*") if p.is_file()]
    if not files:
        raise CalibrationError(f"folder {root} is empty: put images ({', '.join(IMAGE_SUFFIXES)}) in it")
    images = sorted(p.relative_to(root).as_posix() for p in files if p.suffix.lower() in IMAGE_SUFFIXES)
    if not images:
        raise CalibrationError(f"no readable image in {root}: none of its {len(files)} files ends in "
                               f"{', '.join(IMAGE_SUFFIXES)} (searched recursively)")
    return images


def folder_samples(path: str | os.PathLike, *, size=(224, 224), channels: int = 3, num: int = 200,
                   split: str = "calibration", seed: int = 0, exclude_ids=()) -> Samples:
    """``num`` images (or all readable ones) of the folder ``path`` as pixels, in an order set by ``split``/``seed``."""
    size = check_args(size, channels, num, split, seed)
    root = Path(path)
    check_image_channels(channels, f"the images in {root}")
    ids = image_files(root)
    excluded = exclusion_set(exclude_ids)
    pixels, taken, skipped, n_excluded = [], [], [], 0
    for i in split_order(len(ids), split, seed):
        if len(pixels) == num:
            break
        if ids[i] in excluded:
            n_excluded += 1
            continue
        file = root / ids[i]
        try:
            im = read_image(file, channels=channels, size=size)
        except Exception as e:  # noqa: BLE001 - any decoder failure on a user's file means "unreadable, skip it"
            skipped.append((ids[i], describe_failure(e, file)))
            continue
        pixels.append(to_array(cover_resize(im, size)))
        taken.append(ids[i])
    if not pixels and n_excluded:
        raise nothing_left(str(root), n_excluded, split)
    if not pixels:
        n = len(skipped)
        raise CalibrationError(f"no readable image in {root}: {n} image file{'s' if n > 1 else ''} tried, none "
                               f"could be decoded (first: {skipped[0][0]}: {skipped[0][1]})")
    return Samples(stack(pixels), "pixels", str(root), taken, skipped)
