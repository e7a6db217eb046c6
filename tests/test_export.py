"""edgeconv.pipeline.export on small models: artifacts, dtypes, sizes, parity with Keras, determinism, bad inputs."""
from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pytest

from edgeconv.errors import EdgeconvError
from edgeconv.pipeline.export import export
from edgeconv.pipeline.manifest import Manifest
from edgeconv.runtime.runners import KerasRunner, LiteRTRunner


def _leftovers(out: Path) -> list[str]:
    """Anything an interrupted / failed export could leave behind: staging folders, temp files, artifacts."""
    if not out.exists():
        return []
    return sorted(p.name for p in out.iterdir())


@pytest.fixture(scope="module")
def tiny_export(trained_tiny, digits_calibration_npy, tmp_path_factory):
    path, acc = trained_tiny
    cal, _ = digits_calibration_npy
    out = tmp_path_factory.mktemp("export")
    res = export(str(path), precisions=["fp16", "dynamic", "int8", "int16x8"], out_dir=out, calibration=cal,
                 calib_samples=200, io_type="int", validate=False, quiet=True)  # int: int8 / int16 interfaces
    return res, acc


def test_artifacts_and_manifest(tiny_export):
    res, _ = tiny_export
    folder = res.out_dir
    m = Manifest.load(folder)
    assert [a.precision for a in m.artifacts] == ["fp32", "fp16", "dynamic", "int8", "int16x8"]
    names = {p.name for p in folder.iterdir()}
    assert names == {"manifest.json", "tiny_mnv3.keras", *[a.file for a in m.artifacts]}
    raw = json.loads((folder / "manifest.json").read_text())
    for a in raw["artifacts"]:
        data = (folder / a["file"]).read_bytes()
        import hashlib

        assert a["sha256"] == hashlib.sha256(data).hexdigest()
        assert a["bytes"] == len(data)
        assert a["format"] == "tflite"
        assert a["inputs"][0]["shape"] == [1, 32, 32, 3]  # fixed batch 1
    assert raw["calibration"]["count"] == 200
    assert raw["calibration"]["path"].endswith("digits_train.npy")
    assert raw["preprocessing"]["name"] == "raw_0_255"  # the model rescales inside (Rescaling layer)
    assert raw["tools"]["tensorflow-cpu"].startswith("2.")
    assert "SHAPE" not in m.artifacts[0].ops  # no dynamic-batch ops


def test_int8_is_really_integer_and_fp16_weights_half(tiny_export):
    res, _ = tiny_export
    m = res.manifest
    int8 = next(a for a in m.artifacts if a.precision == "int8")
    assert int8.inputs[0]["dtype"] == "int8" and int8.outputs[0]["dtype"] == "int8"
    q = int8.inputs[0]["quantization"]
    assert q["scale"] > 0 and -128 <= q["zero_point"] <= 127
    types = int8.tensor_types
    assert "float32" not in types and types["int8"] > 20, types
    fp16 = next(a for a in m.artifacts if a.precision == "fp16")
    assert fp16.tensor_types.get("float16", 0) >= 10
    i16 = next(a for a in m.artifacts if a.precision == "int16x8")
    assert i16.inputs[0]["dtype"] == "int16"


def test_sizes_shrink_as_expected(tmp_path):
    """On a model big enough for weights to dominate: fp16 ~1/2 and dynamic / int8 ~1/4 of fp32."""
    calib = np.random.default_rng(0).integers(0, 256, size=(8, 32, 32, 3), dtype=np.uint8)
    np.save(tmp_path / "c.npy", calib)
    res = export("mobilenet_v1", precisions=["fp16", "dynamic", "int8"], out_dir=tmp_path / "out",
                 calibration=tmp_path / "c.npy", calib_samples=8, input_size=32, classes=10, width={"alpha": 0.5},
                 validate=False, quiet=True)
    size = {a.precision: a.bytes for a in res.artifacts}
    assert 0.45 <= size["fp16"] / size["fp32"] <= 0.56, size
    assert 0.22 <= size["dynamic"] / size["fp32"] <= 0.32, size
    assert 0.22 <= size["int8"] / size["fp32"] <= 0.32, size


def test_fp32_matches_keras_and_int8_agrees_on_heldout(tiny_export, digits):
    import keras

    res, acc = tiny_export
    assert acc >= 0.9, "the fixture model must really be trained"
    _, (xte, yte) = digits
    ref = KerasRunner(keras.saving.load_model(res.out_dir / "tiny_mnv3.keras")).run(xte)[0]
    fp32 = LiteRTRunner(res.path("fp32")).run(xte)[0]
    assert np.max(np.abs(fp32 - ref)) <= 1e-5
    agree = {}
    for key in ("fp16", "dynamic", "int8", "int16x8"):
        got = LiteRTRunner(res.path(key)).run(xte)[0]
        agree[key] = float(np.mean(got.argmax(1) == ref.argmax(1)))
    assert agree["int8"] >= 0.97, agree
    assert min(agree["fp16"], agree["int16x8"]) >= 0.99, agree


def test_same_inputs_same_bytes(trained_tiny, digits_calibration_npy, tmp_path):
    path, _ = trained_tiny
    cal, _ = digits_calibration_npy
    shas = []
    for run in ("a", "b"):
        res = export(str(path), precisions=["int8"], out_dir=tmp_path / run, calibration=cal, calib_samples=50,
                     validate=False, quiet=True)
        shas.append({a.file: a.sha256 for a in res.artifacts} | {"reference": res.manifest.reference["sha256"]})
    assert shas[0] == shas[1]  # the .keras reference too (Keras writes dates and id()s; edgeconv normalizes them)
    import keras

    ref = keras.saving.load_model(tmp_path / "a" / "tiny_mnv3" / "tiny_mnv3.keras", compile=False)
    orig = keras.saving.load_model(path, compile=False)
    x = np.random.default_rng(0).uniform(0, 255, (4, *orig.input_shape[1:])).astype(np.float32)
    np.testing.assert_array_equal(np.asarray(ref(x)), np.asarray(orig(x)))


def test_reexport_replaces_stale_artifacts(trained_tiny, tmp_path):
    path, _ = trained_tiny
    export(str(path), precisions=["fp16"], out_dir=tmp_path, validate=False, quiet=True)
    assert (tmp_path / "tiny_mnv3" / "tiny_mnv3_fp16.tflite").exists()
    export(str(path), precisions=["fp32"], out_dir=tmp_path, validate=False, quiet=True)
    assert _leftovers(tmp_path / "tiny_mnv3") == ["manifest.json", "tiny_mnv3.keras", "tiny_mnv3_fp32.tflite"]
    assert _leftovers(tmp_path) == ["tiny_mnv3"]


# --------------------------------------------------------------------------------------------------------------
# bad input: one clear line, nothing half-written
# --------------------------------------------------------------------------------------------------------------

def _bad_calibration(kind: str, root: Path) -> Path:
    if kind == "empty_folder":
        p = root / "empty"
        p.mkdir()
    elif kind == "unreadable_images":
        p = root / "junk"
        p.mkdir()
        for i in range(3):
            (p / f"img{i}.jpg").write_bytes(b"this is not a jpeg")
    elif kind == "npy_wrong_shape":
        p = root / "flat.npy"
        np.save(p, np.zeros((10, 32), np.uint8))
    elif kind == "npy_wrong_channels":
        p = root / "four.npy"
        np.save(p, np.zeros((10, 32, 32, 4), np.uint8))
    elif kind == "npy_nan":
        p = root / "nan.npy"
        x = np.zeros((10, 32, 32, 3), np.float32)
        x[3, 1, 1, 1] = np.nan
        np.save(p, x)
    elif kind == "missing":
        p = root / "nope.npy"
    else:
        raise AssertionError(kind)
    return p


@pytest.mark.parametrize("kind,message", [
    ("empty_folder", "empty"),
    ("unreadable_images", "no readable image"),
    ("npy_wrong_shape", "shape"),
    ("npy_wrong_channels", "channel"),
    ("npy_nan", "nan"),
    ("missing", "not found"),
])
def test_bad_calibration_data(kind, message, trained_tiny, tmp_path):
    path, _ = trained_tiny
    bad = _bad_calibration(kind, tmp_path)
    out = tmp_path / "out"
    with pytest.raises(EdgeconvError) as e:
        export(str(path), precisions=["int8"], out_dir=out, calibration=bad, validate=False, quiet=True)
    msg = str(e.value)
    assert "\n" not in msg and message in msg.lower(), msg
    assert _leftovers(out) == []


def test_missing_and_corrupt_model_files(tmp_path):
    out = tmp_path / "out"
    with pytest.raises(EdgeconvError, match="not found"):
        export(str(tmp_path / "missing.keras"), out_dir=out, validate=False, quiet=True)
    corrupt = tmp_path / "corrupt.keras"
    corrupt.write_bytes(b"PK\x03\x04 definitely not a keras zip")
    with pytest.raises(EdgeconvError) as e:
        export(str(corrupt), out_dir=out, validate=False, quiet=True)
    assert "corrupt.keras" in str(e.value) and "\n" not in str(e.value)
    assert _leftovers(out) == []


def test_output_folder_that_cannot_be_written(trained_tiny, tmp_path):
    path, _ = trained_tiny
    blocker = tmp_path / "a_file"
    blocker.write_text("not a folder")
    with pytest.raises(EdgeconvError, match="cannot write to output folder"):
        export(str(path), out_dir=blocker / "sub", validate=False, quiet=True)
    assert blocker.read_text() == "not a folder"


def test_failed_conversion_leaves_nothing(trained_tiny, tmp_path, monkeypatch):
    """A failure after some artifacts were written (here: the int8 step) leaves no file in the output folder."""
    import edgeconv.pipeline.export as ex

    path, _ = trained_tiny
    real = ex._convert_one

    def failing(p, *a, **k):
        if p.key == "int8":
            raise EdgeconvError("simulated converter crash")
        return real(p, *a, **k)

    monkeypatch.setattr(ex, "_convert_one", failing)
    calib = tmp_path / "c.npy"
    np.save(calib, np.random.default_rng(0).integers(0, 256, (4, 32, 32, 3), dtype=np.uint8))
    with pytest.raises(EdgeconvError, match="simulated"):
        export(str(path), precisions=["fp16", "int8"], out_dir=tmp_path / "out", calibration=calib,
               validate=False, quiet=True)
    assert _leftovers(tmp_path / "out") == []


def test_some_unreadable_images_are_skipped_and_counted(trained_tiny, tmp_path, digits):
    from PIL import Image

    path, _ = trained_tiny
    (xtr, _), _ = digits
    folder = tmp_path / "imgs"
    folder.mkdir()
    for i in range(12):
        Image.fromarray(xtr[i].astype(np.uint8)).save(folder / f"d{i:02d}.png")
    (folder / "broken.png").write_bytes(b"\x89PNG broken")
    res = export(str(path), precisions=["int8"], out_dir=tmp_path / "out", calibration=folder, validate=False,
                 quiet=True)
    cal = json.loads((res.out_dir / "manifest.json").read_text())["calibration"]
    assert cal["count"] == 12
    assert [os.path.basename(s[0]) for s in cal["skipped"]] == ["broken.png"]
    assert "skipped" in res.calibration_note
