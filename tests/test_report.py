"""report.json: versioned, and read back into the same objects (bench reads it through from_dict, not by hand)."""
from __future__ import annotations

import json

import numpy as np
import pytest

from edgeconv.errors import EdgeconvError
from edgeconv.verify.compare import compare_outputs, tolerance_for
from edgeconv.verify.validate import REPORT_SCHEMA, ArtifactResult, ValidationReport


def _report(tmp_path):
    rng = np.random.default_rng(0)
    ref = rng.dirichlet(np.ones(5), 40).astype(np.float32)
    got = ref + rng.normal(0, 1e-3, ref.shape).astype(np.float32)
    tol = tolerance_for("int8", "tflite")
    a = ArtifactResult("m_int8.tflite", "int8", "tflite", "int8", tol,
                       comparison=compare_outputs([ref], [got], tol, labels=ref.argmax(1)))
    b = ArtifactResult("m_fp32.tflite", "fp32", "tflite", "fp32", tolerance_for("fp32", "tflite"), error="cannot run")
    return ValidationReport(tmp_path, "m", "m.keras", "40 samples", 40, [a, b], "labels.npy", {"min_sqnr": 20.0},
                            ["a warning"])


def test_report_round_trips_through_json(tmp_path):
    rep = _report(tmp_path)
    d = json.loads(json.dumps(rep.to_dict()))
    assert d["schema"] == REPORT_SCHEMA
    again = ValidationReport.from_dict(d, tmp_path)
    assert again.to_dict() == d
    assert [a.verdict for a in again.artifacts] == ["PASS", "FAIL"] and again.passed is False
    o = again.artifacts[0].comparison.outputs[0]
    assert o.accuracy == 1.0 and o.sqnr_db > 30


def test_report_load_errors_are_one_line(tmp_path):
    (tmp_path / "report.json").write_text("[]")
    with pytest.raises(EdgeconvError, match="not a valid edgeconv report"):
        ValidationReport.load(tmp_path / "report.json")
    with pytest.raises(EdgeconvError, match="unknown report schema"):
        ValidationReport.from_dict({"schema": "edgeconv.report/9", "model": "m", "artifacts": []})
