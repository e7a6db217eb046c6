"""The verdict is computed on data like the user's: a held-out part of their calibration data when they give no
--data, never on generic photos unless they gave no data at all."""
from __future__ import annotations

import json

import numpy as np
import pytest

from edgeconv.pipeline.inputs import plan_data


def test_plan_splits_small_sets_and_warns(tmp_path):
    np.save(tmp_path / "few.npy", np.zeros((30, 8, 8, 3), np.uint8))
    plan = plan_data(tmp_path / "few.npy", None, calib_samples=200, validation_samples=200)
    assert (plan.validation_kind, plan.calibration_count, plan.validation_count) == ("held_out", 15, 15)
    assert any("only 15 held-out samples" in w for w in plan.warnings)
    np.save(tmp_path / "many.npy", np.zeros((1000, 8, 8, 3), np.uint8))
    plan = plan_data(tmp_path / "many.npy", None, 200, 200)
    assert (plan.calibration_count, plan.validation_count, plan.warnings) == (200, 200, ())
    assert plan_data(None, None, 200, 200).validation_kind == "embedded"
    assert plan_data(tmp_path / "many.npy", "held.npz", 200, 200).validation_kind == "data"


def test_user_calibration_without_data_is_judged_on_its_held_out_part(trained_tiny, digits_calibration_npy, tmp_path):
    """The false-FAIL of issue 12: before, this export was judged on generic photos."""
    from click.testing import CliRunner

    from edgeconv.cli import main

    path, _ = trained_tiny
    cal, _ = digits_calibration_npy
    res = CliRunner().invoke(main, ["export", str(path), "--int8", "--calibration", str(cal), "--calib-samples",
                                    "100", "--samples", "150", "--out", str(tmp_path), "-q"])
    assert res.exit_code == 0, res.output
    assert "judged on: held-out split of the calibration data" in res.output
    folder = tmp_path / "tiny_mnv3"
    m = json.loads((folder / "manifest.json").read_text())
    report = json.loads((folder / "report.json").read_text())
    assert m["validation"]["kind"] == "held_out" and m["validation"]["calibration_total"] == 1400
    assert report["passed"] and report["samples"] == 150 and len(report["input_ids"]) == 150
    assert not set(report["input_ids"]) & set(m["calibration"]["ids"])  # no calibration sample judges
    int8 = next(a for a in report["artifacts"] if a["precision"] == "int8")["comparison"]["outputs"][0]
    assert int8["top1_agreement"] >= 0.97 and int8["sqnr_db"] >= 20
    # validate DIR reuses what the export recorded
    res = CliRunner().invoke(main, ["validate", str(folder), "--samples", "150"])
    assert res.exit_code == 0 and "held-out split of the calibration data" in res.output
    again = json.loads((folder / "report.json").read_text())
    assert again["input_ids"] == report["input_ids"]


def test_embedded_photos_only_without_any_data_and_the_report_says_so(trained_tiny, tmp_path):
    from edgeconv import export

    path, _ = trained_tiny
    res = export(str(path), out_dir=tmp_path, quiet=True)
    assert "generic photo" in res.validation.data_note
    assert "generic photo" in (res.out_dir / "report.md").read_text()


def test_layers_write_a_model_explorer_overlay(trained_tiny, digits_calibration_npy, tmp_path):
    from edgeconv import export, validate
    from edgeconv.runtime.runners import LiteRTRunner

    path, _ = trained_tiny
    cal, _ = digits_calibration_npy
    res = export(str(path), precisions=["int8"], out_dir=tmp_path, calibration=cal, calib_samples=50,
                 validate=False, quiet=True)
    rep = validate(res.out_dir, samples=30, layers=True)
    int8 = rep.artifact("tiny_mnv3_int8.tflite")
    data = json.loads((res.out_dir / int8.layers.node_data_file).read_text())
    names = {t["name"] for t in LiteRTRunner(res.path("int8")).tensors()}
    results = data["main"]["results"]
    assert len(results) == len(int8.layers.layers) > 10 and set(results) <= names  # keys are real tensor names
    assert all(np.isfinite(v["value"]) for v in results.values()) and len(data["main"]["gradient"]) == 3
