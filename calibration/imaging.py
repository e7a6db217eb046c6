"""Pillow helpers shared by the loaders: decode any common image to 8-bit gray/RGB and resize it to a model's size."""
from __future__ import annotations

import math
import os
import warnings

import numpy as np
from PIL import Image, ImageOps

#: What a folder may contain (matched case-insensitively).
IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".webp")

_EXIF_ORIENTATION = 0x0112


def to_channels(im: Image.Image, channels: int) -> Image.Image:
    """Convert any Pillow mode to 8-bit "L" (channels == 1) or "RGB" (channels == 3).

    16-bit and 32-bit integer images are scaled to 0..255 (Pillow's own ``convert("L")`` clips them instead);
    palette images with transparency go through RGBA; alpha is dropped, as torchvision/Keras loaders do.
    """
    if im.mode.startswith("I") or im.mode == "F":
        a = np.asarray(im).astype(np.float64)
        if im.mode.startswith("I;16") or (im.mode == "I" and a.max(initial=0) > 255):
            a = a / 257.0  # 0..65535 -> 0..255
        elif im.mode == "F" and a.max(initial=0) <= 1.0:
            a = a * 255.0  # float images in [0, 1]
        im = Image.fromarray(np.clip(np.rint(a), 0, 255).astype(np.uint8), "L")
    elif im.mode in ("P", "PA"):
        im = im.convert("RGBA")
    target = "L" if channels == 1 else "RGB"
    return im if im.mode == target else im.convert(target)


def to_array(im: Image.Image) -> np.ndarray:
    """(H, W, C) uint8 array of an "L" or "RGB" image."""
    a = np.asarray(im, dtype=np.uint8)
    return a[..., None] if a.ndim == 2 else a


def cover_box(width: float, height: float, size: tuple[int, int]) -> tuple[float, float, float, float]:
    """The centered box of the target aspect that covers the image: resize-shorter-side then center-crop."""
    th, tw = size
    if width * th > height * tw:  # wider than the target: crop left and right
        cw = height * tw / th
        return ((width - cw) / 2, 0.0, (width + cw) / 2, float(height))
    ch = width * th / tw
    return (0.0, (height - ch) / 2, float(width), (height + ch) / 2)


def crop_box(width: float, height: float, size: tuple[int, int], scale: float = 1.0,
             pos: tuple[float, float] = (0.5, 0.5)) -> tuple[float, float, float, float]:
    """A box of the target aspect, ``scale`` times the size of :func:`cover_box`, placed at ``pos``.

    ``pos`` = (x, y) in [0, 1] places the box in the room left around it: (0, 0) top-left, (0.5, 0.5) centered,
    (1, 1) bottom-right; ``crop_box(w, h, size)`` is :func:`cover_box`.
    """
    x0, y0, x1, y1 = cover_box(width, height, size)
    cw, ch = (x1 - x0) * scale, (y1 - y0) * scale
    left, top = pos[0] * (width - cw), pos[1] * (height - ch)
    return (left, top, left + cw, top + ch)


def resize_box(im: Image.Image, size: tuple[int, int], box) -> Image.Image:
    """Resize ``box`` of ``im`` to ``size`` = (height, width), bilinear with antialiasing when shrinking."""
    th, tw = size
    if im.size == (tw, th) and tuple(box) == (0, 0, tw, th):
        return im
    return im.resize((tw, th), Image.Resampling.BILINEAR, box=tuple(float(v) for v in box))


def cover_resize(im: Image.Image, size: tuple[int, int]) -> Image.Image:
    """The usual evaluation transform: scale so the image covers ``size`` (height, width), then center-crop."""
    return resize_box(im, size, cover_box(im.size[0], im.size[1], size))


def read_image(path: str | os.PathLike, *, channels: int, size: tuple[int, int] | None = None) -> Image.Image:
    """Decode an image file to "L"/"RGB", honouring the EXIF orientation that phone photos carry.

    With ``size`` (height, width) big JPEGs are decoded at a reduced scale (Pillow's ``draft``, as ``thumbnail``
    does) that still leaves at least twice the pixels the final resize needs. Raises whatever Pillow raises for
    an unreadable file; ``describe_failure`` turns it into a short reason.
    """
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # truncated EXIF, palette transparency, decompression-bomb size warnings
        with Image.open(path) as im:
            if size is not None and im.format == "JPEG":
                w, h = im.size
                th, tw = size
                if im.getexif().get(_EXIF_ORIENTATION, 1) in (5, 6, 7, 8):
                    th, tw = tw, th  # stored rotated by 90 degrees
                s = max(th / h, tw / w)
                im.draft(im.mode, (math.ceil(2 * w * s), math.ceil(2 * h * s)))
            im.load()
            im = ImageOps.exif_transpose(im)
            return to_channels(im, channels)


def describe_failure(exc: BaseException, path: str | os.PathLike) -> str:
    """A short reason without the (long, already reported) file path: "cannot identify image file"."""
    msg = str(exc)
    for p in (repr(os.fspath(path)), repr(str(path)), os.fspath(path)):
        msg = msg.replace(p, "")
    msg = " ".join(msg.replace("  ", " ").split()).strip(" :")
    return msg or type(exc).__name__
