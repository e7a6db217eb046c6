"""ONNX for phones: --ort writes onnxruntime Mobile's format of every ONNX artifact, validated like any artifact,
with the required-operators config of a reduced build; inspect says which nodes run in integer kernels."""
from __future__ import annotations

import numpy as np


def test_ort_files_run_match_their_onnx_and_are_listed(trained_tiny, digits_calibration_npy, tmp_path):
    from edgeconv import ValidationOptions, export
    from edgeconv.inspect import inspect_artifact
    from edgeconv.runtime.runners import OnnxRunner

    path, _ = trained_tiny
    cal, held = digits_calibration_npy
    res = export(str(path), precisions=["onnx", "onnx_int8"], ort=True, out_dir=tmp_path, calibration=cal,
                 calib_samples=100, validation=ValidationOptions(data=str(held), samples=100), quiet=True)
    keys = [a.key for a in res.artifacts]
    assert keys == ["fp32", "onnx", "onnx_ort", "onnx_int8", "onnx_int8_ort"]
    assert res.validation.passed, res.validation.summary_line()
    x = np.load(held)["x"][:20].astype(np.float32)
    for base in ("tiny_mnv3.onnx", "tiny_mnv3_int8.onnx"):
        ort_file = base.replace(".onnx", ".ort")
        rec = res.manifest.artifact(ort_file)
        assert rec.format == "ort" and rec.sha256 and (res.out_dir / ort_file).read_bytes()[4:8] == b"ORTM"
        a = OnnxRunner(res.out_dir / base).run(x)[0]
        b = OnnxRunner(res.out_dir / ort_file).run(x)[0]
        # the .ort computes what its .onnx computes, to float32 rounding (the .ort's graph is optimised offline:
        # fused kernels sum in another order; 1.07e-6 measured on softmax outputs of one training of the fixture)
        assert np.abs(a - b).max() <= 1e-5, base
    config = (res.out_dir / "tiny_mnv3.required_operators.config").read_text()
    assert "com.microsoft;1;" in config and "QLinearConv" in config and "ai.onnx;" in config
    int8 = inspect_artifact(res.out_dir / "tiny_mnv3_int8.onnx")
    k = int8.onnx_kernels
    assert k["all_convs_integer"] and k["integer_convs"] == k["convs"] > 5
    assert any("Convs in integer kernels" in line for line in int8.summary_lines())


def test_ort_without_onnx_is_a_usage_error(tmp_path):
    from click.testing import CliRunner

    from edgeconv.cli import main

    res = CliRunner().invoke(main, ["export", "lenet5", "--ort", "--out", str(tmp_path)])
    assert res.exit_code == 2 and "add --onnx" in res.output and res.output.strip().count("\n") == 0
    assert list(tmp_path.iterdir()) == []
