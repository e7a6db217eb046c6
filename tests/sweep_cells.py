"""Stand-in cell targets for the sweep scheduler's tests (run in spawned worker processes, so importable by name:
``sweep_cells:fake_cell``). They publish a small export-shaped folder (staged, then renamed, manifest last) or fail
the ways real cells fail, in well under a second and without TensorFlow."""
from __future__ import annotations

import hashlib
import json
import os
import signal
import time
from pathlib import Path

from edgeconv.sweep.cell import outcome


def _publish(cell, out_root: Path) -> None:
    folder = cell.folder(out_root)
    folder.parent.mkdir(parents=True, exist_ok=True)
    stage = folder.parent / f".edgeconv-partial-{cell.name}"
    stage.mkdir(exist_ok=True)
    files = {f"{cell.name}.keras": b"reference " + cell.key.encode()}
    arts = []
    for p in cell.precisions:
        data = f"{cell.key} {p}".encode() * 10
        files[f"{cell.name}_{p}.tflite"] = data
        arts.append({"key": p, "file": f"{cell.name}_{p}.tflite", "bytes": len(data),
                     "sha256": hashlib.sha256(data).hexdigest()})
    ref = f"{cell.name}.keras"
    manifest = {"command": cell.command(), "model": {"input_shape": [1, 32, 32, 3]}, "artifacts": arts,
                "reference": {"file": ref, "sha256": hashlib.sha256(files[ref]).hexdigest()}}
    report = {"artifacts": [{"file": a["file"], "verdict": "PASS", "reasons": [],
                             "comparison": {"outputs": [{"max_abs": 0.001, "cosine": 0.999, "sqnr_db": 40.0,
                                                         "top1_agreement": 1.0}]}} for a in arts]}
    files["report.json"] = json.dumps(report).encode()
    files["manifest.json"] = json.dumps(manifest).encode()
    for name, data in files.items():
        (stage / name).write_bytes(data)
    folder.mkdir(exist_ok=True)
    for name in files:  # manifest last, as edgeconv.pipeline.export.publish does
        os.replace(stage / name, folder / name)
    stage.rmdir()


def fake_cell(cell, out_root):
    """By model name: ``boom*`` raises (as a failing step is recorded by run_cell), ``slow*`` sleeps 120 s while
    holding a staging folder (times out / is interrupted), ``victim*`` waits to be killed, ``suicide*`` kills
    its own process, ``parent*`` kills its parent process (a Ray worker); anything else publishes at once."""
    t0 = time.perf_counter()
    name = cell.name
    if name.startswith("boom"):
        try:
            raise RuntimeError(f"{name} cannot be converted")
        except RuntimeError as e:
            return outcome(cell, "failed", "export", f"RuntimeError: {e}", time.perf_counter() - t0)
    if name.startswith(("slow", "victim")):
        stage = Path(out_root) / f".edgeconv-partial-{name}"
        stage.mkdir(parents=True, exist_ok=True)
        try:
            time.sleep(120)
        finally:
            if name.startswith("slow"):  # an export's finally removes its staging folder; a SIGKILL skips it
                stage.rmdir()
    if name.startswith("suicide"):
        print("suicide: about to be killed", flush=True)
        os.kill(os.getpid(), signal.SIGKILL)
    if name.startswith("parent"):
        os.kill(os.getppid(), signal.SIGKILL)
        time.sleep(60)
    time.sleep(float(os.environ.get("SWEEP_FAKE_SECONDS", "0.3")))
    _publish(cell, Path(out_root))
    return outcome(cell, "ok", None, None, time.perf_counter() - t0, peak_mb=1.0)
