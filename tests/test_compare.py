"""edgeconv.verify.compare: metric values against hand-computed numbers, tolerances, one-line pass/fail reasons."""
from __future__ import annotations

import json
import math

import numpy as np
import pytest

from edgeconv.verify.compare import (Tolerance, compare_outputs, default_tolerance, psnr_db, sqnr_db, tolerance_for,
                              topk_agreement)
from edgeconv.errors import EdgeconvError


def test_sqnr_of_known_noise_power():
    ref = np.full((4, 10), 2.0)  # signal power 4 per element
    noise = np.where(np.arange(40).reshape(4, 10) % 2 == 0, 0.2, -0.2)  # noise power 0.04
    assert sqnr_db(ref, ref + noise) == pytest.approx(20.0, abs=1e-9)  # 10 log10(4 / 0.04)
    assert sqnr_db(ref, ref + noise / 10) == pytest.approx(40.0, abs=1e-9)
    assert sqnr_db(ref, ref) == math.inf
    assert sqnr_db(np.zeros(3), np.ones(3)) == -math.inf


def test_psnr_uses_the_reference_range():
    ref = np.array([[0.0, 0.5, 1.0, 0.25]])  # range 1
    got = ref + np.array([[0.1, -0.1, 0.1, -0.1]])  # mse 0.01
    assert psnr_db(ref, got) == pytest.approx(20.0, abs=1e-9)
    const = np.full((2, 3), 0.001)  # constant reference: peak = max |value|
    assert psnr_db(const, const * 0) == pytest.approx(0.0, abs=1e-9)


def test_topk_agreement_by_hand():
    ref = np.array([[0.9, 0.1, 0, 0, 0, 0], [0, 0.8, 0.2, 0, 0, 0], [0, 0, 0.1, 0.9, 0, 0], [0.5, 0.4, 0, 0, 0, 0.1]])
    got = np.array([[0.8, 0.2, 0, 0, 0, 0],  # agrees
                    [0, 0.3, 0.7, 0, 0, 0],  # top-1 differs, ref class 1 is 2nd
                    [0.6, 0.1, 0.2, 0.05, 0.03, 0.02],  # ref class 3 is 4th: in top-5
                    [0, 0.05, 0.3, 0.3, 0.3, 0.1]])  # ref class 0 is last: outside top-5
    assert topk_agreement(ref, got, 1) == pytest.approx(0.25)
    assert topk_agreement(ref, got, 5) == pytest.approx(0.75)
    assert topk_agreement(ref[:, :3], got[:, :3], 5) is None  # fewer than 5 classes
    assert topk_agreement(ref.reshape(4, 2, 3), got.reshape(4, 2, 3)) is None  # not class scores


def test_compare_outputs_statistics_and_pass():
    rng = np.random.default_rng(0)
    ref = rng.random((50, 10)).astype(np.float32)
    got = ref + np.float32(1e-5)
    c = compare_outputs([ref], [got], default_tolerance("fp32", "tflite"))
    o = c.outputs[0]
    assert c.passed and o.passed and c.reasons == []
    assert o.max_abs == pytest.approx(1e-5, rel=1e-2) and o.mean_abs == pytest.approx(1e-5, rel=1e-2)
    assert o.cosine == pytest.approx(1.0, abs=1e-6)
    assert o.top1_agreement == 1.0 and o.top5_agreement == 1.0
    assert [ch.name for ch in o.checks] == ["atol"]


def test_failing_checks_give_one_line_each():
    ref = np.eye(10, dtype=np.float32)[np.arange(20) % 10]  # one-hot scores
    got = np.roll(ref, 1, axis=1)  # every top-1 wrong
    c = compare_outputs([ref], [got], Tolerance(atol=1e-3, min_sqnr=20, min_top1=0.9, min_cosine=0.99))
    assert not c.passed
    assert len(c.reasons) == 4 and all("\n" not in r for r in c.reasons)
    text = " | ".join(c.reasons)
    assert "max abs error 1 > atol 0.001 (40 of 200 elements off)" in text
    assert "SQNR -3.0 dB < 20 dB" in text  # error power 2 per sample vs signal 1
    assert "top-1 agreement 0.00% < 90.00%" in text
    assert "cosine 0.00000 < 0.99" in text


def test_labels_give_accuracy_of_both():
    ref = np.array([[0.9, 0.1], [0.2, 0.8], [0.6, 0.4], [0.3, 0.7]])
    got = np.array([[0.9, 0.1], [0.2, 0.8], [0.4, 0.6], [0.3, 0.7]])
    o = compare_outputs([ref], [got], Tolerance(), labels=np.array([0, 1, 1, 1])).outputs[0]
    assert o.accuracy_ref == pytest.approx(0.75) and o.accuracy == pytest.approx(1.0)
    with pytest.raises(EdgeconvError, match="3 labels for 4 inputs"):
        compare_outputs([ref], [got], Tolerance(), labels=[0, 1, 1])


def test_nan_output_and_wrong_shape_fail():
    ref = np.ones((2, 3), np.float32)
    c = compare_outputs([ref], [np.array([[1, np.nan, 1], [1, 1, 1]], np.float32)], Tolerance(min_sqnr=10))
    assert not c.passed and "1 of 6 output values are NaN or inf" in c.reasons[0]
    c = compare_outputs([ref], [np.ones((2, 4), np.float32)], Tolerance())
    assert not c.passed and "output shape (2, 4) != reference (2, 3)" in c.reasons[0]
    with pytest.raises(EdgeconvError, match="1 outputs, the reference 2"):
        compare_outputs([ref, ref], [ref], Tolerance())


def test_constant_reference_is_called_out():
    ref = np.full((5, 4), 0.25, np.float32)
    c = compare_outputs([ref], [np.zeros_like(ref)], default_tolerance("int8"))
    assert not c.passed and "same for every input" in c.outputs[0].notes[0]


def test_default_tolerances_and_overrides():
    assert default_tolerance("fp32", "onnx").atol == 1e-4
    assert default_tolerance("fp16").atol > default_tolerance("fp32").atol
    int8 = default_tolerance("int8", "tflite")
    assert int8.atol is None and int8.min_sqnr == 16.0 and int8.min_top1 == 0.95 and int8.max_accuracy_drop == 1.0
    assert default_tolerance("int8", "onnx") == int8
    assert default_tolerance("int16x8").min_sqnr > int8.min_sqnr
    # --atol touches float artifacts only, --min-sqnr quantized ones only, --min-top1 every artifact
    assert tolerance_for("int8", atol=1.0) == int8
    assert tolerance_for("fp32", min_sqnr=99.0) == default_tolerance("fp32")
    assert tolerance_for("fp16", atol=0.5) == Tolerance(atol=0.5, rtol=0.0)
    assert tolerance_for("int8", min_sqnr=30, min_top1=0.99) == Tolerance(min_sqnr=30, min_top1=0.99,
                                                                          max_accuracy_drop=1.0)
    assert tolerance_for("fp32", min_top1=0.99).min_top1 == 0.99
    with pytest.raises(ValueError):
        default_tolerance("int4")


def test_accuracy_drop_decides_with_labels():
    """int8 by default: a 1.0-point accuracy drop passes, 1.5 points fails (only when labels are given)."""
    ref = np.eye(10, dtype=np.float32)[np.arange(200) % 10]
    y = np.arange(200) % 10
    got = ref.copy()
    got[:2] = np.roll(got[:2], 1, axis=1)  # 2 of 200 wrong: 1.0 point
    tol = default_tolerance("int8")
    c = compare_outputs([ref], [got], tol, labels=y)
    assert [ch.name for ch in c.outputs[0].checks if ch.name == "accuracy"] == ["accuracy"] and c.outputs[0].passed
    got[2] = np.roll(got[2], 1)  # 3 of 200: 1.5 points
    c = compare_outputs([ref], [got], tol, labels=y)
    assert not c.passed and any("accuracy drop 1.50 points > 1" in r for r in c.reasons)
    assert all(ch.name != "accuracy" for ch in compare_outputs([ref], [got], tol).outputs[0].checks)


def test_to_dict_is_strict_json():
    ref = np.ones((3, 2), np.float32)
    d = compare_outputs([ref], [ref], default_tolerance("int8")).to_dict()
    json.dumps(d, allow_nan=False)
    assert d["outputs"][0]["sqnr_db"] == "inf" and d["passed"] is True
