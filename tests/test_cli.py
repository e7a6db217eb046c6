"""The command line: thin wiring, one-line errors with the right exit codes, and an end-to-end export + validate."""
from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest
from click.testing import CliRunner

from edgeconv import models
from edgeconv.cli import main


def run(*args):
    return CliRunner().invoke(main, [str(a) for a in args], catch_exceptions=False)


def test_help_is_instant_no_heavy_imports():
    code = ("import sys; from edgeconv.cli import main\n"
            "for cmd in ([], ['zoo'], ['zoo', 'list'], ['export'], ['validate'], ['sweep']):\n"
            "    try:\n        main(cmd + ['--help'])\n    except SystemExit as e:\n        assert e.code == 0, cmd\n"
            "heavy = [m for m in ('tensorflow', 'keras', 'tf2onnx', 'onnxruntime', 'ai_edge_litert', 'ray') if m in sys.modules]\n"
            "print('HEAVY', heavy)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert "HEAVY []" in out


def test_zoo_list_json_has_every_model_with_its_count():
    res = run("zoo", "list", "--json")
    assert res.exit_code == 0
    rows = json.loads(res.output)
    assert [r["name"] for r in rows] == models.list_models()
    by_name = {r["name"]: r for r in rows}
    assert by_name["mobilenetv3_small"]["params"] == 2_554_968
    assert by_name["lenet5"]["params"] == 61_706 and by_name["lenet5"]["input_shape"] == [32, 32, 1]
    assert set(by_name["mobilenetv3_large"]["sensitive_activations"]) == {"hard_swish", "hard_sigmoid"}


def test_zoo_list_says_which_models_have_pretrained_weights():
    rows = {r["name"]: r for r in json.loads(run("zoo", "list", "--json").output)}
    assert rows["mobilenetv3_small"]["pretrained"] == "imagenet" and rows["resnet18"]["pretrained"] is None
    assert rows["mobilenet_v1"]["pretrained_input_sizes"] == [128, 160, 192, 224]
    table = run("zoo", "list", "mobilenet*").output
    assert "pretrained" in table and "imagenet (224)" in table and "imagenet (96/128/160/192/224)" in table
    assert run("zoo", "list", "lenet5").output.splitlines()[-2].rstrip(" │|").endswith("-")


def test_zoo_list_table_and_pattern():
    res = run("zoo", "list", "resnet*")
    assert res.exit_code == 0
    assert "resnet50" in res.output and "mobilenet" not in res.output
    res = run("zoo", "list", "nosuchthing*")
    assert res.exit_code == 2 and res.output.count("\n") == 1


@pytest.mark.parametrize("argv,code,needle", [
    (["export", "mobilenetv3_smal"], 2, "did you mean mobilenetv3_small"),
    (["export", "mobilenetv3_small", "--width", "alpha"], 2, "KEY=VALUE"),
    (["export", "mobilenetv3_small", "--input-size", "8"], 2, "at least 32"),
    (["export", "mobilenetv3_small", "--input-size", "96x"], 2, "takes H or HxW (e.g. 96 or 96x128)"),
    (["export", "mobilenetv3_small", "--custom-objects", "layers.py"], 2, "not zoo models"),
    (["export", "mobilenetv3_small", "--nchw"], 2, "--nchw only applies"),
    (["export", "mobilenetv3_small", "--fallback", "auto"], 2, "add --int8"),
    (["export", "mobilenetv3_small", "--int8-ranges", "median"], 2, "'median' is not one of"),
    (["export", "mobilenetv3_small", "--width", "nope=3"], 2, "nope"),
    (["export", "missing_dir/model.keras"], 1, "not found"),
    (["validate", "no/such/folder"], 1, "no/such/folder"),
])
def test_bad_input_is_one_line_with_exit_code(argv, code, needle, tmp_path):
    res = CliRunner().invoke(main, argv + ["--out", str(tmp_path)] if argv[0] == "export" else argv)
    assert res.exit_code == code, res.output
    assert needle in res.output
    assert "Traceback" not in res.output and res.output.strip().count("\n") == 0, res.output
    assert list(tmp_path.iterdir()) == []


def test_export_then_validate_end_to_end(trained_tiny, digits_calibration_npy, tmp_path):
    path, _ = trained_tiny
    cal, held = digits_calibration_npy
    res = run("export", path, "--int8", "--fp16", "--calibration", cal, "--data", held, "--out", tmp_path, "-q")
    assert res.exit_code == 0, res.output
    assert "tiny_mnv3_int8.tflite" in res.output and "PASS" in res.output
    folder = tmp_path / "tiny_mnv3"
    report = json.loads((folder / "report.json").read_text())
    assert report["passed"] is True
    assert (folder / "report.md").exists()

    res = run("validate", folder, "--data", held)
    assert res.exit_code == 0, res.output

    # Tamper with the int8 artifact: validate must fail (exit 1) and name it.
    int8 = folder / "tiny_mnv3_int8.tflite"
    other = folder / "tiny_mnv3_fp16.tflite"
    int8.write_bytes(other.read_bytes())
    res = CliRunner().invoke(main, ["validate", str(folder), "--data", str(held)])
    assert res.exit_code == 1
    assert "tiny_mnv3_int8.tflite" in res.output


def test_user_preprocessing_options_reach_the_manifest(trained_tiny, tmp_path):
    path, _ = trained_tiny
    res = run("export", path, "--no-validate", "--scale", "1", "--mean", "0", "--std", "1", "--out", tmp_path, "-q")
    assert res.exit_code == 0, res.output
    m = json.loads((tmp_path / "tiny_mnv3" / "manifest.json").read_text())
    assert m["preprocessing"]["name"] == "custom" and m["preprocessing"]["assumed"] is False
    assert np.isclose(m["preprocessing"]["scale"], 1.0)


def test_zoo_model_with_random_weights_exports_and_says_int8_is_not_judged(tmp_path):
    """The README's main job on a (small) zoo model: random weights, so BN statistics are estimated, fp32 is judged
    (and passes), int8 is run and measured but marked NOT JUDGED, and the command succeeds."""
    res = run("export", "mobilenetv3_small", "--int8", "--input-size", "32", "--classes", "10", "--alpha", "0.75",
              "--calib-samples", "32", "--samples", "24", "--out", tmp_path, "-q")
    assert res.exit_code == 0, res.output
    assert "random weights" in res.output and "NOT JUDGED" in res.output
    folder = tmp_path / "mobilenetv3_small"
    m = json.loads((folder / "manifest.json").read_text())
    assert m["model"]["weights"]["kind"] == "random" and m["model"]["weights"]["batchnorm_estimated"] is True
    report = json.loads((folder / "report.json").read_text())
    verdicts = {a["precision"]: a["verdict"] for a in report["artifacts"]}
    assert verdicts == {"fp32": "PASS", "int8": "NOT JUDGED"}
    fp32 = next(a for a in report["artifacts"] if a["precision"] == "fp32")["comparison"]["outputs"][0]
    assert fp32["max_abs"] < 1e-4
    # the estimated BN statistics make the output depend on the input: the fp32 comparison means something
    import keras

    ref = keras.models.load_model(folder / "mobilenetv3_small.keras")
    x = np.random.default_rng(0).uniform(0, 255, (8, 32, 32, 3)).astype(np.float32)
    assert np.asarray(ref(x)).std(axis=0).max() > 1e-3


def test_python_dash_m_edgeconv_is_the_cli():
    """``python -m edgeconv`` (what benchmarks/latency.py runs in a fresh process) is the same CLI."""
    import subprocess
    import sys

    p = subprocess.run([sys.executable, "-m", "edgeconv", "export", "--help"], capture_output=True, text=True)
    assert p.returncode == 0 and "Usage: edgeconv export" in p.stdout and "--int8-ranges" in p.stdout, p.stderr
