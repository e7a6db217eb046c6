"""Samples + preprocessing -> float32 model inputs, by one rule for calibration and validation alike.

Pixel samples (images, the embedded photo set, uint8 arrays) go through the model's ``Preprocessing.apply``; float
arrays are already model inputs and are used exactly as given (see :mod:`calibration.arrays`).
"""
from __future__ import annotations

import numbers
from dataclasses import dataclass, field
from typing import Literal

import numpy as np

from edgeconv.calibration import EMBEDDED_SOURCE, CalibrationError, load_samples
from edgeconv.models.preprocessing import Preprocessing

__all__ = ["InputSet", "model_inputs", "DataPlan", "plan_data"]


@dataclass
class InputSet:
    """Model inputs ``x`` (N, H, W, C) float32 ready for any runner, and where they came from.

    ``preprocessing`` is the rule that was applied to pixel samples; ``kind`` says whether it was ("pixels") or
    whether the data were float model inputs used as given ("model_input"). ``warnings`` holds notes the caller
    should print (for example float inputs far outside the range the preprocessing produces).
    """

    x: np.ndarray
    source: str
    ids: list[str]
    skipped: list[tuple[str, str]]
    labels: np.ndarray | None
    preprocessing: Preprocessing | None
    split: str = "calibration"
    kind: str = "pixels"
    warnings: list[str] = field(default_factory=list)

    def __len__(self) -> int:
        return len(self.x)

    def describe(self) -> str:
        """One line: "200 samples from the embedded photo set (...), calibration split, preprocessing ... = ...". """
        source = f"the {self.source}" if self.source == EMBEDDED_SOURCE else self.source
        parts = [f"{len(self.x)} samples from {source}", f"{self.split} split"]
        if self.kind == "model_input":
            parts.append("float model inputs used as given (no preprocessing)")
        else:
            parts.append(f"preprocessing {describe_preprocessing(self.preprocessing)}")
        if self.labels is not None:
            parts.append("with labels")
        if self.skipped:
            n = len(self.skipped)
            parts.append(f"{n} unreadable file{'s' if n > 1 else ''} skipped")
        return ", ".join(parts)


def describe_preprocessing(p: Preprocessing) -> str:
    """ "torch_imagenet = (x/255 - mean) / std", "tf_-1_1 = x/127.5 - 1", "caffe_bgr = BGR(x) - mean"."""
    def value(v: tuple[float, ...], name: str) -> str:
        return f"{v[0]:g}" if len(set(v)) == 1 else name

    x = "BGR(x)" if p.bgr else "x"
    f = x if p.scale == 1 else f"{x}/{1 / p.scale:.6g}"
    if any(m != 0 for m in p.mean):
        f = f"{f} - {value(p.mean, 'mean')}"
    if any(s != 1 for s in p.std):
        f = f"({f}) / {value(p.std, 'std')}" if " " in f else f"{f} / {value(p.std, 'std')}"
    return f"{p.name} = {f}"


def _shape(input_shape) -> tuple[int, int, int]:
    if (input_shape is None or len(input_shape) != 3
            or not all(isinstance(v, numbers.Integral) and not isinstance(v, bool) and v > 0 for v in input_shape)):
        raise CalibrationError(f"the model's input shape {tuple(input_shape or ())} is not a fixed (H, W, C) "
                               f"image shape: give the input size (--input-size)", exit_code=2)
    return int(input_shape[0]), int(input_shape[1]), int(input_shape[2])


def model_inputs(path, *, input_shape, preprocessing, num: int = 200, split: str = "calibration", seed: int = 0,
                 exclude_ids=()) -> InputSet:
    """Load up to ``num`` samples of ``split`` from ``path`` (None: the embedded photo set) as model inputs.

    ``input_shape`` is the model's (H, W, C): (H, W) sets the sample size and C the channel count (1 gray, 3 RGB).
    ``preprocessing`` (a ``Preprocessing`` or its ``to_dict()``) maps pixel samples to model inputs.
    """
    h, w, c = _shape(input_shape)
    if isinstance(preprocessing, dict):
        preprocessing = Preprocessing.from_dict(preprocessing)
    s = load_samples(path, size=(h, w), channels=c, num=num, split=split, seed=seed, exclude_ids=exclude_ids)
    warnings: list[str] = []
    if s.kind == "pixels":
        if preprocessing is None:
            raise CalibrationError(f"{s.source} holds pixels but no preprocessing was given to turn them into model "
                                   f"inputs (give --scale/--mean/--std)", exit_code=2)
        with np.errstate(divide="ignore", invalid="ignore", over="ignore"):  # reported below as one clear error
            x = preprocessing.apply(s.data)
        if x.shape != s.data.shape:
            raise CalibrationError(f"preprocessing {preprocessing.name} (mean {list(preprocessing.mean)}, std "
                                   f"{list(preprocessing.std)}) does not fit a {c}-channel model input", exit_code=2)
    else:
        x = s.data
        if preprocessing is not None:
            warnings += _range_warnings(x, preprocessing, s.source)
    if not np.isfinite(x).all():
        if s.kind == "model_input":
            raise CalibrationError(f"{s.source} holds values beyond the float32 range (they become inf)")
        raise CalibrationError(f"preprocessing {describe_preprocessing(preprocessing)} turns {s.source} into NaN or "
                               f"inf model inputs: check its scale, mean and std")
    return InputSet(x, s.source, s.ids, s.skipped, s.labels, preprocessing, split, s.kind, warnings)


def _range_warnings(x: np.ndarray, p: Preprocessing, source: str) -> list[str]:
    """A float array far outside the preprocessing's range is most likely raw pixels saved as float."""
    lo, hi = p.input_range
    margin = 0.5 * (hi - lo)
    xlo, xhi = float(x.min()), float(x.max())
    if xlo < lo - margin or xhi > hi + margin:
        return [f"{source}: float inputs span {xlo:g}..{xhi:g} but preprocessing {p.name} gives {lo:g}..{hi:g}; "
                f"float arrays are used as given (save raw pixels as uint8 to have them preprocessed)"]
    return []


# ------------------------------------------------------------------------------------------------ data plan

ValidationKind = Literal["data", "held_out", "embedded"]
MIN_FIRM_VERDICT = 100  # fewer held-out samples than this: the verdict is stated with a warning


@dataclass(frozen=True)
class DataPlan:
    """Which samples calibrate and which judge, decided once per export and recorded in the manifest.

    ``validation_kind``: "data" (the user's ``--data``), "held_out" (a deterministic part of the user's calibration
    data that calibration never sees: the loaders walk one seeded permutation from the front for calibration and from
    the back for validation, and validation also excludes the calibration ids), "embedded" (the embedded photo set's
    validation photos: only when the user gave no data at all, and the report says the verdict is on generic
    photos).
    """

    calibration_path: str | None
    calibration_count: int
    validation_kind: ValidationKind
    validation_path: str | None
    validation_count: int
    total: int | None = None  # samples in the user's calibration data (held_out)
    warnings: tuple[str, ...] = ()

    def to_dict(self) -> dict:
        return {"kind": self.validation_kind, "path": self.validation_path, "count": self.validation_count,
                "calibration_total": self.total}


def plan_data(calibration, data, calib_samples: int, validation_samples: int, hold_out: bool = True) -> DataPlan:
    """Split the user's data between calibration and validation (see :class:`DataPlan`). A set too small for both
    ``calib_samples`` and ``validation_samples`` is shared half and half (validation gets ``N // 2``). Without
    ``hold_out`` (the export does not validate) calibration takes what it asked for and a later ``validate`` gets
    whatever samples are left."""
    if data is not None:
        return DataPlan(None if calibration is None else str(calibration), calib_samples, "data", str(data),
                        validation_samples)
    if calibration is None:
        return DataPlan(None, calib_samples, "embedded", None, validation_samples)
    from edgeconv.calibration import count_samples

    n = count_samples(calibration)
    if n < 2:
        return DataPlan(str(calibration), calib_samples, "embedded", None, validation_samples, n, (
            f"{calibration} has {n} sample: nothing can be held out for validation, so the verdict is on the "
            f"embedded generic photos; pass --data with held-out samples like the model's",))
    warnings: list[str] = []
    n_cal, n_val = calib_samples, validation_samples
    if not hold_out:
        left = n - min(calib_samples, n)
        if left == 0:
            return DataPlan(str(calibration), calib_samples, "embedded", None, validation_samples, n)
        return DataPlan(str(calibration), calib_samples, "held_out", str(calibration), min(left, n_val), n)
    if n < calib_samples + validation_samples:
        n_val = min(validation_samples, n // 2)
        n_cal = min(calib_samples, n - n_val)
        warnings.append(f"{calibration} has {n} samples for both calibration and validation: {n_cal} calibrate, "
                        f"{n_val} are held out to validate (never calibrated on)")
    if n_val < MIN_FIRM_VERDICT:
        warnings.append(f"the verdict rests on only {n_val} held-out samples; pass --data with more samples like "
                        f"the model's for a firmer one")
    return DataPlan(str(calibration), n_cal, "held_out", str(calibration), n_val, n, tuple(warnings))
