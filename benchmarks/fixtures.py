"""Table 1: trained fixtures. Small versions of the mobile families (plus ResNet-18) trained on scikit-learn's digits
at a reduced input, BatchNorm momentum 0.9, cached under benchmarks/.cache/, with their float accuracy in inference
mode on the 397 held-out digits.

    python3 benchmarks/fixtures.py                 # every fixture, 32x32, 15 epochs
    python3 benchmarks/fixtures.py --quick         # one tiny model, 1 epoch (what the tests run)
"""
from __future__ import annotations

import argparse
from pathlib import Path

import common


def parse(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--size", type=int, default=32, help="input size (digits are 8x8, upscaled)")
    p.add_argument("--epochs", type=int, default=15)
    p.add_argument("--models", nargs="*", help="subset of the fixture names")
    p.add_argument("--retrain", action="store_true", help="ignore the cache")
    p.add_argument("--quick", action="store_true", help="one tiny model, 1 epoch")
    p.add_argument("--cache", type=Path, default=common.CACHE)
    p.add_argument("--out", type=Path, default=common.RESULTS)
    return p.parse_args(argv)


def fixture_list(args) -> list[tuple[str, dict]]:
    if args.quick:
        return [common.QUICK_MODEL]
    chosen = [m for m in common.FIXTURE_MODELS if not args.models or m[0] in args.models]
    if args.models and len(chosen) != len(args.models):
        raise SystemExit(f"unknown fixture(s); known: {[m[0] for m in common.FIXTURE_MODELS]}")
    return chosen


def main(argv=None) -> dict:
    args = parse(argv)
    epochs = common.QUICK_EPOCHS if args.quick else args.epochs
    rows, fixtures = [], []
    for name, width in fixture_list(args):
        fx = common.trained_fixture(name, width, args.size, epochs, cache=args.cache, retrain=args.retrain,
                                    train_samples=common.QUICK_TRAIN_SAMPLES if args.quick else None)
        fixtures.append(fx)
        rows.append([name, ", ".join(f"{k}={v}" for k, v in width.items()), f"{args.size}x{args.size}",
                     fx.params, epochs, round(fx.train_seconds, 1), round(100 * fx.accuracy, 2),
                     "cache" if fx.cached else "trained now"])
    cols = ["model", "width", "input", "params", "epochs", "train s", "float acc %", "source"]
    common.write_results("table1_fixtures" + ("_quick" if args.quick else ""),
                         "Table 1: trained fixtures (scikit-learn digits, 1,400 train / 397 held-out)", cols, rows,
                         command=common.command_line(), out=args.out,
                         notes=[f"BatchNorm momentum set to {common.BN_MOMENTUM} before training; Adam 2e-3, "
                                f"batch 64; accuracy in inference mode (training=False) on the held-out digits",
                                "train s is the time of the run that produced the cached weights"]
                         + ([f"--quick: only {common.QUICK_TRAIN_SAMPLES} training digits"] if args.quick else []))
    return {"rows": rows, "fixtures": [f.to_dict() for f in fixtures]}


if __name__ == "__main__":
    main()
