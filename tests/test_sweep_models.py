"""edgeconv.sweep with real exports, on the local pool and on a local Ray cluster (2 CPUs): the same rows and
byte-identical artifacts; faults on Ray recorded like on the local pool; --resume on real folders. Slow (two real
sweeps and a Ray start-up, ~2-3 min on 2 cores): ``pytest -m slow tests/test_sweep_models.py``. Needs Ray
(``pip install 'edgeconv[ray]'``); the Ray tests are skipped without it."""
from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import pytest

from edgeconv.sweep import TIMING, Cell, SweepOptions, expand_models, plan, run_sweep

pytestmark = pytest.mark.slow


def _strip(rows):
    return [{k: v for k, v in r.items() if k not in TIMING} for r in rows]


@pytest.fixture(scope="module")
def matrix(tmp_path_factory):
    """Two tiny zoo models at 32x32 (LeNet-5; MobileNetV3-Small at its narrow width), fp32 + int8, and a broken
    model file (a failing cell)."""
    bad = tmp_path_factory.mktemp("bad") / "broken.keras"
    bad.write_bytes(b"not a zip")
    return plan(expand_models(["lenet5", "mobilenetv3_small", str(bad)]), ["fp32", "int8"], [(32, 32)],
                narrow=True, samples=24, calib_samples=24)


@pytest.fixture(scope="module")
def local_run(matrix, tmp_path_factory):
    out = tmp_path_factory.mktemp("local")
    return run_sweep(matrix, SweepOptions(out_dir=out, jobs=2, timeout=900))


@pytest.fixture(scope="module")
def ray_cluster():
    ray = pytest.importorskip("ray")
    # Ray's workers import the stand-in cells of tests/sweep_cells.py by name, as the local pool's workers do
    path = os.pathsep.join(p for p in (str(Path(__file__).parent), os.environ.get("PYTHONPATH")) if p)
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False,
             runtime_env={"env_vars": {"TF_CPP_MIN_LOG_LEVEL": "2", "PYTHONPATH": path}})
    yield ray
    ray.shutdown()


def test_local_rows_are_real(local_run):
    rows = {(r["model"], r["precision"]): r for r in local_run.rows}
    assert len(rows) == 6
    for m in ("lenet5", "mobilenetv3_small"):
        fp32, int8 = rows[(m, "fp32")], rows[(m, "int8")]
        assert fp32["status"] == "ok" and fp32["verdict"] == "PASS" and fp32["max_abs"] < 1e-4
        assert int8["status"] == "ok" and int8["verdict"] == "NOT JUDGED" and int8["mb"] < 0.5 * fp32["mb"]
        assert fp32["input"] == "32x32" and fp32["weights"] == "random" and fp32["seconds"] > 0
    assert rows[("lenet5", "int8")]["sqnr_db"] > 25  # a shallow random net quantizes well; deep ones do not
    broken = rows[("broken", "int8")]
    assert (broken["status"], broken["step"]) == ("failed", "export") and "not a valid .keras file" in broken["error"]


def test_ray_gives_the_same_rows_and_bytes(matrix, local_run, ray_cluster, tmp_path):
    res = run_sweep(matrix, SweepOptions(out_dir=tmp_path, ray="auto", timeout=900))
    assert res.backend.startswith("ray")
    assert _strip(res.rows) == _strip(local_run.rows)
    for m in ("lenet5", "mobilenetv3_small"):
        manifest = json.loads((tmp_path / m / "manifest.json").read_text())
        files = [manifest["reference"]["file"], "manifest.json"] + [a["file"] for a in manifest["artifacts"]]
        assert len(files) == 4
        for f in files:
            assert (tmp_path / m / f).read_bytes() == (local_run.out_dir / m / f).read_bytes(), f
    assert not list(tmp_path.glob(".edgeconv-partial-*"))


def test_ray_faults_are_rows(ray_cluster, tmp_path):
    """On Ray: a failing cell, a timing-out cell, a cell whose worker process dies and a cell whose Ray worker
    dies (WorkerCrashedError): each recorded, the good cell published."""
    cells = [Cell(n, ("fp32",), (32, 32), params=1000) for n in ("good", "boom", "slow", "suicide", "parent")]
    res = run_sweep(cells, SweepOptions(out_dir=tmp_path, ray="auto", timeout=20, target="sweep_cells:fake_cell"))
    status = {r["model"]: (r["status"], r["step"], r["error"]) for r in res.rows}
    assert status["good"] == ("ok", None, None) and (tmp_path / "good" / "manifest.json").exists()
    assert status["boom"][:2] == ("failed", "export")
    assert status["slow"] == ("timeout", None, "timeout after 20 s")
    assert status["suicide"][0] == "killed" and "SIGKILL" in status["suicide"][2]
    assert status["parent"][0] == "killed" and "WorkerCrashedError" in status["parent"][2]


def test_resume_on_real_folders(matrix, local_run, tmp_path):
    out = tmp_path / "out"
    shutil.copytree(local_run.out_dir, out)
    (out / "lenet5" / "lenet5_int8.tflite").unlink()
    started = []
    res = run_sweep(matrix, SweepOptions(out_dir=out, jobs=2, resume=True), on_start=lambda c, pid: started.append(c))
    # the incomplete folder and the failed cell run again; the complete one is kept as it was
    assert sorted(c.name for c in started) == ["broken", "lenet5"]
    assert res.resumed == ["mobilenetv3_small@32x32"]
    assert _strip(res.rows) == _strip(local_run.rows)
    assert (out / "lenet5" / "lenet5_int8.tflite").read_bytes() == \
        (local_run.out_dir / "lenet5" / "lenet5_int8.tflite").read_bytes()


def test_sharded_validation_on_ray_equals_single_process(local_run, ray_cluster):
    from edgeconv.verify.validate import validate

    folder = local_run.out_dir / "mobilenetv3_small"
    one = validate(folder, samples=30, write=False).to_dict()
    two = validate(folder, samples=30, write=False, jobs=2, ray="auto").to_dict()
    for rep in (one, two):
        for a in rep["artifacts"]:
            a.pop("seconds")
    assert two == one and one["samples"] == 30
