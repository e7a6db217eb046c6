"""Table 3: export time. edgeconv exporting fp32 + fp16 + int8 + ONNX in one command vs the plain script the
tutorials show: ``TFLiteConverter.from_keras_model`` once per precision plus ``tf2onnx.convert.from_keras``.

Each variant runs in its own fresh Python process (same imports loaded before the clock starts, same model, same
calibration inputs); the time is the wall time of the work, not of the interpreter start-up.

    python3 benchmarks/export_time.py              # mobilenetv3_small, mobilenetv3_large, mobilenet_v2 at 224x224
    python3 benchmarks/export_time.py --quick      # one tiny model at 32x32
"""
from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import common
from edgeconv.options import ValidationOptions

MODELS = ["mobilenetv3_small", "mobilenetv3_large", "mobilenet_v2"]


def parse(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--models", nargs="*", default=MODELS)
    p.add_argument("--size", type=int, default=224)
    p.add_argument("--calib", type=int, default=100, help="calibration images for int8 (both variants)")
    p.add_argument("--quick", action="store_true")
    p.add_argument("--out", type=Path, default=common.RESULTS)
    p.add_argument("--one", nargs=2, metavar=("VARIANT", "MODEL"), help=argparse.SUPPRESS)  # child process
    p.add_argument("--width", default="{}", help=argparse.SUPPRESS)
    p.add_argument("--work", type=Path, help=argparse.SUPPRESS)
    return p.parse_args(argv)


def _calibration(name: str, size: int, n: int):
    """The embedded photo set as model inputs (the same arrays for both variants)."""
    from edgeconv import models
    from edgeconv.pipeline.inputs import model_inputs

    return model_inputs(None, input_shape=(size, size, 3), preprocessing=models.model_info(name).preprocessing,
                        num=n, split="calibration").x


def plain_script(model, calib, out: Path) -> None:
    """What the tutorials do: one from_keras_model conversion per precision, then tf2onnx."""
    import tensorflow as tf
    import tf2onnx

    conv = tf.lite.TFLiteConverter.from_keras_model(model)
    (out / "model_fp32.tflite").write_bytes(conv.convert())
    conv = tf.lite.TFLiteConverter.from_keras_model(model)
    conv.optimizations = [tf.lite.Optimize.DEFAULT]
    conv.target_spec.supported_types = [tf.float16]
    (out / "model_fp16.tflite").write_bytes(conv.convert())
    (out / "model_int8.tflite").write_bytes(common.tf_docs_int8(model, calib))
    spec = (tf.TensorSpec((1, *model.input_shape[1:]), tf.float32, name="input"),)
    tf2onnx.convert.from_keras(model, input_signature=spec, opset=17, output_path=str(out / "model.onnx"))


def child(args) -> dict:
    """Time one variant in this (fresh) process; print one JSON line."""
    variant, name = args.one
    width = json.loads(args.width)
    import keras  # noqa: F401 - imports are not part of the timed work
    import tensorflow as tf  # noqa: F401
    import tf2onnx  # noqa: F401

    from edgeconv import models
    from edgeconv.console import quiet_native

    calib = _calibration(name, args.size, args.calib)
    out = Path(args.work)
    out.mkdir(parents=True, exist_ok=True)
    err = None
    with quiet_native():
        t0 = time.perf_counter()
        try:
            if variant == "plain":
                keras.utils.set_random_seed(0)
                model = models.create_model(name, input_shape=(args.size, args.size, 3), **width)
                plain_script(model, calib, out)
            else:
                from edgeconv.pipeline.export import export

                np_cal = out / "calib.npy"
                import numpy as np

                np.save(np_cal, calib)  # float array: taken as already-preprocessed inputs
                export(name, precisions=["fp16", "int8", "onnx"], out_dir=out, input_size=args.size, weights="random",
                       width=width, calibration=str(np_cal), calib_samples=len(calib),
                       validate=(variant == "edgeconv"), validation=ValidationOptions(samples=50), quiet=True)
        except Exception as e:  # noqa: BLE001 - a failing variant is a result
            err = f"{type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}"[:200]
        secs = time.perf_counter() - t0
    files = {p.name: p.stat().st_size for p in out.rglob("*") if p.suffix in (".tflite", ".onnx")}
    return {"variant": variant, "model": name, "seconds": secs, "error": err, "files": files}


def run_child(variant: str, name: str, width: dict, args, work: Path) -> dict:
    if args.quick:  # in this process: the quick mode only checks that both paths still work
        ns = argparse.Namespace(**{**vars(args), "one": [variant, name], "width": json.dumps(width),
                                   "work": work / f"{variant}_{name}"})
        return child(ns)
    cmd = [sys.executable, str(Path(__file__).resolve()), "--one", variant, name, "--width", json.dumps(width),
           "--size", str(args.size), "--calib", str(args.calib), "--work", str(work / f"{variant}_{name}")]
    p = subprocess.run(cmd, capture_output=True, text=True)
    lines = [ln for ln in p.stdout.splitlines() if ln.startswith("{")]
    if p.returncode != 0 or not lines:
        tail = (p.stderr.strip().splitlines() or ["?"])[-1]
        return {"variant": variant, "model": name, "seconds": None, "error": f"exit {p.returncode}: {tail}",
                "files": {}}
    return json.loads(lines[-1])


def main(argv=None) -> dict:
    args = parse(argv)
    if args.one:
        print(json.dumps(child(args)), flush=True)
        return {}
    if args.quick:
        name, width = common.QUICK_MODEL
        todo, args.size, args.calib = [(name, width)], 32, 16
    else:
        todo = [(m, {}) for m in args.models]
    rows, raw = [], []
    with tempfile.TemporaryDirectory(prefix="edgeconv-bench-t-") as tmp:
        for name, width in todo:
            variants = ("plain", "edgeconv-novalidate") + (() if args.quick else ("edgeconv",))
            res = {v: run_child(v, name, width, args, Path(tmp)) for v in variants}
            raw.append(res)
            p, e = res["plain"], res["edgeconv-novalidate"]
            ev = res.get("edgeconv", {"seconds": None})
            ratio = p["seconds"] / e["seconds"] if p["seconds"] and e["seconds"] and not (p["error"] or e["error"]) \
                else None
            rows.append([name, f"{args.size}x{args.size}", None if p["seconds"] is None else round(p["seconds"], 1),
                         None if e["seconds"] is None else round(e["seconds"], 1),
                         None if ev["seconds"] is None else round(ev["seconds"], 1),
                         None if ratio is None else round(ratio, 2),
                         "; ".join(f"{r['variant']}: {r['error']}" for r in res.values() if r["error"]) or "-"])
    cols = ["model", "input", "plain script s", "edgeconv s (no validation)", "edgeconv s (+ validation)",
            "plain / edgeconv", "errors"]
    common.write_results("table3_export_time" + ("_quick" if args.quick else ""),
                         "Table 3: export time, fp32 + fp16 + int8 + ONNX", cols, rows,
                         command=common.command_line(), out=args.out, extra={"raw": raw}, notes=[
                             f"{args.calib} calibration images (embedded photo set) for int8 in both variants; "
                             "random weights (time does not depend on them)",
                             "plain script: TFLiteConverter.from_keras_model per precision (fp32, fp16, full int8 "
                             "with representative_dataset) + tf2onnx.convert.from_keras(opset 17)",
                             "edgeconv: one export(...) call = load, BatchNorm estimation, save .keras, trace once, "
                             "4 conversions, manifest; '+ validation' also validates every artifact on 50 inputs",
                             "each variant in a fresh process; imports and calibration loading are not timed"
                             + (" (--quick: both in this process, no '+ validation' run)" if args.quick else "")])
    return {"rows": rows, "raw": raw}


if __name__ == "__main__":
    main()
