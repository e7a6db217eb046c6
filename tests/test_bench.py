"""edgeconv.runtime.bench and `edgeconv bench`: one row per artifact, true sizes, positive latencies, speed-up vs Keras."""
from __future__ import annotations

import json

import numpy as np
import pytest
from click.testing import CliRunner

from edgeconv.options import ValidationOptions
from edgeconv.cli import main


@pytest.fixture(scope="module")
def exported(trained_tiny, digits_calibration_npy, tmp_path_factory):
    from edgeconv.pipeline.export import export

    path, _ = trained_tiny
    cal, val = digits_calibration_npy
    res = export(path, precisions=["int8", "onnx"], out_dir=tmp_path_factory.mktemp("bench"), calibration=cal,
                 calib_samples=50, validation=ValidationOptions(data=str(val), samples=60), quiet=True)
    return res


def test_bench_row_per_artifact_with_true_sizes_and_latency(exported):
    from edgeconv.runtime.bench import bench

    rep = bench(exported.out_dir, threads=1, runs=5, warmup=1)
    files = [a.file for a in exported.artifacts]
    assert [r.file for r in rep.rows if r.format != "keras"] == files
    ref = rep.reference
    assert ref is not None and ref.runtime == "tf.function" and ref.median_ms > 0 and ref.speedup == 1.0
    for r in rep.rows:
        assert r.bytes == (exported.out_dir / r.file).stat().st_size > 0
        assert r.median_ms > 0 and r.p90_ms >= r.median_ms and r.speedup > 0
        assert r.error is None
    by = {r.file: r for r in rep.rows}
    int8 = by["tiny_mnv3_int8.tflite"]
    assert int8.runtime == "LiteRT+XNNPACK" and int8.precision == "int8"
    assert int8.status == exported.validation.artifact(int8.file).verdict == "PASS"  # trained: judged
    assert 0.9 <= int8.top1_agreement <= 1.0 and int8.accuracy is not None and np.isfinite(int8.sqnr_db)
    assert by["tiny_mnv3.onnx"].runtime == "onnxruntime" and by["tiny_mnv3.onnx"].sqnr_db > 60
    assert "report.json" in rep.quality_source
    d = json.loads(json.dumps(rep.to_dict()))
    assert d["threads"] == 1 and len(d["rows"]) == len(files) + 1 and d["rows"][1]["mb"] > 0


def test_bench_without_report_validates_and_can_skip_keras(exported, tmp_path):
    import shutil

    from edgeconv.runtime.bench import bench

    folder = tmp_path / "copy"
    shutil.copytree(exported.out_dir, folder)
    (folder / "report.json").unlink()
    rep = bench(folder, runs=2, warmup=0, keras=False, samples=20)
    assert rep.reference is None and all(r.speedup is None for r in rep.rows)
    assert "validation run by bench" in rep.quality_source
    assert {r.status for r in rep.rows} <= {"PASS", "FAIL", "NOT JUDGED"}
    assert not (folder / "report.json").exists()  # bench writes nothing


def test_bench_rejects_bad_input(tmp_path):
    from edgeconv.runtime.bench import bench
    from edgeconv.errors import EdgeconvError, UsageError

    with pytest.raises(EdgeconvError, match="manifest"):
        bench(tmp_path)
    with pytest.raises(UsageError):
        bench(tmp_path, threads=0)


def test_cli_bench_json_and_table(exported):
    r = CliRunner().invoke(main, ["bench", str(exported.out_dir), "--runs", "3", "--warmup", "1", "--json"])
    assert r.exit_code == 0, r.output
    d = json.loads(r.output)
    assert [row["file"] for row in d["rows"]][1:] == [a.file for a in exported.artifacts]
    assert all(row["median_ms"] > 0 for row in d["rows"])
    r = CliRunner().invoke(main, ["bench", str(exported.out_dir), "--runs", "2", "--no-keras", "--threads", "2"])
    assert r.exit_code == 0, r.output
    assert "tiny_mnv3_int8.tflite" in r.output and "LiteRT+XNNPACK" in r.output and "median ms" in r.output


def test_cli_bench_errors():
    r = CliRunner().invoke(main, ["bench", "/nonexistent/folder"])
    assert r.exit_code == 1 and "Error:" in r.output
    assert CliRunner().invoke(main, ["bench", "--help"]).exit_code == 0
