"""Issue #17 end to end: user models as they come, from the CLI and the Python API.

- a trained model whose h-swish is an unregistered custom Layer (and hard-sigmoid a plain function) in a separate
  file, with a Lambda layer: refused with the class named and the flag to pass; exported with --custom-objects and
  --unsafe-deserialization to fp32 / int8 TFLite and ONNX that match Keras; validated again from its folder;
- a transfer-learning model with an open input size exported at --input-size 96 and validated.
"""
from __future__ import annotations

import hashlib
import importlib.util
import json

import numpy as np
import pytest
from click.testing import CliRunner

import edgeconv
from edgeconv.cli import main
from edgeconv.errors import EdgeconvError
from edgeconv.pipeline.metadata import read_metadata
from helpers import USER_LAYERS

HSWISH_LAYERS = 3  # stem_hswish, b2_expand_hswish, b2_dw_hswish in helpers.build_tiny_mnv3


def run(*args):
    return CliRunner().invoke(main, [str(a) for a in args])


@pytest.fixture(scope="module")
def custom_model(trained_tiny, tmp_path_factory):
    """(custom_mnv3.keras, my_layers.py): the trained tiny MobileNetV3's weights in the "custom" variant (HSwish and
    hsigmoid from the user's module ``my_layers``, squeeze-excite multiply as a Lambda): same function."""
    import keras

    from helpers import build_tiny_mnv3

    src = tmp_path_factory.mktemp("code") / "my_layers.py"
    src.write_text(USER_LAYERS)
    spec = importlib.util.spec_from_file_location("my_layers", src)
    my_layers = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(my_layers)
    trained = keras.models.load_model(trained_tiny[0])
    model = build_tiny_mnv3(hswish="custom", custom=my_layers)
    model.set_weights(trained.get_weights())
    assert sum(isinstance(layer, my_layers.HSwish) for layer in model.layers) == HSWISH_LAYERS
    path = tmp_path_factory.mktemp("models") / "custom_mnv3.keras"
    model.save(path)
    return path, src


def test_custom_layers_and_lambda_from_the_cli(custom_model, digits_calibration_npy, tmp_path):
    path, src = custom_model
    cal, held = digits_calibration_npy
    out = tmp_path / "out"
    res = run("export", path, "--int8", "--onnx", "--out", out)
    assert res.exit_code == 1 and res.output.count("\n") == 1, res.output
    assert ("cannot load custom_mnv3.keras: it uses class HSwish (module my_layers) and function hsigmoid, which are "
            "not defined by Keras: pass --custom-objects FILE.py that defines them") in res.output
    res = run("export", path, "--int8", "--onnx", "--out", out, "--custom-objects", src)
    assert res.exit_code == 1 and "Lambda layer b1_se_mul holds Python code" in res.output, res.output
    assert "pass --unsafe-deserialization to allow it (it runs code from the model file" in res.output
    assert not out.exists() or not any(out.iterdir())

    res = run("export", path, "--int8", "--onnx", "--out", out, "--custom-objects", src, "--unsafe-deserialization",
              "--calibration", cal, "--data", held, "--samples", 100, "-q")
    assert res.exit_code == 0, res.output
    assert "warning: --unsafe-deserialization: loading custom_mnv3.keras ran Python code" in res.output
    folder = out / "custom_mnv3"
    report = json.loads((folder / "report.json").read_text())
    got = {a["key"]: a["comparison"]["outputs"][0] for a in report["artifacts"]}
    print("\nfigures:", {k: (v["max_abs"], v["top1_agreement"]) for k, v in got.items()})
    assert report["passed"] and got["fp32"]["max_abs"] <= 1e-5 and got["onnx"]["max_abs"] <= 1e-5
    assert got["int8"]["top1_agreement"] >= 0.97 and got["int8"]["sqnr_db"] >= 20
    m = json.loads((folder / "manifest.json").read_text())
    assert [(c["name"], c["sha256"]) for c in m["model"]["custom_objects"]] == [
        ("my_layers.py", hashlib.sha256(src.read_bytes()).hexdigest())]
    assert m["options"]["unsafe_deserialization"] is True
    # the hand-written h-swish became the runtimes' own op (FINDINGS): every custom layer, counted
    ops = {a["key"]: a["ops"] for a in m["artifacts"]}
    print("ops:", {k: {o: n for o, n in v.items() if "hard" in o.lower()} for k, v in ops.items()})
    assert ops["fp32"]["HARD_SWISH"] == HSWISH_LAYERS
    assert ops["onnx"]["HardSwish"] == HSWISH_LAYERS and ops["onnx"]["HardSigmoid"] == 1
    int8 = next(a for a in m["artifacts"] if a["key"] == "int8")  # int8: decomposed for XNNPACK
    assert "HARD_SWISH" not in int8["ops"] and int8["tflite_rewrites"]

    res = run("validate", folder, "--data", held, "--samples", 50, "--custom-objects", src,
              "--unsafe-deserialization")
    assert res.exit_code == 0 and "PASS: 3 of 3" in res.output, res.output
    # without the flags: the recorded custom objects are reused, the Lambda still needs the explicit opt-in
    res = run("validate", folder, "--data", held, "--samples", 50)
    assert res.exit_code == 1 and "pass --unsafe-deserialization" in res.output, res.output
    rep = edgeconv.validate(folder, data=held, samples=50, unsafe_deserialization=True, write=False)
    assert rep.passed
    src.rename(src.with_suffix(".moved"))
    try:
        with pytest.raises(EdgeconvError, match=r"class HSwish \(from my_layers.py\) and function hsigmoid.*"
                                                r"--custom-objects FILE.py.*my_layers.py is no longer at"):
            edgeconv.validate(folder, data=held, samples=50, unsafe_deserialization=True, write=False)
    finally:
        src.with_suffix(".moved").rename(src)


@pytest.fixture(scope="module")
def transfer_model(tmp_path_factory):
    """keras.applications MobileNetV3-Small on (None, None, 3), include_top=False, pooling="avg", plus a Dense head:
    the usual transfer-learning model, BatchNorm statistics estimated on digits so its output depends on its input."""
    import keras

    from helpers import digits_pixels
    from edgeconv.models.batchnorm import estimate_batchnorm_statistics

    keras.utils.set_random_seed(0)
    base = keras.applications.MobileNetV3Small(input_shape=(None, None, 3), include_top=False, weights=None,
                                               pooling="avg", alpha=0.75, minimalistic=True)
    inp = keras.Input((None, None, 3), name="image")
    out = keras.layers.Dense(10, activation="softmax", name="head")(base(inp))
    model = keras.Model(inp, out, name="transfer")
    (x, _), _ = digits_pixels(96)
    estimate_batchnorm_statistics(model, x[:64])
    assert model.predict(x[:32], verbose=0).std(axis=0).max() > 1e-2
    path = tmp_path_factory.mktemp("transfer") / "transfer.keras"
    model.save(path)
    return path


def test_open_input_size_model_exports_at_96_and_validates(transfer_model, tmp_path):
    res = run("export", transfer_model, "--out", tmp_path)
    assert res.exit_code == 2 and "input size is open (?x?x3): pass --input-size H or HxW" in res.output, res.output

    result = edgeconv.export(transfer_model, input_size=96, out_dir=tmp_path, quiet=True, validate=False)
    m = json.loads((result.out_dir / "manifest.json").read_text())
    assert m["model"]["input_shape"] == [96, 96, 3] and m["model"]["open_input_shape"] == [None, None, 3]
    assert m["options"]["input_size"] == [96, 96]
    assert m["preprocessing"]["name"] == "raw_0_255"  # the backbone's own Rescaling, found inside it
    assert m["artifacts"][0]["inputs"][0]["shape"] == [1, 96, 96, 3]
    meta = read_metadata(result.path("fp32"))
    assert meta["input"]["size"] == [96, 96] and meta["input"]["open_size"] is True
    import keras

    assert keras.models.load_model(result.out_dir / "transfer.keras").input_shape == (None, 96, 96, 3)  # reference

    res = run("validate", result.out_dir, "--samples", 32)
    assert res.exit_code == 0 and "PASS: 1 of 1" in res.output, res.output
    fp32 = json.loads((result.out_dir / "report.json").read_text())["artifacts"][0]["comparison"]["outputs"][0]
    print(f"\nfp32 at 96x96: max abs {fp32['max_abs']:.3g}, top-1 agreement {fp32['top1_agreement']:.2%}")
    assert fp32["max_abs"] <= 5e-5 and fp32["top1_agreement"] == 1.0
