"""edgeconv.inspect + `edgeconv inspect`: I/O quantization vs the manifest, XNNPACK coverage, GPU check, sizes,
metadata that export embedded read back, ONNX files."""
from __future__ import annotations

import json

import numpy as np
import pytest
from click.testing import CliRunner

from edgeconv.options import ValidationOptions
from edgeconv.cli import main
from edgeconv.pipeline.export import export
from edgeconv.inspect import inspect_artifact, parse_gpu_analysis
from edgeconv.pipeline.manifest import Manifest

LABELS = [f"digit {i}" for i in range(10)]


@pytest.fixture(scope="module")
def phone_export(trained_tiny, digits_calibration_npy, tmp_path_factory):
    """The trained tiny MobileNetV3 exported for the CPU target (int8, h-swish decomposed) + fp16 + ONNX, with class
    labels, validated against Keras on held-out digits. int8 I/O (``io_type="int"``) keeps the op counts below about
    the rewrite alone; the default uint8 interface adds a QUANTIZE at each end (tests/test_phone.py)."""
    path, _ = trained_tiny
    cal, val = digits_calibration_npy
    tmp = tmp_path_factory.mktemp("phone")
    (tmp / "classes.txt").write_text("\n".join(LABELS) + "\n")
    res = export(str(path), precisions=["fp16", "onnx"], target="cpu", io_type="int", out_dir=tmp / "out",
                 calibration=cal,
                 calib_samples=100, class_labels=tmp / "classes.txt", model_version="2.1", quiet=True,
                 validation=ValidationOptions(data=str(val), samples=200))
    return res


def test_export_cpu_target_validates_with_rewrite(phone_export):
    res = phone_export
    assert [a.key for a in res.artifacts] == ["fp32", "fp16", "int8", "onnx"]
    int8 = res.manifest.artifact("tiny_mnv3_int8.tflite")
    assert int8.tflite_rewrites["decompose_hard_swish"] == 3
    parity = int8.tflite_rewrites["parity"]  # the export-time check against Keras on calibration inputs
    assert parity["samples"] == 16 and parity["sqnr_after_db"] >= parity["sqnr_before_db"] - 3.0 > 15
    assert "HARD_SWISH" not in int8.ops
    assert res.validation.passed, res.validation.summary_line()  # every rewrite keeps validation passing
    assert res.manifest.options["target"] == "cpu" and res.manifest.options["class_labels"] == "labels.txt"
    assert (res.out_dir / "labels.txt").read_text().splitlines() == LABELS


def test_int8_quantization_matches_manifest(phone_export):
    res = phone_export
    rec = res.manifest.artifact("tiny_mnv3_int8.tflite")
    rep = inspect_artifact(res.out_dir / rec.file)
    assert rep.inputs == rec.inputs and rep.outputs == rec.outputs
    q_in, q_out = rep.inputs[0]["quantization"], rep.outputs[0]["quantization"]
    assert rep.inputs[0]["dtype"] == "int8" and q_in["zero_point"] == -128 and q_in["scale"] == pytest.approx(1.0,
                                                                                                           rel=1e-3)
    assert q_out == {"scale": 1 / 256, "zero_point": -128}  # softmax output: [0, 1) in 256 steps
    assert rep.sha256 == rec.sha256 and rep.bytes == rec.bytes
    assert rep.ops == rec.ops


def test_xnnpack_coverage_measured(phone_export):
    res = phone_export
    rep = inspect_artifact(res.out_dir / "tiny_mnv3_int8.tflite")
    x = rep.xnnpack
    assert x["total_nodes"] == sum(rep.ops.values()) == 23  # 17 ops, 3 HARD_SWISH -> 3 x (ADD, MUL, MUL)
    assert x["delegated_nodes"] == 22 and x["partitions"] == 1
    assert [(f["op"], f["dtypes"]) for f in x["fallback"]] == [("SOFTMAX", ["int8"])]
    fp32 = inspect_artifact(res.out_dir / "tiny_mnv3_fp32.tflite").xnnpack
    assert fp32["delegated_nodes"] == fp32["total_nodes"] == 17 and fp32["by_op"]["HARD_SWISH"]["delegated"] == 3


def test_sizes_and_gpu(phone_export):
    res = phone_export
    fp32 = inspect_artifact(res.out_dir / "tiny_mnv3_fp32.tflite")
    fp16 = inspect_artifact(res.out_dir / "tiny_mnv3_fp16.tflite")
    int8 = inspect_artifact(res.out_dir / "tiny_mnv3_int8.tflite", gpu=False)
    params = res.manifest.model["params"]
    # fp32: every folded weight as float32 (BatchNorm folded into convs, so a little under params * 4)
    assert 0.8 * params * 4 < fp32.size_by_type["float32"] <= params * 4
    assert fp16.size_by_type["float16"] == pytest.approx(fp32.size_by_type["float32"] / 2, rel=0.05)
    assert "float32" not in int8.size_by_type and int8.size_by_type["int8"] > 0.8 * params
    assert fp32.gpu["compatible"] and fp16.gpu["compatible"] and fp32.gpu["issues"] == []
    assert int8.gpu is None


def test_gpu_analysis_parsing():
    text = ("Subgraph#0 main(T#0) -> [T#5]\n  Op#0 CONV_2D(T#0, T#1, T#2) -> [T#3]\n"
            "  Op#1 CUSTOM(T#3) -> [T#5]\nGPU COMPATIBILITY WARNING: Not supported custom op MyOp\n\n"
            "GPU COMPATIBILITY WARNING: Subgraph#0 has GPU delegate compatibility issues at nodes 1 on TFLite "
            "runtime version 2.21.0\n")
    g = parse_gpu_analysis(text)
    assert not g["compatible"]
    assert g["issues"] == ["Op#1 CUSTOM: Not supported custom op MyOp",
                           "Subgraph#0 has GPU delegate compatibility issues at nodes 1 on TFLite runtime "
                           "version 2.21.0"]


def test_metadata_round_trip_through_inspect(phone_export):
    res = phone_export
    m = Manifest.load(res.out_dir)
    assert {rec.format for rec in m.artifacts} == {"tflite", "onnx"}
    for rec in m.artifacts:  # every artifact, .tflite and .onnx, describes itself
        meta = inspect_artifact(res.out_dir / rec.file, xnnpack=False, gpu=False).metadata
        assert meta["input"]["layout"] == "NHWC"
        assert meta["model"] == {"name": "tiny_mnv3", "version": "2.1"}
        assert meta["edgeconv_version"] == m.edgeconv_version
        assert meta["precision"] == rec.precision and meta["target"] == "cpu"
        assert meta["labels"] == LABELS
        assert meta["inputs"] == rec.inputs and meta["outputs"] == rec.outputs
        norm = meta["input"]["normalization"]
        assert {k: norm[k] for k in ("name", "scale", "mean", "std", "bgr")} == \
            {k: m.preprocessing[k] for k in ("name", "scale", "mean", "std", "bgr")}
        assert meta["input"]["range"] == [0.0, 255.0]  # raw pixels: the model rescales inside


def test_onnx(phone_export):
    res = phone_export
    rec = res.manifest.artifact("tiny_mnv3.onnx")
    rep = inspect_artifact(res.out_dir / rec.file)
    assert rep.format == "onnx" and rep.opset == 17
    assert rep.ops == rec.ops and rep.inputs == rec.inputs
    assert 0.8 * res.manifest.model["params"] * 4 < rep.size_by_type["float32"]
    assert rep.xnnpack is None and rep.gpu is None


def test_cli_inspect(phone_export):
    res = phone_export
    f = res.out_dir / "tiny_mnv3_int8.tflite"
    r = CliRunner().invoke(main, ["inspect", str(f), "--json"])
    assert r.exit_code == 0, r.output
    d = json.loads(r.output[r.output.index("{"):])
    assert d["inputs"] == res.manifest.artifact(f.name).inputs and d["metadata"]["labels"] == LABELS
    r = CliRunner().invoke(main, ["inspect", str(f)])
    assert r.exit_code == 0 and "XNNPACK: 22 of 23 nodes delegated in 1 partition(s)" in r.output
    r = CliRunner().invoke(main, ["inspect", str(res.out_dir / "labels.txt")])
    assert r.exit_code == 1 and "edgeconv inspects .tflite and .onnx files" in r.output
    r = CliRunner().invoke(main, ["inspect", "--help"])
    assert r.exit_code == 0 and "--json" in r.output


def test_bad_tflite_is_one_line_error(tmp_path):
    bad = tmp_path / "x.tflite"
    bad.write_bytes(b"\x00" * 64)
    r = CliRunner().invoke(main, ["inspect", str(bad)])
    assert r.exit_code == 1 and r.output.startswith("Error:") and len(r.output.strip().splitlines()) == 1
    _ = np  # noqa
