"""Models with several outputs: named and matched by name in every format, each judged by its kind's rule."""
from __future__ import annotations

import json

import numpy as np
import pytest

from edgeconv.errors import UsageError


def _three_outputs():
    """Three outputs whose names sort differently from their order; two have the same shape, so only names (not
    shapes) can tell them apart."""
    import keras

    keras.utils.set_random_seed(3)
    inp = keras.Input((16, 16, 3), name="image")
    x = keras.layers.Conv2D(8, 3, activation="relu", name="conv")(inp)
    x = keras.layers.GlobalAveragePooling2D(name="pool")(x)
    outs = [keras.layers.Dense(3, activation="softmax", name="zeta")(x), keras.layers.Dense(4, name="alpha")(x),
            keras.layers.Dense(4, name="mid")(x)]
    return keras.Model(inp, outs, name="three")


def test_outputs_map_by_name_in_tflite(tmp_path):
    """(ONNX: tests the two-head export below, asking for its outputs in reversed order.)"""
    from edgeconv.pipeline.trace import trace
    from edgeconv.runtime.runners import KerasRunner, LiteRTRunner
    from edgeconv.tflite.convert import convert_tflite

    model = _three_outputs()
    names = ["zeta", "alpha", "mid"]
    x = np.random.default_rng(0).uniform(-1, 1, (8, 16, 16, 3)).astype(np.float32)
    ref = KerasRunner(model).run(x)
    assert [o.name for o in KerasRunner(model).outputs] == names
    tfl = convert_tflite(trace(model, tmp_path), "fp32")
    # the converter orders the file's outputs its own way: the mapping below is not the identity
    assert LiteRTRunner(tfl).file_output_names != names and sorted(LiteRTRunner(tfl).file_output_names) == sorted(names)
    for want in (names, names[::-1]):
        runner = LiteRTRunner(tfl, output_names=want)
        assert [o.name for o in runner.outputs] == want
        for name, y in zip(want, runner.run(x)):
            assert np.abs(y - ref[names.index(name)]).max() < 1e-5, name


def test_output_kinds_inferred_declared_and_checked():
    from edgeconv.options import ExportOptions
    from edgeconv.verify.kinds import infer_outputs, parse_output_kinds

    model = _three_outputs()
    kinds = [(o.name, o.kind, o.source) for o in infer_outputs(model)]
    assert kinds == [("zeta", "scores", "softmax"), ("alpha", "regression", "not a softmax"),
                     ("mid", "regression", "not a softmax")]
    kinds = {o.name: o.kind for o in infer_outputs(model, {"mid": "landmarks", "alpha": "scores"})}
    assert kinds == {"zeta": "scores", "alpha": "scores", "mid": "landmarks"}
    assert ExportOptions(output_kinds=["mid=embedding"]).output_kinds == {"mid": "embedding"}
    with pytest.raises(UsageError, match="no output of that name; its outputs are zeta, alpha, mid"):
        infer_outputs(model, {"boxes": "regression"})
    with pytest.raises(UsageError, match="the kind must be one of scores, regression, landmarks, embedding"):
        parse_output_kinds({"mid": "boxes"})
    with pytest.raises(UsageError, match="NAME=KIND"):
        ExportOptions(output_kinds=["mid"]).check()


def test_two_heads_export_validate_and_metadata(two_head, digits_calibration_npy, tmp_path):
    """The trained digits model with a class head (``digit``) and a regression head (``blob``): every output named
    and judged by its own rule; int8's class head agrees with Keras, the regression head keeps its SQNR."""
    import keras

    import edgeconv
    from edgeconv.runtime.runners import KerasRunner, LiteRTRunner, OnnxRunner
    from edgeconv.tflite.android_metadata import read_metadata

    model_file, info = two_head
    assert info["heldout_accuracy"] >= 0.97 and info["blob_mae"] < 0.5 * info["blob_std"]  # both heads trained
    cal, val = digits_calibration_npy
    labels = [f"digit {i}" for i in range(10)]
    res = edgeconv.export(model_file, precisions=["int8", "onnx"], calibration=cal, calib_samples=100,
                          out_dir=tmp_path, quiet=True, class_labels=labels,
                          validation=edgeconv.ValidationOptions(data=val, samples=200))
    m = res.manifest
    assert m.model["classes"] == 10
    assert [(o["name"], o["kind"], o["kind_source"]) for o in m.model["outputs"]] == [
        ("digit", "scores", "softmax"), ("blob", "regression", "not a softmax")]
    rep = res.validation
    assert rep.passed, rep.summary_line()
    for a in rep.artifacts:
        digit, blob = a.comparison.outputs
        assert (digit.name, digit.kind, blob.name, blob.kind) == ("digit", "scores", "blob", "regression")
        assert digit.rule.startswith("class scores (a softmax)") and blob.rule.startswith("regression (not a softmax")
        assert blob.top1_agreement is None and "top1" not in {c.name for c in blob.checks}
        assert digit.accuracy is not None and blob.accuracy is None  # labels judge the class head only
    int8 = rep.artifact("two_head_int8.tflite").comparison.outputs
    assert int8[0].top1_agreement >= 0.97
    assert {c.name for c in int8[1].checks} == {"sqnr", "cosine", "rel_error"}
    assert int8[1].sqnr_db >= 25 and int8[1].cosine >= 0.99 and int8[1].rel_error < 0.1
    assert all(o.sqnr_db > 100 for o in rep.artifact("two_head.onnx").comparison.outputs)
    onnx_file, x = res.out_dir / "two_head.onnx", np.load(val)["x"][:4].astype(np.float32)
    blob, digit = OnnxRunner(onnx_file, output_names=["blob", "digit"]).run(x)  # by name, not position
    ref_digit, ref_blob = KerasRunner(keras.saving.load_model(model_file)).run(x)
    assert np.abs(blob - ref_blob).max() < 1e-4 and np.abs(digit - ref_digit).max() < 1e-4
    md = (res.out_dir / "report.md").read_text()
    assert "output `blob` (4,): regression (not a softmax" in md and "output `digit` (10,): class scores" in md
    report = json.loads((res.out_dir / "report.json").read_text())
    assert [o["kind"] for o in report["artifacts"][0]["comparison"]["outputs"]] == ["scores", "regression"]
    # standard TFLITE_METADATA: one entry per output tensor, in the file's order, named; labels on the class head
    data = (res.out_dir / "two_head_int8.tflite").read_bytes()
    tm = read_metadata(data)
    file_order = LiteRTRunner(data).file_output_names
    assert [o["name"] for o in tm["outputs"]] == file_order and sorted(file_order) == ["blob", "digit"]
    by_name = {o["name"]: o for o in tm["outputs"]}
    assert by_name["digit"]["labels"] == labels and not by_name["blob"]["associated_files"]
    assert "Regression values (4 values)" in by_name["blob"]["description"]
    # bench and inspect show every output
    from edgeconv.inspect import inspect_artifact
    from edgeconv.runtime.bench import bench, table_rows

    b = bench(res.out_dir, runs=2, warmup=0, keras=False)
    row = b.row("two_head_int8.tflite")
    assert [o["name"] for o in row.outputs] == ["digit", "blob"] and row.sqnr_output == "blob"
    assert row.sqnr_db == min(o["sqnr_db"] for o in row.outputs) and row.top1_agreement == int8[0].top1_agreement
    assert any(r[0] == "two_head_int8.tflite" and r[6].endswith("(blob)") for r in table_rows(b))
    lines = inspect_artifact(res.out_dir / "two_head_int8.tflite", xnnpack=False, gpu=False).summary_lines()
    assert any("2 outputs: " in ln and "digit (Probabilities of the 10 classes, 10 labels)" in ln
               and "blob (Regression values (4 values))" in ln for ln in lines)


def test_cli_output_kind_is_checked_before_any_work(tmp_path):
    from click.testing import CliRunner

    from edgeconv.cli import main

    res = CliRunner().invoke(main, ["export", str(tmp_path / "onet.keras"), "--output-kind", "box=boxes",
                                    "--out", str(tmp_path)])
    assert res.exit_code == 2 and "the kind must be one of scores, regression, landmarks, embedding" in res.output
    assert "Traceback" not in res.output and len(res.output.strip().splitlines()) == 1
