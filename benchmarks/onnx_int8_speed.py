"""Table 6: ONNX int8 in onnxruntime: edgeconv's quantize_onnx_int8 vs onnxruntime's own quantize_static recipes on
the same fp32 file (edgeconv's convert_onnx), side by side: latency (1 thread, interleaved), ratio vs fp32, logits
SQNR and top-1 agreement vs the Keras model, integer-kernel coverage.

    python3 benchmarks/onnx_int8_speed.py               # MobileNetV3 Small / Large, MobileNetV2 at 224x224
    python3 benchmarks/onnx_int8_speed.py --trained     # + fidelity on the trained digits fixtures (table 2's)
    python3 benchmarks/onnx_int8_speed.py --quick       # one small model at 32x32 (tests/test_benchmarks_quick.py)

224x224 models: keras.applications with random weights and BatchNorm statistics estimated on 64 calibration photos
(what ``edgeconv export <zoo model>`` does without --weights), so activations have realistic scales; fidelity is the
SQNR of the pre-softmax logits (softmax outputs of random weights are near uniform) and the agreement of their
argmax. Calibration: 100 samples of the embedded photo set's calibration split; validation: 100 samples of its
validation split (other photos). Latency: every candidate's onnxruntime session (CPU provider, 1 intra-op and 1
inter-op thread, ORT_ENABLE_ALL) runs once per round in a shuffled order, ``--runs`` rounds, median and p10/p90.
"""
from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path

import common
import numpy as np

from edgeconv.onnx.compat import quiet_logger

MODELS = ["mobilenetv3_small", "mobilenetv3_large", "mobilenet_v2"]
TRAINED = {"mobilenetv3_small": {"alpha": 0.75}, "mobilenetv3_large": {"alpha": 0.75},
           "mobilenet_v2": {"alpha": 0.35}}  # the trained fixtures (benchmarks/common.FIXTURE_MODELS)
BN_SAMPLES = 64

#: recipe label -> how it is made (see ``recipes``)
RECIPES = {
    "edgeconv now": "quantize_onnx_int8: QDQ U8S8 per-channel + pre-process + QDQ rewrites",
    "edgeconv now, float_first_block": "the same with the stem and first inverted-residual block kept float "
                                        "(opt-in)",
    "edgeconv before = ORT QDQ S8S8": "quantize_static QDQ, int8 act (asym) + int8 weights (sym) per-channel, "
                                      "pre-process (edgeconv up to ccd920b)",
    "ORT QDQ U8S8": "quantize_static QDQ, uint8 act + int8 weights per-channel, pre-process",
    "ORT QOperator U8S8": "quantize_static QOperator, uint8 act + int8 weights per-channel, pre-process",
}


def parse(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--models", nargs="*", default=MODELS)
    p.add_argument("--size", type=int, default=224)
    p.add_argument("--runs", type=int, default=60)
    p.add_argument("--warmup", type=int, default=5)
    p.add_argument("--calib", type=int, default=100)
    p.add_argument("--val", type=int, default=100)
    p.add_argument("--trained", action="store_true", help="also measure fidelity on the trained digits fixtures")
    p.add_argument("--epochs", type=int, default=15, help="epochs of the trained fixtures (cached)")
    p.add_argument("--quick", action="store_true")
    p.add_argument("--cache", type=Path, default=common.CACHE)
    p.add_argument("--out", type=Path, default=common.RESULTS)
    return p.parse_args(argv)


# ---------------------------------------------------------------- recipes

def ort_quantize(fp32: bytes, x: np.ndarray, *, fmt: str = "QDQ", act: str = "QUInt8", pre: bool = True) -> bytes:
    """onnxruntime's own quantize_static (MinMax, per-channel int8 weights) after quant_pre_process."""
    import onnx
    from onnxruntime.quantization import (CalibrationDataReader, CalibrationMethod, QuantFormat, QuantType,
                                          quant_pre_process, quantize_static)

    name = onnx.load_from_string(fp32).graph.input[0].name

    class Reader(CalibrationDataReader):
        def __init__(self):
            self.i = 0

        def get_next(self):
            if self.i >= len(x):
                return None
            self.i += 1
            return {name: np.ascontiguousarray(x[self.i - 1:self.i])}

        def rewind(self):
            self.i = 0

    with tempfile.TemporaryDirectory(prefix="bench-ortq-") as tmp, quiet_logger():
        src, p, out = Path(tmp, "fp32.onnx"), Path(tmp, "pre.onnx"), Path(tmp, "q.onnx")
        src.write_bytes(fp32)
        if pre:
            cwd = os.getcwd()
            os.chdir(tmp)
            try:
                quant_pre_process(str(src), str(p), skip_symbolic_shape=False)
                src = p
            finally:
                os.chdir(cwd)
        quantize_static(str(src), str(out), Reader(), quant_format=getattr(QuantFormat, fmt), per_channel=True,
                        activation_type=getattr(QuantType, act), weight_type=QuantType.QInt8,
                        calibrate_method=CalibrationMethod.MinMax,
                        extra_options={"WeightSymmetric": True, "ActivationSymmetric": False})
        return out.read_bytes()


def recipes(fp32: bytes, x: np.ndarray) -> dict[str, tuple[bytes, float]]:
    """-> {label: (model bytes, seconds to quantize)} for every recipe of :data:`RECIPES`."""
    from edgeconv.onnx.quantize import quantize_onnx_int8

    makers = {
        "edgeconv now": lambda: quantize_onnx_int8(fp32, x),
        "edgeconv now, float_first_block": lambda: quantize_onnx_int8(fp32, x, float_first_block=True),
        "edgeconv before = ORT QDQ S8S8": lambda: ort_quantize(fp32, x, act="QInt8"),
        "ORT QDQ U8S8": lambda: ort_quantize(fp32, x),
        "ORT QOperator U8S8": lambda: ort_quantize(fp32, x, fmt="QOperator"),
    }
    out = {}
    for label, make in makers.items():
        t0 = time.perf_counter()
        out[label] = (make(), time.perf_counter() - t0)
    return out


# ---------------------------------------------------------------- measuring

def _session(model: bytes, threads: int = 1):
    import onnxruntime as ort

    so = ort.SessionOptions()
    so.intra_op_num_threads, so.inter_op_num_threads, so.log_severity_level = threads, 1, 3
    return ort.InferenceSession(model, sess_options=so, providers=["CPUExecutionProvider"])


def with_logits(model: bytes) -> tuple[bytes, str]:
    """The model with the input of its last Softmax (the logits) as an extra output; QOperator files have a
    QLinearSoftmax, whose uint8 input is dequantized for that."""
    import onnx
    from onnx import TensorProto, helper

    m = onnx.load_from_string(model)
    sm = [n for n in m.graph.node if n.op_type in ("Softmax", "QLinearSoftmax")]
    if not sm:
        return model, m.graph.output[0].name
    t = sm[-1].input[0]
    if sm[-1].op_type == "QLinearSoftmax":
        m.graph.node.append(helper.make_node("DequantizeLinear", list(sm[-1].input[:3]), ["bench_logits"]))
        t = "bench_logits"
    m.graph.output.append(helper.make_tensor_value_info(t, TensorProto.FLOAT, None))
    return m.SerializeToString(), t


def logits_of(model: bytes, x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """-> (logits, first graph output, i.e. the probabilities) for every input."""
    m, t = with_logits(model)
    s = _session(m, threads=os.cpu_count() or 1)
    name, out = s.get_inputs()[0].name, s.get_outputs()[0].name
    runs = [s.run([t, out], {name: x[i:i + 1]}) for i in range(len(x))]
    return (np.concatenate([r[0].reshape(1, -1) for r in runs]), np.concatenate([r[1].reshape(1, -1) for r in runs]))


def keras_logits(model, x: np.ndarray) -> np.ndarray:
    """Pre-softmax outputs of a keras.applications classifier (last layer: Activation, or Dense with softmax)."""
    import keras

    last = model.layers[-1]
    if isinstance(last, keras.layers.Dense):
        w, b = [np.asarray(v) for v in last.get_weights()]
        feats = keras.Model(model.inputs, last.input).predict(x, verbose=0, batch_size=20)
        return feats.reshape(len(x), -1) @ w + b
    return keras.Model(model.inputs, last.input).predict(x, verbose=0, batch_size=20).reshape(len(x), -1)


def fidelity(model: bytes, x: np.ndarray, ref: np.ndarray, labels=None) -> dict:
    from edgeconv.verify.compare import sqnr_db

    z, p = logits_of(model, x)
    ref_p = np.exp(ref - ref.max(1, keepdims=True))
    ref_p /= ref_p.sum(1, keepdims=True)
    d = {"sqnr_db": sqnr_db(ref, z), "top1_agree": float(np.mean(z.argmax(1) == ref.argmax(1))),
         "probs_sqnr_db": sqnr_db(ref_p, p), "probs_top1_agree": float(np.mean(p.argmax(1) == ref.argmax(1)))}
    if labels is not None:
        d["accuracy"] = float(np.mean(z.argmax(1) == labels))
    return d


def interleaved_latency(models: dict[str, bytes], runs: int, warmup: int, seed: int = 0) -> dict[str, list[float]]:
    """{label: [ms, ...]}: each round runs every session once, in a shuffled order."""
    rng = np.random.default_rng(seed)
    sessions = {}
    for label, b in models.items():
        s = _session(b, threads=1)
        i = s.get_inputs()[0]
        shape = [d if isinstance(d, int) else 1 for d in i.shape]
        sessions[label] = (s, {i.name: rng.uniform(-1, 1, shape).astype(np.float32)})
    for _ in range(warmup):
        for s, feed in sessions.values():
            s.run(None, feed)
    times = {label: [] for label in sessions}
    order = list(sessions)
    for _ in range(runs):
        rng.shuffle(order)
        for label in order:
            s, feed = sessions[label]
            t0 = time.perf_counter()
            s.run(None, feed)
            times[label].append((time.perf_counter() - t0) * 1e3)
    return times


# ---------------------------------------------------------------- models and data

def photos(size: int, n_calib: int, n_val: int):
    from calibration.load import load_samples

    cal = load_samples(None, size=(size, size), num=n_calib, split="calibration", seed=0)
    val = load_samples(None, size=(size, size), num=n_val, split="validation", seed=0)
    return cal.data, val.data


def zoo_model(name: str, size: int, calib_pixels: np.ndarray, width: dict | None = None):
    """keras.applications model (random weights, seed 0) with BN statistics estimated on calibration photos."""
    import keras

    import models
    from models.batchnorm import estimate_batchnorm_statistics

    keras.utils.set_random_seed(0)
    m = models.create_model(name, input_shape=(size, size, 3), **(width or {}))
    pre = models.model_info(name).preprocessing
    estimate_batchnorm_statistics(m, pre.apply(calib_pixels), max_samples=BN_SAMPLES)
    return m, pre


def measure(name: str, keras_model, pre, cal_x: np.ndarray, val_x: np.ndarray, args, labels=None,
            latency: bool = True) -> tuple[list[list], dict]:
    """Rows (and raw data) for one model: fp32 and every recipe."""
    from edgeconv.onnx.convert import convert_onnx
    from edgeconv.onnx.mobile import integer_kernel_coverage

    ref = keras_logits(keras_model, val_x)
    fp32 = convert_onnx(keras_model, verify_inputs=cal_x[:8]).model_bytes
    made = recipes(fp32, cal_x)
    all_models = {"fp32 (edgeconv convert_onnx)": fp32, **{k: b for k, (b, _) in made.items()}}
    times = interleaved_latency(all_models, args.runs, args.warmup) if latency else {}
    base = float(np.median(times["fp32 (edgeconv convert_onnx)"])) if latency else None
    rows, raw = [], {"recipes": {}}
    for label, b in all_models.items():
        fid = fidelity(b, val_x, ref, labels)
        cov = integer_kernel_coverage(b)
        med = p10 = p90 = ratio = paired = None
        if latency:
            t = times[label]
            med, p10, p90 = float(np.median(t)), float(np.percentile(t, 10)), float(np.percentile(t, 90))
            ratio = med / base
            # the same round's fp32 run as the yardstick: contention from other processes changes slowly compared
            # with one round, so per-round ratios are steadier than the ratio of medians on a shared machine
            paired = float(np.median(np.asarray(t) / np.asarray(times["fp32 (edgeconv convert_onnx)"])))
        float_ops = sum(cov["float"].values())
        rows.append([name, label, None if med is None else round(med, 3),
                     None if p10 is None else f"{p10:.2f}-{p90:.2f}", None if ratio is None else round(ratio, 2),
                     None if paired is None else round(paired, 2),
                     round(fid["sqnr_db"], 2), round(100 * fid["top1_agree"], 1), round(fid["probs_sqnr_db"], 2),
                     round(100 * fid["probs_top1_agree"], 1),
                     None if labels is None else round(100 * fid["accuracy"], 1),
                     f"{cov['integer_convs']}/{cov['convs']}", float_ops, cov["quantize"] + cov["dequantize"],
                     round(len(b) / 1e6, 2),
                     None if label not in made else round(made[label][1], 1)])
        raw["recipes"][label] = {"ms": times.get(label), "fidelity": fid, "coverage": {
            k: v for k, v in cov.items() if k != "float_islands"}, "float_islands": len(cov["float_islands"])}
    return rows, raw


COLUMNS = ["model", "recipe", "median ms", "p10-p90 ms", "x fp32", "x fp32 paired", "logits SQNR dB", "top-1 agree %",
           "probs SQNR dB", "probs top-1 agree %", "accuracy %",
           "integer Convs", "float ops", "Q+DQ left", "MB", "quantize s"]


def main(argv=None) -> dict:
    args = parse(argv)
    import keras

    rows, raw = [], {}
    if args.quick:
        args.models, args.size, args.runs, args.warmup, args.calib, args.val = ["mobilenetv3_small"], 32, 10, 2, 16, 8
    cal_pix, val_pix = photos(args.size, args.calib, args.val)
    for name in args.models:
        width = {"alpha": 0.75} if args.quick else {}
        m, pre = zoo_model(name, args.size, cal_pix, width)
        r, d = measure(name, m, pre, pre.apply(cal_pix), pre.apply(val_pix), args)
        rows += r
        raw[name] = d
        keras.backend.clear_session()
        print(common.markdown_table(COLUMNS, r), flush=True)
    trained_rows = []
    if args.trained:
        for name in args.models:
            width = TRAINED.get(name, {})
            fx = common.trained_fixture(name, width, 32, args.epochs, cache=args.cache)
            m = common.build(name, 32, width)
            m.load_weights(fx.weights)
            import models

            pre = models.model_info(name).preprocessing
            (xtr, _), (xte, yte) = common.digits_pixels(32)
            r, d = measure(f"{name} (digits, trained)", m, pre, pre.apply(xtr[:args.calib]), pre.apply(xte), args,
                           labels=yte, latency=False)
            trained_rows += r
            raw[f"{name}_trained"] = d
            keras.backend.clear_session()
            print(common.markdown_table(COLUMNS, r), flush=True)
    stem = "table6_onnx_int8" + ("_quick" if args.quick else "")
    notes = [
        f"{args.runs} interleaved rounds after {args.warmup} warm-up; onnxruntime CPU provider, 1 intra-op + 1 "
        "inter-op thread, ORT_ENABLE_ALL; single image; the machine is shared (2 cores), so compare ratios within a "
        "model, measured in the same run",
        f"{args.size}x{args.size} rows: random weights, BatchNorm statistics estimated on {BN_SAMPLES} calibration "
        f"photos; SQNR and top-1 agreement of the logits (pre-softmax) vs Keras on {args.val} validation-split photos "
        f"(other photos than the {args.calib} calibration samples)",
        "probs: the model's softmax output vs softmax(Keras logits); on random weights it is near uniform, so a "
        "quantized softmax output (step 1/256) loses most of it, and on confident trained outputs a few borderline "
        "inputs dominate its error: read the logits columns first",
        "x fp32 = median / fp32 median; x fp32 paired = median over rounds of (time / the same round's fp32 time)",
        "integer Convs: QLinearConv/ConvInteger nodes in onnxruntime's optimized graph / Conv nodes of the file; "
        "float ops: float arithmetic nodes left in that graph (edgeconv.onnx.mobile.integer_kernel_coverage)",
        "recipes: " + "; ".join(f"{k}: {v}" for k, v in RECIPES.items()),
    ]
    if args.trained:
        notes.append("trained rows: benchmarks/common.py fixtures (digits, 32x32, 15 epochs), calibration on the "
                     "first training digits, SQNR / agreement / accuracy on the 397 held-out digits; no latency")
    common.write_results(stem, f"Table 6: ONNX int8 in onnxruntime at {args.size}x{args.size}, 1 thread",
                         COLUMNS, rows + trained_rows, command=common.command_line(), out=args.out,
                         extra={"raw": raw}, notes=notes)
    return {"rows": rows, "trained_rows": trained_rows, "raw": raw}


if __name__ == "__main__":
    main()
