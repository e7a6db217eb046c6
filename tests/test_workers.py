"""Conversions in worker processes (edgeconv.pipeline.workers): the same bytes as the sequential path, and the
bound on how many run at once."""
import pytest

from edgeconv.pipeline import workers
from edgeconv.pipeline.export import export


def test_parallel_artifacts_are_byte_identical_to_sequential(trained_tiny, digits_calibration_npy, tmp_path, capsys):
    path, _ = trained_tiny
    cal, _ = digits_calibration_npy
    shas = {}
    for jobs in (1, 2):
        # fp32 + fp16 + int8 are one unit (made from one float model); dynamic converts apart
        res = export(str(path), precisions=["fp16", "int8", "dynamic"], out_dir=tmp_path / f"jobs{jobs}",
                     calibration=cal, calib_samples=50, validate=False, jobs=jobs)
        shas[jobs] = {a.file: a.sha256 for a in res.artifacts}, [a.to_dict() for a in res.artifacts]
    assert shas[1] == shas[2]  # every artifact's bytes and its whole manifest record
    assert len(shas[1][0]) == 4
    err = capsys.readouterr().err
    assert "in a worker process" in err  # jobs=2 really converted something elsewhere


def test_worker_count_is_bounded_by_cores_tasks_and_memory(monkeypatch, tmp_path):
    monkeypatch.setattr(workers, "cpu_count", lambda: 8)
    monkeypatch.setattr(workers, "available_memory", lambda: 64 * 2 ** 30)
    monkeypatch.setattr(workers.os, "getloadavg", lambda: (1.0, 1.0, 1.0))  # this export only
    assert workers.worker_count(4, None)[0] == 3  # 4 conversions: this process + 3 workers
    monkeypatch.setattr(workers.os, "getloadavg", lambda: (5.6, 1.0, 1.0))  # 4.6 cores busy with other work
    assert workers.free_cores() == 3 and workers.worker_count(4, None)[0] == 1  # this process keeps one core
    monkeypatch.setattr(workers.os, "getloadavg", lambda: (6.6, 1.0, 1.0))
    assert workers.free_cores() == 2 and workers.worker_count(4, None)[0] == 0
    assert workers.worker_count(4, 2)[0] == 1  # --jobs is the user's word, whatever the load
    monkeypatch.setattr(workers.os, "getloadavg", lambda: (12.0, 1.0, 1.0))
    assert workers.free_cores() == 1 and workers.worker_count(4, None) == (0, "4 conversion(s), 1 lane(s)")
    monkeypatch.setattr(workers.os, "getloadavg", lambda: (1.0, 1.0, 1.0))
    assert workers.worker_count(1, None)[0] == 0
    assert workers.worker_count(4, 1)[0] == 0  # --jobs 1: sequential
    assert workers.worker_count(4, 2)[0] == 1
    sm = tmp_path / "saved_model"
    sm.mkdir()
    (sm / "variables.data").write_bytes(b"\0" * 2 ** 20)
    monkeypatch.setattr(workers, "available_memory", lambda: workers.PARENT_RESERVE_BYTES + 2 * (
        workers.WORKER_BASE_BYTES + workers.WORKER_MODEL_FACTOR * 2 ** 20))
    n, why = workers.worker_count(4, None, sm)
    assert n == 2 and "memory" in why
