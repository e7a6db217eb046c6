"""edgeconv.verify.validate + edgeconv.verify.report: an honest export passes, broken / changed artifacts fail and are named."""
from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from edgeconv.errors import EdgeconvError
from edgeconv.fileio import atomic_write_json, sha256_file
from edgeconv.pipeline.manifest import MANIFEST
from edgeconv.verify.report import detail_lines, table_columns, table_rows
from edgeconv.verify.validate import load_labels, validate


@pytest.fixture(scope="module")
def exported(trained_tiny, digits_calibration_npy, tmp_path_factory):
    """An honest export of the trained tiny model: fp32 + fp16 + int8 TFLite and fp32 ONNX."""
    from edgeconv.pipeline.export import export

    path, _ = trained_tiny
    cal, _ = digits_calibration_npy
    out = tmp_path_factory.mktemp("exp")
    res = export(str(path), precisions=["fp16", "int8", "onnx"], out_dir=out, calibration=cal, calib_samples=100,
                 validate=False, quiet=True)
    return res.out_dir


@pytest.fixture
def folder(exported, tmp_path):
    """A private copy of the export, free to tamper with."""
    dst = tmp_path / exported.name
    shutil.copytree(exported, dst)
    return dst


def test_honest_export_passes_and_writes_reports(folder, digits_calibration_npy):
    _, held = digits_calibration_npy
    rep = validate(folder, data=held, samples=150)
    assert rep.passed, rep.summary_line()
    assert [a.file for a in rep.artifacts] == ["tiny_mnv3_fp32.tflite", "tiny_mnv3_fp16.tflite",
                                               "tiny_mnv3_int8.tflite", "tiny_mnv3.onnx"]
    assert rep.samples == 150 and "held-out" in rep.summary_line()
    int8 = rep.artifact("tiny_mnv3_int8.tflite")
    o = int8.comparison.outputs[0]
    assert o.sqnr_db > 25 and o.top1_agreement >= 0.97  # measured 30 dB / 99.5%
    assert o.accuracy is not None and o.accuracy_ref > 0.9  # labels came with the .npz
    assert rep.artifact("tiny_mnv3_fp32.tflite").comparison.outputs[0].max_abs < 1e-4
    assert int8.layers is None  # layer-wise only on request or on failure
    d = json.loads((folder / "report.json").read_text())
    assert d["passed"] is True and d["tolerances"]["tiny_mnv3_int8.tflite"] == {"min_sqnr": 16.0, "min_top1": 0.95,
                                                                                  "max_accuracy_drop": 1.0}
    md = (folder / "report.md").read_text()
    assert "# Validation of tiny_mnv3: PASS" in md and "SQNR>=16dB" in md
    rows = table_rows(rep)
    assert len(rows) == 4 and all(len(r) == len(table_columns()) for r in rows) and rows[2][-1] == "PASS"


def _broken_int8(folder, digits, scale: float) -> bytes:
    """int8 of the same graph with every kernel perturbed by noise of ``scale`` x its std (different weights)."""
    import keras

    from edgeconv.tflite.convert import convert_tflite
    from edgeconv.pipeline.trace import trace

    model = keras.saving.load_model(folder / "tiny_mnv3.keras", compile=False)
    rng = np.random.default_rng(1)
    for layer in model.layers:
        if layer.weights and hasattr(layer, "kernel"):
            w = layer.get_weights()
            w[0] = w[0] + rng.normal(0, scale * w[0].std(), w[0].shape).astype(np.float32)
            layer.set_weights(w)
    (xtr, _), _ = digits
    return convert_tflite(trace(model, folder / "work"), "int8", xtr[:100], "int")


def test_int8_from_different_weights_fails_and_is_named(folder, digits, digits_calibration_npy):
    _, held = digits_calibration_npy
    bad = folder / "tiny_mnv3_int8.tflite"
    bad.write_bytes(_broken_int8(folder, digits, 0.1))
    m = json.loads((folder / MANIFEST).read_text())  # as if the export itself had produced it: sha256 matches
    for a in m["artifacts"]:
        if a["file"] == bad.name:
            a["sha256"] = sha256_file(bad)
    atomic_write_json(folder / MANIFEST, m)
    shutil.rmtree(folder / "work")
    rep = validate(folder, data=held, samples=100)
    assert not rep.passed
    assert [a.file for a in rep.failed] == ["tiny_mnv3_int8.tflite"]
    res = rep.artifact(bad.name)
    assert res.sha256_ok and any(r.startswith("SQNR") and "< 16 dB" in r for r in res.reasons)
    assert "tiny_mnv3_int8.tflite" in rep.summary_line()
    # a failing int8 gets its layer-wise report and plot automatically
    assert res.layers is not None and res.layers.layers and (folder / "tiny_mnv3_int8.layers.png").exists()
    assert any(line.startswith("tiny_mnv3_int8.tflite: 16 layers matched") and "tiny_mnv3_int8.layers.png" in line
               for line in detail_lines(rep))
    md = (folder / "report.md").read_text()
    assert "## tiny_mnv3_int8.tflite: FAIL" in md and "### Layer-wise" in md


def test_changed_file_fails_on_sha256(folder, digits_calibration_npy):
    _, held = digits_calibration_npy
    # fp16 bytes in place of the int8 file: numerically fine, but not what was exported
    (folder / "tiny_mnv3_int8.tflite").write_bytes((folder / "tiny_mnv3_fp16.tflite").read_bytes())
    rep = validate(folder, data=held, samples=50, layers_on_failure=False)
    res = rep.artifact("tiny_mnv3_int8.tflite")
    assert not rep.passed and not res.sha256_ok and res.comparison.passed
    assert res.reasons == ["sha256 differs from the manifest: the file changed since export"]
    assert [a.file for a in rep.failed] == ["tiny_mnv3_int8.tflite"]


def test_single_artifact_and_overrides(folder, digits_calibration_npy):
    _, held = digits_calibration_npy
    rep = validate(folder / "tiny_mnv3_int8.tflite", data=held, samples=50, min_sqnr=60, layers=True)
    assert [a.file for a in rep.artifacts] == ["tiny_mnv3_int8.tflite"] and not rep.passed
    assert rep.overrides == {"min_sqnr": 60} and "SQNR" in rep.failed[0].reasons[0]
    assert (folder / "report.tiny_mnv3_int8.json").exists() and not (folder / "report.json").exists()
    assert rep.artifacts[0].layers.layers  # --layers
    # --min-sqnr leaves float artifacts alone; --atol leaves quantized ones alone
    rep = validate(folder, data=held, samples=50, min_sqnr=60, atol=1e-12, write=False)
    assert {a.file for a in rep.failed} == {"tiny_mnv3_int8.tflite", "tiny_mnv3_fp32.tflite",
                                           "tiny_mnv3_fp16.tflite", "tiny_mnv3.onnx"}
    assert rep.artifact("tiny_mnv3_int8.tflite").tolerance.atol is None


def test_default_data_is_the_held_out_part_of_the_calibration_data(folder):
    """No --data: validation uses the samples of the user's calibration data that calibration did not take."""
    import json

    rep = validate(folder / "tiny_mnv3_fp32.tflite", samples=5, write=False)
    assert rep.passed and "digits_train.npy" in rep.inputs and "validation split" in rep.inputs
    assert "held-out split of the calibration data" in rep.data_note
    calib_ids = json.loads((folder / "manifest.json").read_text())["calibration"]["ids"]
    assert len(rep.input_ids) == 5 and not set(rep.input_ids) & set(calib_ids)


def test_user_errors(folder, tmp_path):
    (tmp_path / "empty").mkdir()
    with pytest.raises(EdgeconvError, match="no manifest.json"):
        validate(tmp_path / "empty")
    with pytest.raises(EdgeconvError, match="does not exist"):
        validate(tmp_path / "nope")
    (folder / "tiny_mnv3.onnx").unlink()
    with pytest.raises(EdgeconvError, match=r"tiny_mnv3\.onnx is listed in the manifest but missing"):
        validate(folder)
    with pytest.raises(EdgeconvError, match="not listed in the manifest"):
        stray = folder / "stray.tflite"
        stray.write_bytes(b"x")
        validate(stray)


def test_labels_files(tmp_path):
    ids = ["d.npz[3]", "d.npz[0]"]
    np.save(tmp_path / "l.npy", np.array([7, 1, 2, 5]))
    assert load_labels(tmp_path / "l.npy", ids).tolist() == [5, 7]
    (tmp_path / "l.txt").write_text("cats/1.jpg 3\ndogs/2.jpg 4\n")
    assert load_labels(tmp_path / "l.txt", ["dogs/2.jpg", "cats/1.jpg"]).tolist() == [4, 3]
    with pytest.raises(EdgeconvError, match="no label for sample birds/3.jpg"):
        load_labels(tmp_path / "l.txt", ["birds/3.jpg"])
    with pytest.raises(EdgeconvError, match="has 4 labels but the data has a sample d.npz\\[9\\]"):
        load_labels(tmp_path / "l.npy", ["d.npz[9]"])


def test_calibration_samples_are_never_validation_inputs(folder, digits_calibration_npy):
    cal, _ = digits_calibration_npy  # the export calibrated on 100 of these 1,400 images
    rep = validate(folder, data=cal, samples=5000, artifacts=["tiny_mnv3_fp32.tflite"], write=False)
    assert rep.samples == 1300 and rep.passed
    assert any("only 1300 held-out samples" in w for w in rep.warnings)


def test_same_file_names_in_another_source_are_not_excluded(folder, digits_calibration_npy, tmp_path):
    """Sample ids are names inside their source: a copy elsewhere is other data, so none of it is excluded."""
    cal, _ = digits_calibration_npy
    other = tmp_path / "elsewhere" / Path(cal).name
    other.parent.mkdir()
    other.write_bytes(Path(cal).read_bytes())
    rep = validate(folder, data=other, samples=5000, artifacts=["tiny_mnv3_fp32.tflite"], write=False)
    assert rep.samples == 1400 and rep.passed


def test_float_tolerance_never_below_the_reference_noise(folder, digits_calibration_npy, monkeypatch):
    """A trained model agrees with itself (batched vs one image at a time) to float32 rounding, so the default
    atol stands; when the reference is noisier (a deep random net), fp32's atol rises to 10x that noise and the
    report says why, while the quantized artifacts keep their own criteria."""
    import keras

    import edgeconv.verify.validate as v

    _, held = digits_calibration_npy
    model = keras.saving.load_model(folder / "tiny_mnv3.keras", compile=False)
    data = np.load(held)
    x = (data[data.files[0]] if hasattr(data, "files") else data)[:32].astype(np.float32)
    from edgeconv.runtime.runners import KerasRunner

    noise = v.reference_noise(model, x, KerasRunner(model, compiled=True).run(x))
    assert 0 <= noise < 1e-5  # measured ~1e-7: trained and shallow
    rep = validate(folder, data=held, samples=40, write=False)
    assert rep.artifact("tiny_mnv3_fp32.tflite").tolerance.atol == pytest.approx(1e-4)
    assert not any("atol raised" in w for w in rep.warnings)

    monkeypatch.setattr(v, "reference_noise", lambda *a: 3e-5)
    rep = validate(folder, data=held, samples=40, write=False)
    assert rep.artifact("tiny_mnv3_fp32.tflite").tolerance.atol == pytest.approx(3e-4)
    assert rep.artifact("tiny_mnv3.onnx").tolerance.atol == pytest.approx(3e-4)
    assert rep.artifact("tiny_mnv3_fp16.tflite").tolerance.atol == pytest.approx(5e-2)  # already above
    assert rep.artifact("tiny_mnv3_int8.tflite").tolerance.atol is None
    assert any("tiny_mnv3_fp32.tflite: atol raised from 0.0001 to 0.0003" in w for w in rep.warnings)
    # a user's --atol is the user's: no automatic raise
    rep = validate(folder, data=held, samples=40, write=False, atol=1e-3)
    assert rep.artifact("tiny_mnv3_fp32.tflite").tolerance.atol == pytest.approx(1e-3)


def test_sharded_validation_equals_single_process(folder, digits_calibration_npy):
    """validate --jobs 3 runs each artifact on three shards in three processes: every figure of the report (top-1
    agreement, accuracy, SQNR, max abs error...) is exactly the single-process one."""
    from edgeconv.runtime.shard import shard_bounds

    _, val = digits_calibration_npy
    one = validate(folder, data=val, samples=50, write=False).to_dict()
    three = validate(folder, data=val, samples=50, write=False, jobs=3).to_dict()
    assert shard_bounds(50, 3) == [(0, 17), (17, 33), (33, 50)] and shard_bounds(2, 3) == [(0, 1), (1, 2)]
    for rep in (one, three):
        for a in rep["artifacts"]:
            a.pop("seconds")
    assert three == one
    int8 = next(a for a in three["artifacts"] if a["key"] == "int8")["comparison"]["outputs"][0]
    assert int8["accuracy"] is not None and int8["top1_agreement"] > 0.9
