"""Table 4: latency and size of every artifact of mobilenetv3_small, mobilenetv3_large and mobilenet_v2 at 224x224
on this CPU with 1 and 2 threads (``edgeconv bench``), and a roofline view: measured time vs the time the model's
MACs would take at the CPU's peak fp32 FMA rate.

    python3 benchmarks/latency.py                 # the three models, every precision, 1 and 2 threads
    python3 benchmarks/latency.py --quick         # one tiny model at 32x32, fp32 + int8 + onnx
"""
from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

import common
from edgeconv.options import ValidationOptions

MODELS = ["mobilenetv3_small", "mobilenetv3_large", "mobilenet_v2"]
#: fp32 FMAs per cycle per core: Zen 3/4 (this EPYC) and most AVX2 server cores have two 256-bit FMA pipes
#: (AVX-512 on Zen 4 is double-pumped over the same pipes) = 2 x 8 lanes.
FMA_PER_CYCLE = 16


def parse(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--models", nargs="*", default=MODELS)
    p.add_argument("--size", type=int, default=224)
    p.add_argument("--threads", type=int, nargs="*", default=[1, 2])
    p.add_argument("--runs", type=int, default=50)
    p.add_argument("--warmup", type=int, default=5)
    p.add_argument("--quick", action="store_true")
    p.add_argument("--out", type=Path, default=common.RESULTS)
    p.add_argument("--work", type=Path, help="keep the export folders here (default: a temp folder)")
    return p.parse_args(argv)


def count_macs(model) -> int:
    """Multiply-accumulates of one image through Conv2D / DepthwiseConv2D / Dense layers (the ~99% that matters)."""
    import keras

    from edgeconv.models.batchnorm import _all_layers

    macs = 0
    for layer in _all_layers(model):
        if isinstance(layer, keras.layers.DepthwiseConv2D):
            _, h, w, c = layer.output.shape
            kh, kw = layer.kernel_size
            macs += h * w * c * kh * kw
        elif isinstance(layer, keras.layers.Conv2D):
            _, h, w, c = layer.output.shape
            kh, kw = layer.kernel_size
            cin = layer.input.shape[-1] // layer.groups
            macs += h * w * c * kh * kw * cin
        elif isinstance(layer, keras.layers.Dense):
            macs += int(layer.input.shape[-1]) * layer.units
    return int(macs)


def cpu_hz() -> float:
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("cpu MHz"):
            return float(line.split(":")[1]) * 1e6
    return 2.5e9


def roofline_plot(points: list[dict], peak_macs_per_s: float, path: Path) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    fig, ax = plt.subplots(figsize=(7, 4.5))
    xs = np.logspace(np.log10(min(p["macs"] for p in points) / 2), np.log10(max(p["macs"] for p in points) * 2), 20)
    for t, style in ((1, "-"), (2, "--")):
        ax.plot(xs / 1e6, xs / (peak_macs_per_s * t) * 1e3, "k" + style, lw=1, label=f"fp32 peak, {t} thread(s)")
    for p in points:
        ax.scatter(p["macs"] / 1e6, p["ms"], marker="o" if p["threads"] == 1 else "^", s=22)
        ax.annotate(f"{p['label']}", (p["macs"] / 1e6, p["ms"]), fontsize=6, xytext=(3, 2),
                    textcoords="offset points")
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel("MMACs per image")
    ax.set_ylabel("median latency, ms (batch 1)")
    ax.set_title("measured latency vs MACs at the CPU's peak (o: 1 thread, ^: 2 threads)")
    ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path


def run_bench(folder: Path, threads: int, args):
    """`edgeconv bench --json` in a fresh process (so TensorFlow's thread count for the Keras reference really is
    ``threads``); in this process for --quick."""
    import json
    import subprocess
    import sys

    from edgeconv.runtime.bench import BenchReport, BenchRow, bench

    if args.quick:
        return bench(folder, threads=threads, runs=args.runs, warmup=args.warmup)
    p = subprocess.run([sys.executable, "-m", "edgeconv", "bench", str(folder), "--threads", str(threads),
                        "--runs", str(args.runs), "--warmup", str(args.warmup), "--json"],
                       capture_output=True, text=True)
    if p.returncode != 0:  # say what edgeconv bench said, not only its exit status
        tail = [line for line in p.stderr.splitlines() + p.stdout.splitlines() if line.strip()][-5:]
        raise SystemExit(f"edgeconv bench {folder} --threads {threads} exited {p.returncode}:\n" + "\n".join(tail))
    d = json.loads(p.stdout[p.stdout.index("{"):])
    fields = set(BenchRow.__dataclass_fields__)
    rows = [BenchRow(**{k: (float(v) if k == "sqnr_db" and isinstance(v, str) else v) for k, v in r.items()
                        if k in fields}) for r in d["rows"]]
    return BenchReport(Path(d["folder"]), d["model"], d["input_shape"], d["threads"], d["runs"], d["warmup"], rows,
                       d["quality_source"], d["notes"])


def main(argv=None) -> dict:
    args = parse(argv)
    from edgeconv.pipeline.export import export
    from edgeconv.precisions import ALL_KEYS

    if args.quick:
        name, width = common.QUICK_MODEL
        todo, args.size, args.threads, args.runs, args.warmup = [(name, width)], 32, [1], 10, 2
        precisions, vopts, calib = ["int8", "onnx"], ValidationOptions(samples=16), 16
    else:
        todo, precisions, vopts, calib = [(m, {}) for m in args.models], list(ALL_KEYS), ValidationOptions(samples=50), 100
    peak = cpu_hz() * FMA_PER_CYCLE  # MAC/s per core
    rows, points, reports = [], [], []
    with tempfile.TemporaryDirectory(prefix="edgeconv-bench-l-") as tmp:
        work = Path(args.work or tmp)
        for name, width in todo:
            res = export(name, precisions=precisions, out_dir=work, input_size=args.size, width=width,
                         weights="random", calib_samples=calib, validation=vopts, quiet=True)
            import keras

            from edgeconv.pipeline.load import load_keras_file

            macs = count_macs(load_keras_file(res.out_dir / f"{res.name}.keras"))
            keras.backend.clear_session()
            for t in args.threads:
                rep = run_bench(res.out_dir, t, args)
                reports.append(rep.to_dict())
                for r in rep.rows:
                    bound_ms = macs / (peak * t) * 1e3
                    eff = None if not r.median_ms else 100 * bound_ms / r.median_ms
                    rows.append([name, r.file, r.runtime, t, round(r.mb, 3), r.status,
                                 None if r.median_ms is None else round(r.median_ms, 2),
                                 None if r.p90_ms is None else round(r.p90_ms, 2),
                                 None if r.speedup is None else round(r.speedup, 1),
                                 round(macs / 1e6, 1), round(bound_ms, 3), None if eff is None else round(eff, 1)])
                    if r.median_ms and r.format != "keras":
                        points.append({"macs": macs, "ms": r.median_ms, "threads": t,
                                       "label": f"{name.replace('mobilenet', 'mn')} {r.precision}"
                                                f"{'/ort' if r.format == 'onnx' else ''}"})
    stem = "table4_latency" + ("_quick" if args.quick else "")
    args.out.mkdir(parents=True, exist_ok=True)
    fig = roofline_plot(points, peak, args.out / f"{stem}_roofline.png") if points else None
    cols = ["model", "artifact", "runtime", "threads", "MB", "status", "median ms", "p90 ms", "speed-up vs Keras",
            "MMACs", "peak-bound ms", "% of fp32 peak"]
    common.write_results(stem, f"Table 4: latency and size at {args.size}x{args.size}, batch 1", cols, rows,
                         command=common.command_line(), out=args.out,
                         extra={"peak_macs_per_s_per_core": peak, "reports": reports,
                                "figure": None if fig is None else fig.name}, notes=[
                             f"{args.runs} timed runs after {args.warmup} warm-up, single image; LiteRT with its "
                             "default XNNPACK delegate, onnxruntime CPU provider; Keras = the model called inside "
                             "a tf.function",
                             "random weights (latency does not depend on them): quantized artifacts are NOT JUDGED "
                             "by validation, as expected",
                             f"peak-bound ms = MACs / (threads x {cpu_hz() / 1e9:.2f} GHz x {FMA_PER_CYCLE} fp32 "
                             "FMA/cycle); MACs of Conv2D/DepthwiseConv2D/Dense layers. int8 kernels could in "
                             "principle exceed the fp32 peak",
                             f"roofline figure: {None if fig is None else fig.name}"])
    return {"rows": rows, "reports": reports, "figure": fig}


if __name__ == "__main__":
    main()
