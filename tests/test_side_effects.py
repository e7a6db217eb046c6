"""A library call has no global side effect on its caller: random generators, working directory, stdout/stderr."""
from __future__ import annotations

import os
import random
import sys

import numpy as np


def test_export_leaves_the_callers_process_alone(trained_tiny, digits_calibration_npy, tmp_path, monkeypatch):
    import keras  # imported before the snapshot: importing keras itself draws from Python's random

    import edgeconv.console
    from edgeconv import export

    def no_redirect(*a, **k):
        raise AssertionError("library code redirected the process's stdout/stderr")

    monkeypatch.setattr(edgeconv.console, "quiet_native", no_redirect)
    path, _ = trained_tiny
    cal, _ = digits_calibration_npy
    random.seed(123)
    np.random.seed(123)
    keras.utils.set_random_seed(123)
    state = (random.getstate(), np.random.get_state()[1].copy())
    cwd, out, err = os.getcwd(), sys.stdout, sys.stderr
    fd1 = os.fstat(1).st_ino
    res = export(str(path), precisions=["int8", "onnx_int8"], out_dir=tmp_path, calibration=cal, calib_samples=20,
                 validate=False, quiet=True, seed=7)
    assert res.manifest.options["seed"] == 7
    assert random.getstate() == state[0] and np.array_equal(np.random.get_state()[1], state[1])
    assert os.getcwd() == cwd and sys.stdout is out and sys.stderr is err and os.fstat(1).st_ino == fd1
    assert res.manifest.command.startswith("edgeconv.export(")  # a library call records itself, not sys.argv
    assert sorted(os.listdir(tmp_path)) == ["tiny_mnv3"]  # nothing else written, no stray temp files
    for f in (tmp_path / "tiny_mnv3").iterdir():
        assert f.stat().st_mode & 0o777 == 0o644, f  # readable by the team sharing the folder


def test_zoo_export_is_reproducible_without_reseeding_the_caller(tmp_path):
    """Random zoo weights come from the export's own seed: same bytes whatever the caller's RNG state."""
    from edgeconv import export

    random.seed(1)
    a = export("lenet5", out_dir=tmp_path / "a", validate=False, quiet=True)
    random.seed(999)
    b = export("lenet5", out_dir=tmp_path / "b", validate=False, quiet=True)
    assert a.artifacts[0].sha256 == b.artifacts[0].sha256
