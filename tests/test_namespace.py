"""One import name: the installed package claims only ``edgeconv``; the zoo and the data loaders live under it."""
from __future__ import annotations

import json
import re
import subprocess
import sys
import textwrap
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_library_never_imports_the_bare_top_level_folders():
    bare = re.compile(r"^\s*(import (models|calibration)\b|from (models|calibration)\b)", re.M)
    hits = [f"{p.relative_to(ROOT)}" for p in (ROOT / "edgeconv").rglob("*.py") if bare.search(p.read_text())]
    assert hits == []


def test_api_works_from_a_project_with_its_own_models_and_calibration_packages(tmp_path):
    """A user's ML project has its own ``models/`` (and often ``calibration/``): edgeconv must import neither."""
    for pkg in ("models", "calibration"):
        (tmp_path / pkg).mkdir()
        (tmp_path / pkg / "__init__.py").write_text(f"USER_{pkg.upper()} = True\n")
    script = textwrap.dedent("""
        import json, sys
        import models, calibration                     # the user's own packages
        import edgeconv
        from edgeconv import models as zoo, calibration as data
        res = edgeconv.export("lenet5", precisions=["fp32"], out_dir="out", validate=False, quiet=True)
        print(json.dumps({
            "user_models": getattr(sys.modules["models"], "USER_MODELS", False),
            "user_calibration": getattr(sys.modules["calibration"], "USER_CALIBRATION", False),
            "zoo_file": zoo.__file__, "data_file": data.__file__, "zoo_count": len(zoo.list_models()),
            "params": res.manifest.model["params"], "artifacts": [a.file for a in res.artifacts],
        }))
    """)
    out = subprocess.run([sys.executable, "-c", script], cwd=tmp_path, capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-2000:]
    got = json.loads(out.stdout.strip().splitlines()[-1])
    assert got["user_models"] is True and got["user_calibration"] is True
    assert Path(got["zoo_file"]).resolve().parent == ROOT / "models"
    assert Path(got["data_file"]).resolve().parent == ROOT / "calibration"
    assert got["zoo_count"] == 41 and got["params"] == 61_706  # LeNet-5's reference count
    assert got["artifacts"] == ["lenet5_fp32.tflite"]
    assert (tmp_path / "out" / "lenet5" / "manifest.json").exists()


def test_the_install_claims_no_models_or_calibration_name(tmp_path):
    code = ("import importlib.util, json; print(json.dumps([importlib.util.find_spec(n) is None "
            "for n in ('models', 'calibration')] + [importlib.util.find_spec('edgeconv.models') is not None]))")
    out = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, capture_output=True, text=True, check=True)
    assert json.loads(out.stdout) == [True, True, True]
