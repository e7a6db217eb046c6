"""Table 7: models with several heads -- MTCNN's ONet (box 4, landmarks 10, face 2) and the two-head digits model.

ONet is rebuilt as a functional Keras model (48x48x3, PReLU, three heads named ``box``, ``landmarks``, ``face``)
with the weights the ``mtcnn`` package ships (``pip install mtcnn``; only its weights file is read, checked against
the package's own ONet), then exported with ``--all`` from the CLI and from the Python API on face crops:
calibration and held-out validation are disjoint halves of scikit-image's bundled faces / non-faces
(``skimage.data.lfw_subset``, 25x25 gray -> 48x48 RGB) plus jittered crops of the face in ``skimage.data.astronaut``.

Then the regression heads under int8, side by side on the held-out crops: the plain TF full-integer recipe
(TF docs), edgeconv's int8, int16x8, and int8 with the last layers kept float (the fallback's keep-float path).

    python3 benchmarks/multi_output.py            # ONet + two-head digits
    python3 benchmarks/multi_output.py --quick    # two-head digits only (no mtcnn needed)
"""
from __future__ import annotations

import argparse
import json
import math
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

import common

SCALE, MEAN, STD = 0.0078125, 0.99609375, 1.0  # MTCNN: (pixel - 127.5) / 128


def parse(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--quick", action="store_true", help="the two-head digits model only")
    p.add_argument("--work", type=Path, help="keep exports here (default: a temp folder)")
    p.add_argument("--out", type=Path, default=common.RESULTS)
    return p.parse_args(argv)


# ------------------------------------------------------------------------------------------------ ONet

def onet_weights() -> list[np.ndarray]:
    """The ONet weights shipped in the mtcnn package (a joblib/lz4 list in the order of its layers)."""
    import importlib.util

    import joblib

    spec = importlib.util.find_spec("mtcnn")
    if spec is None:
        raise SystemExit("pip install mtcnn (its onet.lz4 weights are what this benchmark exports)")
    return list(joblib.load(Path(spec.submodule_search_locations[0]) / "assets" / "weights" / "onet.lz4"))


def build_onet():
    """ONet as a functional model, layer for layer as mtcnn's subclassed ``ONet`` (same weight order)."""
    import keras
    from keras import layers as L

    inp = keras.Input((48, 48, 3), name="image")
    x = inp
    for i, (filters, k, pool, pool_stride, pad) in enumerate(
            [(32, 3, 3, 2, "same"), (64, 3, 3, 2, "valid"), (64, 3, 2, 2, "same")], start=1):
        x = L.Conv2D(filters, k, name=f"conv{i}")(x)
        x = L.PReLU(shared_axes=[1, 2], name=f"prelu{i}")(x)
        x = L.MaxPooling2D(pool, pool_stride, padding=pad, name=f"maxpooling{i}")(x)
    x = L.Conv2D(128, 2, name="conv4")(x)
    x = L.PReLU(shared_axes=[1, 2], name="prelu4")(x)
    x = L.Flatten(name="flatten4")(L.Permute((2, 1, 3), name="permute")(x))
    x = L.PReLU(name="prelu5")(L.Dense(256, name="fc5")(x))
    box = L.Dense(4, name="box")(x)
    landmarks = L.Dense(10, name="landmarks")(x)
    face = L.Dense(2, activation="softmax", name="face")(x)
    model = keras.Model(inp, [box, landmarks, face], name="onet")
    model.set_weights(onet_weights())
    return model


def check_against_mtcnn(model, x: np.ndarray) -> float:
    """max |ours - mtcnn's own ONet| on ``x`` (model inputs): the rebuild is the package's network."""
    from mtcnn.network.onet import ONet

    theirs = ONet()
    theirs.build()
    theirs.set_weights(onet_weights())
    ours = model(x, training=False)
    return max(float(np.abs(np.asarray(a) - np.asarray(b)).max()) for a, b in zip(ours, theirs(x)))


def face_crops() -> tuple[np.ndarray, np.ndarray, str]:
    """(calibration, validation) uint8 48x48x3 face / non-face crops from scikit-image's bundled data, disjoint."""
    from skimage import data, transform

    lfw = data.lfw_subset()  # 100 faces then 100 non-faces, 25x25 gray in 0..1
    gray = np.stack([transform.resize(im, (48, 48), order=1, anti_aliasing=False) for im in lfw])
    lfw_rgb = np.repeat((gray * 255).round()[..., None], 3, -1)
    astro, rng = data.astronaut(), np.random.default_rng(0)
    crops = []
    for _ in range(40):  # the astronaut's face (about rows 30-200, columns 150-320), jittered in place and size
        s = int(rng.integers(140, 210))
        r, c = int(rng.integers(20, 60)), int(rng.integers(130, 180))
        crops.append(transform.resize(astro[r:r + s, c:c + s], (48, 48), order=1, anti_aliasing=True) * 255)
    astro = np.stack(crops).round()
    cal = np.concatenate([lfw_rgb[0::2], astro[0::2]]).astype(np.uint8)
    val = np.concatenate([lfw_rgb[1::2], astro[1::2]]).astype(np.uint8)
    note = ("skimage.data.lfw_subset (100 faces + 100 non-faces) resized to 48x48 RGB, plus 40 jittered crops of "
            "skimage.data.astronaut's face; even samples calibrate, odd ones validate")
    return cal, val, note


def write_pngs(x: np.ndarray, folder: Path) -> Path:
    """One PNG per crop, named ``<folder name>_<i>.png``: sample ids are file names, and validation excludes the
    ids that calibrated, so the two folders must not share names."""
    from PIL import Image

    folder.mkdir(parents=True, exist_ok=True)
    for i, im in enumerate(x):
        Image.fromarray(im).save(folder / f"{folder.name}_{i:03d}.png")
    return folder


# ------------------------------------------------------------------------------------------------ figures

def head_rows(model_name: str, variant: str, data: bytes | Path, keras_model, x_in: np.ndarray, outputs) -> list[list]:
    """One row per output of one TFLite file against Keras on ``x_in`` (model inputs), matched by name."""
    from edgeconv.runtime.runners import KerasRunner, LiteRTRunner
    from edgeconv.verify.compare import Tolerance, compare_outputs

    blob = data.read_bytes() if isinstance(data, Path) else data
    ref = KerasRunner(keras_model).run(x_in)
    got = LiteRTRunner(blob, output_names=[o.name for o in outputs]).run(x_in)
    cmp = compare_outputs(ref, got, Tolerance(), outputs=outputs)
    return [[model_name, variant, o.name, o.kind, round(o.sqnr_db, 1), round(o.cosine, 5),
             None if o.rel_error is None else round(100 * o.rel_error, 2),
             None if o.top1_agreement is None else round(100 * o.top1_agreement, 2), round(len(blob) / 1e3, 1)]
            for o in cmp.outputs]


def regression_study(name: str, model, folder: Path, cal_x: np.ndarray, val_x: np.ndarray,
                     keep_float: list[list[str]],
                     work: Path, model_file: Path, cal: Path, val: Path, preprocessing=None) -> list[list]:
    """int8 of a multi-head model, per output: plain TF recipe vs edgeconv's int8 / int16x8 / keep-float."""
    from edgeconv.pipeline.manifest import Manifest
    from edgeconv.pipeline.trace import trace
    from edgeconv.verify.fallback import convert_with_keep_float

    m = Manifest.load(folder)
    outputs = m.outputs
    rows = head_rows(name, "plain TF int8 recipe (TF docs)", common.tf_docs_int8(model, cal_x), model, val_x,
                     outputs)
    for key, label in (("int8", "edgeconv int8"), ("int16x8", "edgeconv int16x8"), ("fp16", "edgeconv fp16")):
        rec = next((a for a in m.artifacts if a.key == key), None)
        if rec is not None:
            rows += head_rows(name, label, folder / rec.file, model, val_x, outputs)
    import edgeconv

    t0 = time.perf_counter()
    fb = edgeconv.export(model_file, precisions=["int8"], calibration=cal, out_dir=work / f"{name}_fallback",
                         quiet=True, preprocessing=preprocessing, fallback="auto",
                         validation=edgeconv.ValidationOptions(data=val))
    rec = fb.manifest.artifact(f"{fb.name}_int8.tflite")
    kept = ", ".join(rec.kept_float) or "nothing"
    rows += head_rows(name, f"edgeconv int8 --fallback auto ({rec.precision}; float: {kept}; "
                            f"{time.perf_counter() - t0:.0f} s)", fb.out_dir / rec.file, model, val_x, outputs)
    saved = trace(model, work / f"{name}_trace")
    for layers in keep_float:
        data = convert_with_keep_float(saved, cal_x, layers, io_type="float")
        rows += head_rows(name, f"int8, float: {', '.join(layers)}", data, model, val_x, outputs)
    return rows


def artifact_rows(name: str, how: str, folder: Path, seconds: float) -> list[list]:
    rep = json.loads((folder / "report.json").read_text())
    rows = []
    for a in rep["artifacts"]:
        for o in (a["comparison"] or {}).get("outputs", []):
            sq = o["sqnr_db"]
            rows.append([name, how, a["file"], o["name"], o["kind"], round(float(sq), 1) if not isinstance(sq, str)
                         else sq, round(float(o["cosine"]), 5),
                         None if o.get("rel_error") is None else round(100 * float(o["rel_error"]), 2),
                         None if o["top1_agreement"] is None else round(100 * o["top1_agreement"], 2),
                         a["verdict"], round(seconds, 1)])
    return rows


def export_both(name: str, model_file: Path, cal: Path, val: Path, work: Path, extra_cli: list[str], preprocessing,
                ) -> tuple[list[list], Path, dict]:
    """The same export from the CLI and from the Python API: rows of both, the API's folder, facts."""
    import edgeconv
    from edgeconv.precisions import ALL_KEYS

    cli_out, api_out = work / "cli", work / "api"
    cmd = [sys.executable, "-c", "from edgeconv.cli import main; main()", "export", str(model_file), "--all", "--calibration", str(cal),
           "--data", str(val), "--out", str(cli_out), "-q", *extra_cli]
    t0 = time.perf_counter()
    proc = subprocess.run(cmd, capture_output=True, text=True)
    cli_s = time.perf_counter() - t0
    if proc.returncode not in (0, 1) or not list(cli_out.glob("*/report.json")):  # 1: an artifact failed validation
        raise SystemExit(f"CLI export of {name} failed ({proc.returncode}):\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}")
    t0 = time.perf_counter()
    res = edgeconv.export(model_file, precisions=ALL_KEYS, calibration=cal, out_dir=api_out, quiet=True,
                          preprocessing=preprocessing, validation=edgeconv.ValidationOptions(data=val))
    api_s = time.perf_counter() - t0
    folder = api_out / res.name
    cli_manifest = json.loads((cli_out / res.name / "manifest.json").read_text())
    same = {a.file: a.sha256 == next(c["sha256"] for c in cli_manifest["artifacts"] if c["file"] == a.file)
            for a in res.manifest.artifacts}
    facts = {"cli_command": "edgeconv " + " ".join(cmd[3:]), "cli_exit_code": proc.returncode,
             "cli_seconds": round(cli_s, 1),
             "api_seconds": round(api_s, 1), "api_passed": res.validation.passed,
             "same_bytes_cli_vs_api": same, "cli_stdout_tail": proc.stdout[-1500:]}
    rows = artifact_rows(name, "CLI", cli_out / res.name, cli_s) + artifact_rows(name, "Python API", folder, api_s)
    return rows, folder, facts


def main(argv=None) -> dict:
    args = parse(argv)
    import keras

    from edgeconv.models import Preprocessing

    work = args.work or Path(tempfile.mkdtemp(prefix="edgeconv-multi-"))
    work.mkdir(parents=True, exist_ok=True)
    export_rows, study_rows, facts = [], [], {}

    # the two-head digits model of the tests (class scores + a regression head)
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))
    from helpers import cached_two_head, digits_pixels

    model_file, info = cached_two_head()
    (xtr, _), (xte, yte) = digits_pixels(32)
    cal, val = work / "digits_cal.npy", work / "digits_val.npz"
    np.save(cal, xtr[:200].astype(np.uint8))
    np.savez(val, x=xte.astype(np.uint8), y=yte)
    rows, folder, facts["two_head"] = export_both("two_head", model_file, cal, val, work / "two_head", [], None)
    export_rows += rows
    model = keras.saving.load_model(model_file)
    study_rows += regression_study("two_head", model, folder, xtr[:200].astype(np.float32),
                                   xte.astype(np.float32), [["blob"], ["fc", "blob"]], work, model_file, cal, val)

    if not args.quick:
        cal_px, val_px, note = face_crops()
        onet = build_onet()
        to_in = lambda px: ((px.astype(np.float32) * SCALE - MEAN) / STD).astype(np.float32)  # noqa: E731
        facts["onet_vs_mtcnn_max_abs"] = check_against_mtcnn(onet, to_in(val_px))
        facts["faces"] = note
        onet_file = work / "onet.keras"
        onet.save(onet_file)
        cal_dir, val_dir = write_pngs(cal_px, work / "faces_cal"), write_pngs(val_px, work / "faces_val")
        pre = Preprocessing("custom", scale=SCALE, mean=(MEAN,), std=(STD,))
        rows, folder, facts["onet"] = export_both(
            "onet", onet_file, cal_dir, val_dir, work / "onet",
            ["--scale", str(SCALE), "--mean", str(MEAN), "--std", str(STD)], pre)
        export_rows += rows
        study_rows += regression_study("onet", onet, folder, to_in(cal_px), to_in(val_px),
                                       [["box"], ["box", "landmarks"], ["fc5", "prelu5", "box", "landmarks"]],
                                       work, onet_file, cal_dir, val_dir, pre)

    cmd = common.command_line()
    common.write_results("table7_multi_output", "Table 7a: multi-output exports, every output judged by its kind",
                         ["model", "via", "artifact", "output", "kind", "SQNR dB", "cosine", "max err % range",
                          "top-1 %", "verdict", "export s"], export_rows, command=cmd, out=args.out,
                         extra={"facts": facts},
                         notes=[f"two-head digits: {info}", facts.get("faces", ""),
                                f"ONet rebuild vs mtcnn's own ONet: max abs {facts.get('onet_vs_mtcnn_max_abs')}"])
    common.write_results("table7b_regression_heads", "Table 7b: int8 on regression heads, per output, held-out data",
                         ["model", "variant", "output", "kind", "SQNR dB", "cosine", "max err % range", "top-1 %",
                          "KB"], study_rows, command=cmd, out=args.out)
    return facts


if __name__ == "__main__":
    main()
