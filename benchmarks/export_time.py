"""Table 3: export time, side by side in one run, with step times.

Per model, each variant in its own fresh Python process, one after the other (never at the same time):

- ``tutorial``: the plain script the tutorials show: ``TFLiteConverter.from_keras_model`` for fp32, fp16 and full
  int8 (``representative_dataset``), then ``tf2onnx.convert.from_keras`` (opset 17);
- ``edgeconv``: ``edgeconv export MODEL --fp16 --int8 --onnx --no-validate`` (conversions in worker processes as
  the cores and memory allow) and ``edgeconv --jobs 1``: the same, one conversion after the other;
- ``main job``: ``edgeconv export MODEL --int8`` with validation (the defaults: 200 calibration, 200 held-out
  inputs), by this code and, with ``--baseline DIR``, by another checkout of edgeconv (e.g. the main branch before
  a change: ``git worktree add /tmp/base <commit>``), so "today's time" is measured in the same run.

Weights: every variant loads the same weights file (``--weights FILE`` for edgeconv, ``model.load_weights`` in the
tutorial), made once per model and size before any clock starts: seeded random weights with BatchNorm statistics
estimated on the calibration images. That is the main job's path (``export mobilenetv3_small --int8`` loads Keras'
ImageNet file from its cache), without the network these machines lack; time does not depend on the values. With
``--random-weights`` edgeconv exports random weights instead and estimates their BatchNorm statistics inside the
clock (a step of models without published weights that the tutorial does not have). The clock starts after the imports
(``import tensorflow, keras, tf2onnx``: their time is reported separately as "TF start") and the tutorial's
calibration arrays are loaded before it. The 1-minute load average is recorded before and after each variant: on
a shared machine, parallel conversions cannot show their speed-up when the other cores are busy.

    python3 benchmarks/export_time.py                          # mobilenetv3_small, mobilenet_v2, efficientnet_b0
    python3 benchmarks/export_time.py --baseline /tmp/base     # + the main job by an older checkout
    python3 benchmarks/export_time.py --quick                  # one tiny model at 32x32, in this process
    python3 benchmarks/export_time.py --no-main-job            # table 3: the export variants vs the tutorial
    python3 benchmarks/export_time.py --main-job-only --random-weights --baseline /tmp/base   # table 3b
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import common

if os.environ.get("EDGECONV_BENCH_CODE"):  # a --baseline child: that checkout's edgeconv, not this one's
    sys.path[:] = [x for x in sys.path if Path(x or ".").resolve() != common.HERE.parent]
    sys.path.insert(0, os.environ["EDGECONV_BENCH_CODE"])

MODELS = ["mobilenetv3_small", "mobilenet_v2", "efficientnet_b0"]
STEP_KEYS = ["load", "calibration data", "weights", "reference", "trace", "fp32", "fp16", "int8", "onnx", "convert",
             "validate"]


def parse(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--models", nargs="*", default=MODELS)
    p.add_argument("--size", type=int, default=224)
    p.add_argument("--calib", type=int, default=200, help="calibration images for int8 (every variant)")
    p.add_argument("--baseline", type=Path, help="another edgeconv checkout to time the main job with")
    p.add_argument("--no-main-job", action="store_true", help="only the tutorial-vs-edgeconv variants")
    p.add_argument("--main-job-only", action="store_true",
                   help="only the main job (baseline and this code), into table3b_main_job")
    p.add_argument("--quick", action="store_true")
    p.add_argument("--random-weights", action="store_true",
                   help="edgeconv builds random weights and estimates BatchNorm statistics in the clock")
    p.add_argument("--out", type=Path, default=common.RESULTS)
    p.add_argument("--one", nargs=2, metavar=("VARIANT", "MODEL"), help=argparse.SUPPRESS)  # child process
    p.add_argument("--width", default="{}", help=argparse.SUPPRESS)
    p.add_argument("--weights-file", type=Path, help=argparse.SUPPRESS)
    p.add_argument("--work", type=Path, help=argparse.SUPPRESS)
    return p.parse_args(argv)


def _calibration(name: str, size: int, n: int):
    """The embedded photo set's calibration split as model inputs: what edgeconv calibrates on by default."""
    from edgeconv import models
    from edgeconv.pipeline.inputs import model_inputs

    return model_inputs(None, input_shape=(size, size, 3), preprocessing=models.model_info(name).preprocessing,
                        num=n, split="calibration").x


def weights_file(name: str, size: int, width: dict, path: Path) -> Path:
    """The weights every variant loads (module docstring), made once: seeded random weights, BatchNorm statistics
    estimated on 64 calibration images."""
    if path.exists():
        return path
    import keras

    from edgeconv import models
    from edgeconv.models.batchnorm import estimate_batchnorm_statistics

    keras.utils.set_random_seed(0)
    model = models.create_model(name, input_shape=(size, size, 3), **width)
    estimate_batchnorm_statistics(model, _calibration(name, size, 64))
    tmp = path.with_name("tmp-" + path.name)
    model.save_weights(str(tmp))
    os.replace(tmp, path)
    return path


def tutorial(model, calib, out: Path) -> dict:
    """What the tutorials do: one from_keras_model conversion per precision, then tf2onnx. -> step seconds."""
    import tensorflow as tf
    import tf2onnx

    steps = {}
    t = time.perf_counter()
    conv = tf.lite.TFLiteConverter.from_keras_model(model)
    (out / "model_fp32.tflite").write_bytes(conv.convert())
    steps["fp32"], t = time.perf_counter() - t, time.perf_counter()
    conv = tf.lite.TFLiteConverter.from_keras_model(model)
    conv.optimizations = [tf.lite.Optimize.DEFAULT]
    conv.target_spec.supported_types = [tf.float16]
    (out / "model_fp16.tflite").write_bytes(conv.convert())
    steps["fp16"], t = time.perf_counter() - t, time.perf_counter()
    (out / "model_int8.tflite").write_bytes(common.tf_docs_int8(model, calib))
    steps["int8"], t = time.perf_counter() - t, time.perf_counter()
    spec = (tf.TensorSpec((1, *model.input_shape[1:]), tf.float32, name="input"),)
    tf2onnx.convert.from_keras(model, input_signature=spec, opset=17, output_path=str(out / "model.onnx"))
    steps["onnx"] = time.perf_counter() - t
    return steps


def child(args) -> dict:
    """Time one variant in this (fresh) process; -> one JSON-able dict."""
    variant, name = args.one
    width = json.loads(args.width)
    load_before = os.getloadavg()[0]
    t0 = time.perf_counter()
    import keras  # noqa: F401 - imports are not part of the timed work
    import tensorflow as tf  # noqa: F401
    import tf2onnx  # noqa: F401

    tf_start = time.perf_counter() - t0
    from edgeconv import models
    from edgeconv.console import quiet_native

    out = Path(args.work)
    out.mkdir(parents=True, exist_ok=True)
    calib = _calibration(name, args.size, args.calib) if variant == "tutorial" else None
    wfile = None if args.weights_file is None else weights_file(name, args.size, width, args.weights_file)
    err, steps, verdicts = None, {}, {}
    with quiet_native():
        cpu0 = _cpu_seconds()
        t0 = time.perf_counter()
        try:
            if variant == "tutorial":
                keras.utils.set_random_seed(0)
                model = models.create_model(name, input_shape=(args.size, args.size, 3), **width)
                if wfile is not None:
                    model.load_weights(str(wfile))
                steps = {"build": time.perf_counter() - t0}
                steps.update(tutorial(model, calib, out))
            else:
                from edgeconv.pipeline.export import export

                kw = dict(out_dir=out, input_size=args.size, weights="random" if wfile is None else str(wfile),
                          width=width, calib_samples=args.calib,
                          quiet=True)
                if variant.startswith("main"):
                    res = export(name, precisions=["int8"], **kw)
                    verdicts = {a.file: a.verdict for a in res.validation.artifacts}
                else:
                    if variant == "edgeconv-seq":
                        kw["jobs"] = 1
                    res = export(name, precisions=["fp16", "int8", "onnx"], validate=False, **kw)
                steps = {k: round(float(v), 2) for k, v in res.seconds.items()}
        except Exception as e:  # noqa: BLE001 - a failing variant is a result
            err = f"{type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}"[:200]
        secs = time.perf_counter() - t0
        cpu = _cpu_seconds() - cpu0
    files = {p.name: p.stat().st_size for p in out.rglob("*") if p.suffix in (".tflite", ".onnx")}
    return {"variant": variant, "model": name, "seconds": secs, "cpu_seconds": round(cpu, 2), "tf_start": round(tf_start, 2), "steps": steps,
            "verdicts": verdicts, "error": err, "files": files,
            "load": [round(load_before, 2), round(os.getloadavg()[0], 2)]}


def _cpu_seconds() -> float:
    """CPU seconds (user + system) of this process and of its finished children (the export's workers)."""
    import resource

    me, kids = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return me.ru_utime + me.ru_stime + kids.ru_utime + kids.ru_stime


def run_child(variant: str, name: str, width: dict, args, work: Path) -> dict:
    if args.quick:  # in this process: the quick mode only checks that both paths still work
        ns = argparse.Namespace(**{**vars(args), "one": [variant, name], "width": json.dumps(width),
                                   "work": work / f"{variant}_{name}"})
        return child(ns)
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "EDGECONV_BENCH_CODE")}
    if variant == "main-baseline":
        env["EDGECONV_BENCH_CODE"] = str(Path(args.baseline).resolve())
    cmd = [sys.executable, str(Path(__file__).resolve()), "--one", variant, name, "--width", json.dumps(width),
           "--size", str(args.size), "--calib", str(args.calib), "--work", str(work / f"{variant}_{name}")]
    if not args.random_weights:
        cmd += ["--weights-file", str(work / f"weights_{name}_{args.size}.weights.h5")]
    p = subprocess.run(cmd, capture_output=True, text=True, env=env, cwd=str(work))
    lines = [ln for ln in p.stdout.splitlines() if ln.startswith("{")]
    if p.returncode != 0 or not lines:
        tail = (p.stderr.strip().splitlines() or ["?"])[-1]
        return {"variant": variant, "model": name, "seconds": None, "error": f"exit {p.returncode}: {tail}",
                "files": {}, "steps": {}, "verdicts": {}, "load": [None, None], "tf_start": None}
    return json.loads(lines[-1])


def _steps_text(r: dict) -> str:
    s = r.get("steps") or {}
    parts = [f"TF start {r['tf_start']:.1f}"] if r.get("tf_start") is not None else []
    parts += [f"{k} {s[k]:.1f}" for k in ["build", *STEP_KEYS] if isinstance(s.get(k), (int, float))]
    if s.get("workers"):
        parts.append(f"{int(s['workers'])} worker(s)")
    return ", ".join(parts)


LABELS = {"tutorial": "tutorial script (fp32+fp16+int8+ONNX)",
          "edgeconv": "edgeconv --fp16 --int8 --onnx --no-validate",
          "edgeconv-seq": "edgeconv ... --no-validate --jobs 1",
          "main-baseline": "main job --int8 + validation: baseline",
          "main": "main job --int8 + validation: this code"}


def main(argv=None) -> dict:
    args = parse(argv)
    if args.one:
        print(json.dumps(child(args)), flush=True)
        return {}
    if args.quick:
        name, width = common.QUICK_MODEL
        todo, args.size, args.calib = [(name, width)], 32, 16
        variants = ("tutorial", "edgeconv")
    else:
        todo = [(m, {}) for m in args.models]
        main_job = (("main-baseline",) if args.baseline else ()) + ("main",)
        variants = main_job if args.main_job_only else ("tutorial", "edgeconv", "edgeconv-seq") + (
            () if args.no_main_job else main_job)
    rows, raw = [], []
    with tempfile.TemporaryDirectory(prefix="edgeconv-bench-t-") as tmp:
        for name, width in todo:
            res = {v: run_child(v, name, width, args, Path(tmp)) for v in variants}
            raw.append(res)
            for v, r in res.items():
                base = res["main-baseline"] if v == "main" and "main-baseline" in res else \
                    None if v.startswith("main") else res["tutorial"]
                ok = base and r["seconds"] and base["seconds"] and not (r["error"] or base["error"])
                ratio = r["seconds"] / base["seconds"] if ok else None
                cpu_ratio = r["cpu_seconds"] / base["cpu_seconds"] if ok and base.get("cpu_seconds") else None
                same = ""
                if v == "main" and "main-baseline" in res:
                    same = "same verdicts" if r["verdicts"] == res["main-baseline"]["verdicts"] else \
                        f"VERDICTS DIFFER: {r['verdicts']} vs {res['main-baseline']['verdicts']}"
                rows.append([name, LABELS[v], None if r["seconds"] is None else round(r["seconds"], 1),
                             None if ratio is None else round(ratio, 2), r.get("cpu_seconds"),
                             None if cpu_ratio is None else round(cpu_ratio, 2), _steps_text(r),
                             "-" if r["load"][0] is None else f"{r['load'][0]:.1f} -> {r['load'][1]:.1f}",
                             r["error"] or same or "-"])
    cols = ["model", "variant", "seconds", "ratio", "CPU s", "CPU ratio", "step times (s)", "load avg 1 min", "errors / verdicts"]
    table = "table3b_main_job" if args.main_job_only else "table3_export_time"
    title = "Table 3b: the main job's time, this code vs the baseline" if args.main_job_only else "Table 3: export time"
    common.write_results(table + ("_quick" if args.quick else ""),
                         f"{title} at {args.size}x{args.size}, side by side", cols, rows,
                         command=common.command_line(), out=args.out, extra={"raw": raw}, notes=[
                             "ratio: edgeconv / tutorial script for the export variants (<= 0.6 is the target); "
                             "this code / baseline for the main job; wall seconds. CPU s: user + system seconds of "
                             "the variant's process and its workers (less sensitive to a busy machine; parallel "
                             "conversions lower the wall time, not the CPU time)",
                             f"{args.calib} calibration images (the embedded photo set's calibration split) for "
                             "int8 in every variant; " + (
                                 "random weights, BatchNorm statistics estimated by edgeconv in the clock"
                                 if args.random_weights else
                                 "every variant loads the same weights file (as the main job loads Keras' ImageNet "
                                 "file)"),
                             "each variant in a fresh process, one after the other; imports are not timed (TF "
                             "start is shown apart); step times are wall seconds, conversions in worker processes "
                             "overlap ('convert' is their wall time together)",
                             "load avg: the machine's 1-minute load average before -> after the variant; above the "
                             "core count, other work competed for the CPU"
                             + (" (--quick: in this process)" if args.quick else "")])
    return {"rows": rows, "raw": raw}


if __name__ == "__main__":
    main()
