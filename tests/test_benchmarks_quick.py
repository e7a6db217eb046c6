"""The benchmark scripts' --quick modes on one tiny model, so they cannot rot. Full runs are not part of pytest
(benchmarks/RESULTS.md says how to run them)."""
from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

# Each benchmark script's --quick mode: minutes of exports in all, so they run with `pytest -m slow` (and the
# scripts themselves in benchmarks/), not in the default suite (under ~4 minutes on 2 cores).
pytestmark = pytest.mark.slow

BENCH = Path(__file__).resolve().parent.parent / "benchmarks"
if str(BENCH) not in sys.path:
    sys.path.insert(0, str(BENCH))  # the scripts import their sibling ``common``


def _script(name: str):
    """Load benchmarks/<name>.py by path under a unique module name: plain ``import zoo`` would find tests/zoo/."""
    import importlib.util

    spec = importlib.util.spec_from_file_location(f"edgeconv_benchmarks_{name}", BENCH / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def dirs(tmp_path_factory):
    root = tmp_path_factory.mktemp("benchq")
    return {"cache": root / "cache", "out": root / "out", "work": root / "work"}


def _written(out: Path, stem: str) -> dict:
    d = json.loads((out / f"{stem}.json").read_text())
    assert (out / f"{stem}.md").read_text().startswith("### ")
    assert d["machine"]["cores"] >= 1 and d["machine"]["versions"]["edgeconv"] and d["command"].startswith("python3")
    return d


def test_fixtures_quick_trains_once_then_uses_cache(dirs):
    fixtures = _script("fixtures")

    args = ["--quick", "--cache", str(dirs["cache"]), "--out", str(dirs["out"])]
    res = fixtures.main(args)
    (row,) = res["rows"]
    name, _, _, params, epochs, secs, acc, source = row
    assert name == "mobilenet_v1" and params > 0 and epochs == 1 and secs > 0 and 0 <= acc <= 100
    assert source == "trained now" and Path(res["fixtures"][0]["weights"]).stat().st_size > 0
    assert fixtures.main(args)["rows"][0][-1] == "cache"
    assert _written(dirs["out"], "table1_fixtures_quick")["rows"][0][0] == "mobilenet_v1"


def test_quant_quality_quick_compares_edgeconv_with_peers(dirs):
    quant_quality = _script("quant_quality")

    res = quant_quality.main(["--quick", "--cache", str(dirs["cache"]), "--out", str(dirs["out"]),
                              "--work", str(dirs["work"] / "q")])
    rows = {r[1]: r for r in res["rows"]}
    for variant in ("edgeconv int8", "edgeconv ONNX fp32", "TFLiteConverter int8 recipe (TF docs)",
                    "onnxruntime quantize_static defaults"):
        _, _, kb, acc, drop, agree, _, logits, _, _ = rows[variant]
        assert kb > 0 and 0 <= acc <= 100 and 0 <= agree <= 100 and -100 <= drop <= 100
        int8_tflite = variant in ("edgeconv int8", "TFLiteConverter int8 recipe (TF docs)")
        assert (10 < logits < 80) if int8_tflite else logits is None, (variant, logits)
    ref_acc = rows["Keras float (reference)"][3]
    assert rows["edgeconv int8"][4] == pytest.approx(ref_acc - rows["edgeconv int8"][3], abs=0.02)
    assert rows["edgeconv ONNX fp32"][5] == 100.0  # float ONNX agrees with Keras on every digit
    tfdocs = dirs["work"] / "q" / "mobilenet_v1" / "mobilenet_v1_tfdocs_int8.tflite"
    assert rows["TFLiteConverter int8 recipe (TF docs)"][2] == round(tfdocs.stat().st_size / 1e3, 1)
    _written(dirs["out"], "table2_quant_quality_quick")


def test_quant_quality_int8_only_quick(dirs):
    """Table 2b's quick mode: every int8 quantizer judged on half B, and a fallback that stays within its budget."""
    quant_quality = _script("quant_quality")

    res = quant_quality.main(["--quick", "--int8-only", "--fallback-sqnr", "99", "--cache", str(dirs["cache"]),
                              "--out", str(dirs["out"]), "--work", str(dirs["work"] / "q8")])
    rows = {r[1].split(" (")[0].split(",")[0]: r for r in res["rows"]}
    fp32_kb = rows["fp32 TFLite"][2]
    for variant in ("TFLiteConverter int8 recipe", "edgeconv int8", "onnxruntime quantize_static defaults"):
        _, _, kb, acc, drop, agree, sqnr, logits, _, _ = rows[variant]
        assert 0 < kb < fp32_kb and 0 <= acc <= 100 and 0 <= agree <= 100 and sqnr is not None
        assert (logits is None) == variant.startswith("onnxruntime")
    tflite_int8 = [r for r in res["rows"] if r[1].startswith(("TFLiteConverter", "edgeconv int8", "litert"))
                   and not str(r[-1]).startswith("ERROR")]  # litert-quantizer: only with the [bench] extra
    assert len(tflite_int8) >= 5  # recipe, default, cle, tuned, fallback (+ litert-quantizer)
    for r in tflite_int8:
        assert 10 < r[7] < 80, r  # int8 logits of a trained model: neither broken nor float
    fb = rows["edgeconv int8 --fallback auto"]
    assert fb[2] <= 0.5 * fp32_kb + 0.1 and "not reached" in fb[1]  # 99 dB: unreachable, the budget holds
    _written(dirs["out"], "table2b_int8_quantizers_quick")


def test_export_time_quick_ratio(dirs):
    export_time = _script("export_time")

    res = export_time.main(["--quick", "--out", str(dirs["out"])])
    tutorial, edgeconv = res["rows"]
    assert tutorial[-1] == "-" and edgeconv[-1] == "-", res["rows"]  # no errors
    raw = res["raw"][0]
    assert tutorial[2] > 0 and edgeconv[2] > 0 and edgeconv[4] > 0
    assert edgeconv[3] == pytest.approx(raw["edgeconv"]["seconds"] / raw["tutorial"]["seconds"], abs=0.01)
    assert set(raw["tutorial"]["files"]) == {"model_fp32.tflite", "model_fp16.tflite", "model_int8.tflite",
                                             "model.onnx"}
    assert {Path(f).suffix for f in raw["edgeconv"]["files"]} == {".tflite", ".onnx"}
    assert len(raw["edgeconv"]["files"]) == 4
    assert {"trace", "fp32", "fp16", "int8", "onnx", "convert"} <= set(raw["edgeconv"]["steps"])
    _written(dirs["out"], "table3_export_time_quick")


def test_latency_quick_row_per_artifact(dirs):
    latency = _script("latency")

    work = dirs["work"] / "lat"
    res = latency.main(["--quick", "--out", str(dirs["out"]), "--work", str(work)])
    files = [r[1] for r in res["rows"]]
    assert files == ["mobilenet_v1.keras", "mobilenet_v1_fp32.tflite", "mobilenet_v1_int8.tflite",
                     "mobilenet_v1.onnx"]
    for r in res["rows"]:
        assert r[4] == round((work / "mobilenet_v1" / r[1]).stat().st_size / 1e6, 3)
        assert r[6] > 0 and r[7] >= r[6] and r[8] > 0 and r[9] > 0 and r[11] > 0
    statuses = {r[1]: r[5] for r in res["rows"]}
    assert statuses["mobilenet_v1_fp32.tflite"] == "PASS"
    assert statuses["mobilenet_v1_int8.tflite"] == "NOT JUDGED"  # random weights
    assert res["figure"].stat().st_size > 0
    _written(dirs["out"], "table4_latency_quick")


def test_zoo_quick_matrix(dirs):
    zoo = _script("zoo")

    res = zoo.main(["--quick", "--out", str(dirs["out"])])
    (row,) = res["rows"]
    assert res["keys"] == ["fp32", "int8"]
    assert row[0] == "mobilenet_v1" and row[4:6] == ["PASS", "NOT JUDGED"] and row[6] == "ok" and row[3] > 0
    _written(dirs["out"], "table5_zoo_quick")


def test_onnx_int8_speed_quick_compares_recipes(dirs):
    speed = _script("onnx_int8_speed")

    res = speed.main(["--quick", "--out", str(dirs["out"])])
    rows = {r[1]: r for r in res["rows"]}
    assert set(rows) == {"fp32 (edgeconv convert_onnx)", *speed.RECIPES}
    assert rows["fp32 (edgeconv convert_onnx)"][4] == 1.0
    now = rows["edgeconv now"]
    assert now[2] > 0 and now[4] > 0 and now[5] > 0
    assert now[11] == "54/54"  # every Conv integer
    cov = res["raw"]["mobilenetv3_small"]["recipes"]["edgeconv now"]["coverage"]
    assert cov["float"] == {"Softmax": 1} and now[12] == 1  # only the output softmax stays float, on purpose
    assert rows["edgeconv before = ORT QDQ S8S8"][12] > 1  # the old recipe left float ops on x86
    _written(dirs["out"], "table6_onnx_int8_quick")
