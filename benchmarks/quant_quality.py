"""Table 2: quantization quality on the trained fixtures, edgeconv vs what users would do instead.

Per fixture: held-out accuracy and top-1 agreement with the Keras model of edgeconv's fp16, int8 (default, and with
--fallback auto when the default misses its target), int16x8 and ONNX int8, against (a) the plain TFLiteConverter
full-integer recipe from the TensorFlow docs (from_keras_model, Optimize.DEFAULT, representative_dataset,
TFLITE_BUILTINS_INT8, int8 input/output) and (b) onnxruntime ``quantize_static`` with its defaults on the same fp32
ONNX. Every quantizer gets the same calibration digits; accuracy drops are beside the published ImageNet drops.

    python3 benchmarks/quant_quality.py            # every fixture (trains missing ones first, see fixtures.py)
    python3 benchmarks/quant_quality.py --quick    # one tiny model
"""
from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np

import common
from edgeconv.options import ValidationOptions


def parse(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--size", type=int, default=32)
    p.add_argument("--epochs", type=int, default=15, help="epochs of the fixtures (cache key)")
    p.add_argument("--models", nargs="*")
    p.add_argument("--calib", type=int, default=200, help="calibration digits for every quantizer")
    p.add_argument("--quick", action="store_true")
    p.add_argument("--cache", type=Path, default=common.CACHE)
    p.add_argument("--out", type=Path, default=common.RESULTS)
    p.add_argument("--work", type=Path, help="keep the exported artifacts here (default: a temp folder)")
    p.add_argument("--int8-only", action="store_true",
                   help="only table 2b: int8 quantizers on half B of the held-out digits, ranges tuned on half A")
    p.add_argument("--fallback-sqnr", type=float,
                   help="--int8-only: also run --fallback auto with this SQNR target (tuned on half A, judged on B)")
    p.add_argument("--merge", action="store_true",
                   help="keep the rows of models not run now from the existing results table")
    return p.parse_args(argv)


def ort_quantize_static_defaults(fp32_onnx: Path, calib: np.ndarray, out: Path) -> Path:
    """onnxruntime.quantization.quantize_static(model_input, model_output, reader) with every default."""
    import onnxruntime as ort
    from onnxruntime.quantization import CalibrationDataReader, quantize_static

    name = ort.InferenceSession(str(fp32_onnx), providers=["CPUExecutionProvider"]).get_inputs()[0].name

    class Reader(CalibrationDataReader):
        def __init__(self):
            self.it = iter([{name: calib[i:i + 1]} for i in range(len(calib))])

        def get_next(self):
            return next(self.it, None)

    quantize_static(str(fp32_onnx), str(out), Reader())
    return out


def plain_tf2onnx(model, out: Path) -> Path:
    import tensorflow as tf
    import tf2onnx

    spec = (tf.TensorSpec((1, *model.input_shape[1:]), tf.float32, name="input"),)
    tf2onnx.convert.from_keras(model, input_signature=spec, opset=17, output_path=str(out))
    return out


def _metrics(probs: np.ndarray, ref: np.ndarray, y: np.ndarray) -> tuple[float, float, float]:
    from edgeconv.verify.compare import sqnr_db

    acc = float(np.mean(np.argmax(probs, 1) == y))
    agree = float(np.mean(np.argmax(probs, 1) == np.argmax(ref, 1)))
    return acc, agree, float(sqnr_db(ref, probs))


def bench_fixture(fx: common.Fixture, args, work: Path) -> list[list]:
    import keras

    from edgeconv import models
    from edgeconv.console import quiet_native
    from edgeconv.errors import EdgeconvError
    from edgeconv.pipeline.export import export
    from edgeconv.runtime.runners import LiteRTRunner, OnnxRunner
    from edgeconv.tflite.calibrate import scores_of
    from edgeconv.verify.compare import sqnr_db

    name, size = fx.name, fx.size
    n_cal = 32 if args.quick else args.calib
    cal, val = common.data_files(size, work / "data", n_cal, 100 if args.quick else None)
    pre = models.model_info(name).preprocessing
    xval = np.load(val)
    x, y = pre.apply(xval["x"].astype(np.float32)), xval["y"]
    xcal = pre.apply(np.load(cal).astype(np.float32))
    precisions = ["int8", "onnx"] if args.quick else ["fp16", "int8", "int16x8", "onnx", "onnx_int8"]
    vopts = ValidationOptions(data=str(val), samples=len(x))
    common_kw = dict(weights=str(fx.weights), input_size=size, classes=10, width=fx.width, calibration=str(cal),
                     calib_samples=n_cal, validation=vopts, quiet=True)
    t0 = time.perf_counter()
    export_error = None
    try:
        res = export(name, precisions=precisions, out_dir=work / "edgeconv", **common_kw)
    except EdgeconvError as e:  # a failing ONNX conversion must not hide the TFLite figures: retry without ONNX
        export_error = str(e).splitlines()[0][:200]
        precisions = [p for p in precisions if not p.startswith("onnx")]
        res = export(name, precisions=precisions, out_dir=work / "edgeconv", **common_kw)
    secs = time.perf_counter() - t0
    folder = res.out_dir
    float_acc = res.validation.artifacts[0].comparison.outputs[0].accuracy_ref
    published = common.PUBLISHED_INT8_DROP.get(name)
    rows = []

    fp32_file = next(folder / a.file for a in res.validation.artifacts if a.key == "fp32")
    logits_ref = scores_of(fp32_file.read_bytes(), x)[0]  # the fp32 file's SOFTMAX input (Keras to ~110 dB)

    def row(variant, file_bytes, acc, agree, sqnr, verdict, published_drop=None, tflite=None):
        logits = None if tflite is None else round(sqnr_db(logits_ref, scores_of(tflite, x)[0]), 1)
        rows.append([name, variant, round(file_bytes / 1e3, 1), round(100 * acc, 2),
                     round(100 * (float_acc - acc), 2), round(100 * agree, 2),
                     None if sqnr is None or not np.isfinite(sqnr) else round(sqnr, 1),
                     None if logits is None or not np.isfinite(logits) else logits, verdict, published_drop])

    rows.append([name, "Keras float (reference)", None, round(100 * float_acc, 2), 0.0, 100.0, None, None, "-",
                 None])
    label = {"fp32": "edgeconv fp32 TFLite", "fp16": "edgeconv fp16", "int8": "edgeconv int8",
             "int16x8": "edgeconv int16x8", "onnx": "edgeconv ONNX fp32", "onnx_int8": "edgeconv ONNX int8 (QDQ)"}
    int8_failed = False
    for a in res.validation.artifacts:
        o = a.comparison.outputs[0]
        if a.key == "int8":
            int8_failed = not a.passed
        row(label[a.key], (folder / a.file).stat().st_size, o.accuracy, o.top1_agreement, o.sqnr_db, a.verdict,
            published if a.key == "int8" else None,
            (folder / a.file).read_bytes() if a.format == "tflite" and a.key != "fp32" else None)
    if export_error:
        rows.append([name, "edgeconv ONNX fp32 / int8", None, None, None, None, None, None,
                     f"ERROR: {export_error}", None])
    if int8_failed:
        fb = export(name, precisions=["int8"], out_dir=work / "edgeconv_fallback", fallback="auto", **common_kw)
        a = fb.validation.artifacts[-1]
        o = a.comparison.outputs[0]
        kept = (fb.fallback.kept_float if fb.fallback is not None else [])
        row(f"edgeconv int8 --fallback auto ({len(kept)} layers float, {a.precision})",
            (fb.out_dir / a.file).stat().st_size, o.accuracy, o.top1_agreement, o.sqnr_db, a.verdict, published,
            (fb.out_dir / a.file).read_bytes())
    else:
        rows.append([name, "edgeconv int8 --fallback auto", None, None, None, None, None, None,
                     "not triggered (default int8 passed)", None])
    # the peers: what the tutorials do, on the same weights, calibration digits and held-out digits
    model = common.build(name, size, fx.width)
    model.load_weights(str(fx.weights))
    ref = model.predict(x, verbose=0, batch_size=128)
    with quiet_native():
        tfl = common.tf_docs_int8(model, xcal)
    (work / f"{name}_tfdocs_int8.tflite").write_bytes(tfl)
    acc, agree, sq = _metrics(LiteRTRunner(tfl).run(x)[0], ref, y)
    row("TFLiteConverter int8 recipe (TF docs)", len(tfl), acc, agree, sq, "-", published, tfl)
    try:
        with quiet_native():
            fp32_onnx = folder / f"{name}.onnx"
            if not fp32_onnx.exists():  # edgeconv's ONNX failed: the plain tf2onnx call users would make
                fp32_onnx = plain_tf2onnx(model, work / f"{name}_tf2onnx.onnx")
            q = ort_quantize_static_defaults(fp32_onnx, xcal, work / f"{name}_ort_default_int8.onnx")
        acc, agree, sq = _metrics(OnnxRunner(q).run(x)[0], ref, y)
        row("onnxruntime quantize_static defaults", q.stat().st_size, acc, agree, sq, "-", None)
    except Exception as e:  # noqa: BLE001 - a peer that fails is a result
        rows.append([name, "onnxruntime quantize_static defaults", None, None, None, None, None, None,
                     f"ERROR: {type(e).__name__}: {(str(e).splitlines() or [''])[0][:160]}", None])
    print(f"{name}: export {secs:.1f} s", flush=True)
    keras.backend.clear_session()
    return rows


def litert_quantizer_defaults(fp32_tflite: bytes, calib: np.ndarray) -> bytes:
    """Google's litert-quantizer (ai-edge-quantizer) with its static int8 recipe and default calibration."""
    from ai_edge_litert.interpreter import Interpreter
    from litert_quantizer import quantizer, recipe

    sigs = Interpreter(model_content=fp32_tflite).get_signature_list()
    key = next(iter(sigs))
    name = sigs[key]["inputs"][0]
    qt = quantizer.Quantizer(fp32_tflite, recipe.static_wi8_ai8())
    res = qt.calibrate({key: [{name: calib[i:i + 1]} for i in range(len(calib))]}, num_threads=1)
    return bytes(qt.quantize(res, enable_progress_report=False).quantized_model)


def int8_rows(fx: common.Fixture, args, work: Path) -> list[list]:
    """Table 2b: every int8 quantizer on the same calibration digits, judged on half B (odd indices) of the held-out
    digits; edgeconv's tuned ranges are chosen on half A (even indices), never on B."""
    import keras

    from edgeconv import models
    from edgeconv.console import quiet_native
    from edgeconv.pipeline.trace import trace
    from edgeconv.runtime.runners import LiteRTRunner, OnnxRunner
    from edgeconv.tflite.calibrate import CANDIDATES, calibrate, scores_of
    from edgeconv.tflite.convert import convert_tflite
    from edgeconv.tflite.rewrite import decompose_hard_swish
    from edgeconv.verify.compare import sqnr_db
    from edgeconv.verify.fallback import latency_ms

    name, size = fx.name, fx.size
    n_cal = 32 if args.quick else args.calib
    (xtr, _), (xte, yte) = common.digits_pixels(size)
    pre = models.model_info(name).preprocessing
    xcal = pre.apply(xtr[:n_cal].astype(np.float32))
    xa, xb, yb = pre.apply(xte[0::2].astype(np.float32)), pre.apply(xte[1::2].astype(np.float32)), yte[1::2]
    model = common.build(name, size, fx.width)
    model.load_weights(str(fx.weights))
    ref_a, ref_b = model.predict(xa, verbose=0, batch_size=128), model.predict(xb, verbose=0, batch_size=128)
    float_acc = float(np.mean(ref_b.argmax(1) == yb))
    work.mkdir(parents=True, exist_ok=True)
    with quiet_native():
        sm = trace(model, work / "sm")
        fp32 = convert_tflite(sm, "fp32")
        cal = calibrate(sm, xcal, "int")
    fp32_ms = latency_ms(fp32, xb, runs=50)
    rows = []

    def rewrite(b):  # what the export does to every int8 (h-swish -> XNNPACK-friendly ops)
        r = decompose_hard_swish(b)
        return r.model_bytes if r.rewritten else b

    logits_b = scores_of(fp32, xb)[0]  # the float model's SOFTMAX input (the fp32 file is Keras to ~110 dB)

    def row(variant, b, out, note="", timed=True):
        acc = float(np.mean(out.argmax(1) == yb))
        logits = round(sqnr_db(logits_b, scores_of(b, xb)[0]), 1) if timed else None  # TFLite rows
        rows.append([name, variant, round(len(b) / 1e3, 1), round(100 * acc, 2), round(100 * (float_acc - acc), 2),
                     round(100 * float(np.mean(out.argmax(1) == ref_b.argmax(1))), 2), round(sqnr_db(ref_b, out), 1),
                     logits, round(latency_ms(b, xb, runs=50) / fp32_ms, 2) if timed else None, note])

    row("fp32 TFLite", fp32, LiteRTRunner(fp32).run(xb)[0])
    with quiet_native():
        tfl = common.tf_docs_int8(model, xcal)
    row("TFLiteConverter int8 recipe (TF docs)", tfl, LiteRTRunner(tfl).run(xb)[0])
    default = rewrite(cal.quantize())
    row("edgeconv int8 (default: converter ranges + h-swish rewrite)", default, LiteRTRunner(default).run(xb)[0])
    cle = rewrite(cal.quantize(stats="cle"))
    row("edgeconv int8, cross-layer equalized ('cle')", cle, LiteRTRunner(cle).run(xb)[0])
    scores = {}
    logits_a = scores_of(fp32, xa)[0]
    for s in CANDIDATES:  # tuned on half A, by the logits (the softmax SQNR of ~200 digits is a few digits' noise)
        scores[s] = sqnr_db(logits_a, scores_of(cal.quantize(stats=s), xa)[0])
    best = max(scores, key=scores.get)
    best = best if scores[best] > scores["minmax"] + 0.1 else "minmax"
    tuned = rewrite(cal.quantize(stats=best))
    row(f"edgeconv int8, range policy tuned on half A -> '{best}'", tuned, LiteRTRunner(tuned).run(xb)[0],
        "half-A logits SQNR " + ", ".join(f"{k} {v:.1f}" for k, v in scores.items()))
    try:
        with quiet_native():
            onnx = plain_tf2onnx(model, work / f"{name}_tf2onnx.onnx")
            q = ort_quantize_static_defaults(onnx, xcal, work / f"{name}_ort_int8.onnx")
        row("onnxruntime quantize_static defaults", q.read_bytes(), OnnxRunner(q).run(xb)[0], timed=False)
    except Exception as e:  # noqa: BLE001 - a peer that fails is a result
        rows.append([name, "onnxruntime quantize_static defaults", None, None, None, None, None, None, None,
                     f"ERROR: {type(e).__name__}: {(str(e).splitlines() or [''])[0][:120]}"])
    try:
        with quiet_native():
            lq = litert_quantizer_defaults(fp32, xcal)
        row("litert-quantizer static_wi8_ai8 defaults", lq, LiteRTRunner(lq).run(xb)[0])
    except Exception as e:  # noqa: BLE001
        rows.append([name, "litert-quantizer static_wi8_ai8 defaults", None, None, None, None, None, None, None,
                     f"ERROR: {type(e).__name__}: {(str(e).splitlines() or [''])[0][:120]}"])
    if args.fallback_sqnr is not None:
        from edgeconv.verify.compare import Tolerance
        from edgeconv.verify.fallback import auto_fallback

        tol = Tolerance(min_sqnr=args.fallback_sqnr, min_top1=0.95, max_accuracy_drop=1.0)
        fb = auto_fallback(sm, xcal, xa, [ref_a], tol, labels=yte[0::2], io_type="int", calibrated=cal)
        bought = "; ".join(f"{h['action']}: {h['gain_db']:+.1f} dB" for h in fb.history if h.get("gain_db") is not None)
        row(f"edgeconv int8 --fallback auto, target SQNR {args.fallback_sqnr:g} dB on half A "
            f"({'passed' if fb.passed else 'not reached'}: ranges '{fb.stats}', {len(fb.kept_float)} layer(s) float)",
            fb.model_bytes, LiteRTRunner(fb.model_bytes).run(xb)[0],
            f"kept {', '.join(fb.kept_float) or 'none'}; {bought}; {len(fb.model_bytes) / len(fp32):.2f}x fp32 size")
    print(f"{name}: int8 rows done", flush=True)
    keras.backend.clear_session()
    return rows


def run_fixtures(args, per_fixture, stem: str) -> tuple[list[list], str]:
    """``per_fixture(fx, args, work)`` on every chosen fixture -> (rows, stem); with ``--merge`` the rows of models not
    run now are kept from the existing ``stem`` table."""
    fixtures = [common.QUICK_MODEL] if args.quick else [
        m for m in common.FIXTURE_MODELS if not args.models or m[0] in args.models]
    epochs = common.QUICK_EPOCHS if args.quick else args.epochs
    rows = []
    with tempfile.TemporaryDirectory(prefix="edgeconv-bench-q-") as tmp:
        work = Path(args.work or tmp)
        for name, width in fixtures:
            fx = common.trained_fixture(name, width, args.size, epochs, cache=args.cache,
                                        train_samples=common.QUICK_TRAIN_SAMPLES if args.quick else None)
            rows.extend(per_fixture(fx, args, work / name))
    stem += "_quick" if args.quick else ""
    if args.merge and (args.out / f"{stem}.json").exists():
        import json

        done = {r[0] for r in rows}
        old = [r for r in json.loads((args.out / f"{stem}.json").read_text())["rows"] if r[0] not in done]
        order = [m for m, _ in common.FIXTURE_MODELS]
        rows = sorted(old + rows, key=lambda r: order.index(r[0]) if r[0] in order else len(order))
    return rows, stem


def main_int8(args) -> dict:
    rows, stem = run_fixtures(args, int8_rows, "table2b_int8_quantizers")
    cols = ["model", "quantizer", "KB", "accuracy %", "drop pts", "top-1 agr %", "SQNR dB", "logits SQNR dB",
            "latency / fp32", "note"]
    common.write_results(stem, "Table 2b: int8 quantizers on held-out half B (198 digits), edgeconv's activation "
                         "ranges tuned on half A (199 digits)", cols, rows, command=common.command_line(),
                         out=args.out, notes=[
                             f"{'32' if args.quick else args.calib} calibration digits (training split) for every "
                             "quantizer; accuracy, agreement and SQNR (softmax output vs Keras) on held-out half B",
                             "logits SQNR: the SOFTMAX input against the fp32 file's (TFLite rows), on half B; "
                             "steadier than the softmax SQNR, which a few near-boundary digits dominate",
                             "latency / fp32: LiteRT XNNPACK 1 thread, median of 50, measured side by side in this "
                             "run at the fixture's input size (32x32: fixed per-op costs dominate; see table 4 for "
                             "224x224)"])
    return {"rows": rows}


def main(argv=None) -> dict:
    args = parse(argv)
    if args.int8_only:
        return main_int8(args)
    rows, stem = run_fixtures(args, bench_fixture, "table2_quant_quality")
    cols = ["model", "variant", "KB", "accuracy %", "drop pts", "top-1 agr %", "SQNR dB", "logits SQNR dB",
            "edgeconv verdict", "published ImageNet int8 drop pts"]
    common.write_results(stem, "Table 2: quantization quality on trained fixtures (397 held-out digits)", cols, rows,
                         command=common.command_line(), out=args.out, notes=[
                             f"{'32' if args.quick else args.calib} calibration digits (training split) for every "
                             "quantizer; accuracy and agreement on the held-out digits",
                             "drop pts = Keras float accuracy - artifact accuracy, in percentage points",
                             "SQNR: the softmax output against Keras; logits SQNR: the SOFTMAX input against the "
                             "fp32 file's (reduced-precision TFLite rows), steadier: a softmax SQNR over a few hundred "
                             "digits is dominated by the few near-boundary ones",
                             "onnxruntime quantize_static runs with its defaults (QDQ, per-tensor, MinMax) on the "
                             "fp32 ONNX edgeconv wrote through tf2onnx",
                             "published drops are ImageNet top-1 (int8 post-training, TFLite hosted models): a "
                             "different task, shown for scale only"])
    return {"rows": rows}


if __name__ == "__main__":
    main()
