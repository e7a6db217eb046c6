"""edgeconv.sweep: the plan, the local pool's fault handling and memory admission, resume, Ctrl-C, the rows and
files, the command line. The pool's tests run stand-in cells (tests/sweep_cells.py: real worker processes, no
TensorFlow); real exports through the pool and through Ray are in test_sweep_models.py (slow)."""
from __future__ import annotations

import json
import os
import signal
from pathlib import Path

import pytest
from click.testing import CliRunner

from edgeconv.errors import UsageError
from edgeconv.sweep import Cell, SweepOptions, estimate_memory, run_sweep
from edgeconv.sweep.plan import parse_sizes

FAKE = "sweep_cells:fake_cell"


def cells(*names, params=1000, size=(32, 32)):
    return [Cell(n, ("fp32", "int8"), size, params=params) for n in names]


def test_plan_expands_patterns_sizes_and_commands():
    from edgeconv.sweep import expand_models, plan

    names = expand_models(["mobilenetv3_*", "lenet5", "mobilenetv3_small"])
    assert names == ["mobilenetv3_large", "mobilenetv3_small", "lenet5"]
    cs = plan(names, ["int8", "fp32"], parse_sizes("96,64x80"), narrow=True, samples=20)
    assert len(cs) == 6 and cs[0].model == "lenet5"  # lightest first
    assert {c.subdir for c in cs} == {"96x96", "64x80"} and all(c.precisions == ("fp32", "int8") for c in cs)
    big = next(c for c in cs if c.model == "mobilenetv3_large" and c.input_size == (96, 96))
    assert big.command() == ("edgeconv export mobilenetv3_large --int8 --input-size 96x96 --width alpha=0.75 "
                             "--samples 20 --calib-samples 200 --seed 0")
    assert big.folder(Path("o")) == Path("o/96x96/mobilenetv3_large")
    assert estimate_memory(big) > estimate_memory(cs[0])
    with pytest.raises(UsageError, match="no zoo model matches"):
        expand_models(["nosuch*"])
    with pytest.raises(UsageError, match="unknown model 'mobilenet_v9'"):
        expand_models(["mobilenet_v9"])
    with pytest.raises(UsageError, match="unknown precision"):
        plan(["lenet5"], ["int9"])


def test_faults_are_rows_and_the_others_finish(tmp_path):
    """A cell that fails, one that times out and a worker killed from outside: each recorded with its status, the
    two good cells published, no staging folder left, every row in sweep.json / .md / .csv."""
    killed = []

    def on_start(cell, pid):
        if cell.name == "victim":
            os.kill(pid, signal.SIGKILL)
            killed.append(pid)

    todo = cells("good1", "boom", "slow", "victim", "good2", "suicide")
    res = run_sweep(todo, SweepOptions(out_dir=tmp_path, jobs=3, timeout=8, target=FAKE), on_start=on_start)
    by = {r["cell"].split("@")[0]: r for r in res.rows if r["precision"] == "int8"}
    assert killed and len(res.rows) == 12
    assert by["good1"]["status"] == by["good2"]["status"] == "ok" and by["good1"]["verdict"] == "PASS"
    assert by["good1"]["file"] == "good1_int8.tflite" and by["good1"]["sqnr_db"] == 40.0
    assert (by["boom"]["status"], by["boom"]["step"]) == ("failed", "export")
    assert by["boom"]["error"] == "RuntimeError: boom cannot be converted"
    assert by["slow"]["status"] == "timeout" and by["slow"]["error"] == "timeout after 8 s"
    assert by["victim"]["status"] == "killed" and "SIGKILL" in by["victim"]["error"]
    assert by["suicide"]["status"] == "killed" and by["suicide"]["error"].endswith("suicide: about to be killed")
    assert not res.ok and res.summary_line() == "4 of 12 artifacts ok in 6 cells (2 failed, 2 timeout, 4 killed)"
    assert not list(tmp_path.glob(".edgeconv-partial-*"))  # the killed victim's staging folder is removed too
    assert sorted(p.name for p in tmp_path.iterdir()) == ["good1", "good2", "logs", "sweep.csv", "sweep.json",
                                                          "sweep.md"]
    saved = json.loads((tmp_path / "sweep.json").read_text())
    assert saved["rows"] == res.rows and len(saved["cells"]) == 6
    assert (tmp_path / "sweep.csv").read_text().count("\n") == 13
    assert "| good1 | 32x32 | - | int8 | ok | PASS |" in (tmp_path / "sweep.md").read_text()


def test_memory_budget_keeps_big_cells_apart(tmp_path, monkeypatch):
    """Two cells that do not fit the budget together never run at once; small ones run beside each other."""
    monkeypatch.setenv("SWEEP_FAKE_SECONDS", "1.5")
    big = cells("big1", "big2", params=40_000_000)
    small = cells("small1", "small2", params=1000)
    budget_gb = (estimate_memory(big[0]) + estimate_memory(small[0]) * 2.5) / 1e9
    running, peak = set(), []

    def on_start(cell, pid):
        running.add(cell.name)
        peak.append(set(running))

    def on_done(cell, res):
        running.discard(cell.name)

    res = run_sweep(small + big, SweepOptions(out_dir=tmp_path, jobs=3, memory_gb=budget_gb, target=FAKE),
                    on_start=on_start, on_done=on_done)
    assert res.ok
    assert not any({"big1", "big2"} <= s for s in peak)
    assert any({"small1", "small2"} <= s for s in peak)


def test_resume_redoes_only_what_is_missing(tmp_path):
    todo = cells("a", "b", "c")
    first = run_sweep(todo, SweepOptions(out_dir=tmp_path, jobs=2, target=FAKE))
    (tmp_path / "b" / "b_int8.tflite").write_bytes(b"changed")  # no longer what the manifest says
    started = []
    again = run_sweep(todo, SweepOptions(out_dir=tmp_path, jobs=2, resume=True, target=FAKE),
                      on_start=lambda c, pid: started.append(c.name))
    assert started == ["b"] and sorted(again.resumed) == ["a@32x32", "c@32x32"]
    strip = [{k: v for k, v in r.items() if k not in ("seconds", "peak_mb")} for r in first.rows]
    assert [{k: v for k, v in r.items() if k not in ("seconds", "peak_mb")} for r in again.rows] == strip
    # other options (another --samples) are other cells: nothing is reused
    started.clear()
    other = [Cell(c.model, c.precisions, c.input_size, samples=5, params=c.params) for c in todo]
    run_sweep(other, SweepOptions(out_dir=tmp_path, jobs=2, resume=True, target=FAKE),
              on_start=lambda c, pid: started.append(c.name))
    assert sorted(started) == ["a", "b", "c"]


def test_interrupt_stops_workers_and_keeps_finished_cells(tmp_path):
    """Ctrl-C while a cell runs: the finished cell's folder and the record stay, the running worker is stopped and
    its staging folder is gone."""
    pids = []

    def on_start(cell, pid):
        pids.append(pid)

    def on_done(cell, res):
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        run_sweep(cells("first", "slow"), SweepOptions(out_dir=tmp_path, jobs=2, target=FAKE), on_start=on_start,
                  on_done=on_done)
    assert (tmp_path / "first" / "manifest.json").exists()
    assert json.loads((tmp_path / "sweep.json").read_text())["rows"][0]["status"] == "ok"
    assert not list(tmp_path.glob(".edgeconv-partial-*")) and not (tmp_path / "slow").exists()
    for pid in pids:
        with pytest.raises(ProcessLookupError):
            os.kill(pid, 0)


def test_run_cell_records_the_failing_step(tmp_path):
    from edgeconv.sweep.cell import run_cell

    bad = tmp_path / "broken.keras"
    bad.write_bytes(b"not a zip")
    out = run_cell(Cell(str(bad), ("fp32",), (32, 32)), tmp_path / "out")
    assert (out["status"], out["step"]) == ("failed", "export")
    assert out["error"].startswith(f"cannot load {bad}: not a valid .keras file")
    assert not (tmp_path / "out" / "broken").exists() and not list((tmp_path / "out").glob(".edgeconv-partial-*"))


def test_cli_sweep_errors_are_one_line(tmp_path):
    from edgeconv.cli import main

    r = CliRunner().invoke(main, ["sweep", "lenet5", "--precisions", "fp32,int9", "--out", str(tmp_path)])
    assert r.exit_code == 2 and "unknown precision 'int9'" in r.output and "Traceback" not in r.output
    r = CliRunner().invoke(main, ["sweep", "nosuch*", "--out", str(tmp_path)])
    assert r.exit_code == 2 and r.output.strip().splitlines()[-1].startswith("Error: no zoo model matches")
    r = CliRunner().invoke(main, ["sweep", "--help"])
    assert r.exit_code == 0 and "--ray ADDRESS|auto" in r.output


def test_sigkill_while_the_oom_killer_count_rises_is_oom(tmp_path, monkeypatch):
    """A worker killed by SIGKILL is ``oom`` when the cgroup's oom_kill count went up meanwhile (read from
    memory.events / memory.oom_control: simulated here), ``killed`` otherwise."""
    import edgeconv.sweep.local as local

    assert local.oom_kills() is None or local.oom_kills() >= 0
    counts = iter([5, 6])
    monkeypatch.setattr(local, "oom_kills", lambda: next(counts))
    res = run_sweep(cells("suicide"), SweepOptions(out_dir=tmp_path, target=FAKE))
    assert {(r["status"], r["error"]) for r in res.rows} == {("oom", "killed by the kernel's out-of-memory killer")}
