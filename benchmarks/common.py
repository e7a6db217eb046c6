"""Shared helpers of the benchmark scripts: data, trained fixtures (cached), timing, machine facts, table output.

Not part of the library and not part of the unit tests (tests/test_benchmarks_quick.py runs each script's --quick
mode on one tiny model so they cannot rot). Run the scripts from the repository root: ``python3 benchmarks/X.py``.
"""
from __future__ import annotations

import json
import os
import platform
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np

HERE = Path(__file__).resolve().parent
CACHE = HERE / ".cache"
RESULTS = HERE / "results"
if str(HERE.parent) not in sys.path:  # run as `python3 benchmarks/x.py` from anywhere
    sys.path.insert(0, str(HERE.parent))

#: The trained fixtures: the mobile families plus one ResNet, small widths, trained on scikit-learn's digits.
#: (zoo name, width kwargs). Input size and epochs are per run (``Fixture``).
FIXTURE_MODELS: list[tuple[str, dict]] = [
    ("mobilenet_v1", {"alpha": 0.25}),
    ("mobilenet_v2", {"alpha": 0.35}),
    ("mobilenetv3_small", {"alpha": 0.75}),
    ("mobilenetv3_large", {"alpha": 0.75}),
    ("efficientnet_b0", {"width_coefficient": 0.25, "depth_coefficient": 0.25}),
    ("resnet18", {"width_multiplier": 0.25}),
]
QUICK_MODEL = ("mobilenet_v1", {"alpha": 0.25})  # the simplest graph: fastest to train and convert
QUICK_TRAIN_SAMPLES = 256
QUICK_EPOCHS = 1
BN_MOMENTUM = 0.9  # keras.applications' 0.999 has not converged after a few short epochs (shared/FINDINGS.md)

#: Published ImageNet top-1 drops of post-training int8 (TFLite hosted models / the MobileNetV3 paper's table).
PUBLISHED_INT8_DROP = {"mobilenetv3_small": 2.6, "mobilenetv3_large": 1.3, "mobilenet_v2": 1.0}


# ---------------------------------------------------------------- data

def digits_pixels(size: int):
    """scikit-learn's 1,797 8x8 digits as RGB pixels in [0, 255] at size x size (nearest upscale when size is a
    multiple of 8, bilinear otherwise); a fixed train / held-out split (1,400 / 397), as tests/conftest.py."""
    from sklearn.datasets import load_digits

    d = load_digits()
    img = (d.images / 16.0 * 255.0).astype(np.float32)
    if size % 8 == 0:
        rep = size // 8
        img = np.kron(img, np.ones((rep, rep), np.float32))
    else:
        import tensorflow as tf

        img = tf.image.resize(img[..., None], (size, size)).numpy()[..., 0]
    x = np.repeat(img[..., None], 3, axis=-1)
    y = d.target.astype(np.int64)
    order = np.random.default_rng(0).permutation(len(x))
    x, y = x[order], y[order]
    return (x[:1400], y[:1400]), (x[1400:], y[1400:])


def data_files(size: int, folder: Path, n_calib: int | None = None, n_val: int | None = None) -> tuple[Path, Path]:
    """uint8 .npy of training digits (calibration) and .npz (x, y) of held-out digits (validation, with labels)."""
    (xtr, _), (xte, yte) = digits_pixels(size)
    folder.mkdir(parents=True, exist_ok=True)
    cal, val = folder / f"digits{size}_calib.npy", folder / f"digits{size}_heldout.npz"
    np.save(cal, xtr[:n_calib].astype(np.uint8))
    np.savez(val, x=xte[:n_val].astype(np.uint8), y=yte[:n_val])
    return cal, val


# ---------------------------------------------------------------- trained fixtures

@dataclass
class Fixture:
    name: str
    width: dict
    size: int
    epochs: int
    weights: Path
    accuracy: float  # float Keras accuracy on the 397 held-out digits, inference mode
    params: int
    train_seconds: float
    cached: bool = False
    extra: dict = field(default_factory=dict)

    def to_dict(self) -> dict:
        return {"name": self.name, "width": self.width, "size": self.size, "epochs": self.epochs,
                "weights": str(self.weights), "accuracy": self.accuracy, "params": self.params,
                "train_seconds": round(self.train_seconds, 1), "cached": self.cached}


def set_bn_momentum(model, momentum: float = BN_MOMENTUM) -> int:
    """Set every BatchNormalization's momentum (keras.applications builds them with 0.999)."""
    from edgeconv.models.batchnorm import batchnorm_layers

    bns = batchnorm_layers(model)
    for bn in bns:
        bn.momentum = momentum
    return len(bns)


def build(name: str, size: int, width: dict):
    from edgeconv import models

    return models.create_model(name, input_shape=(size, size, 3), classes=10, **width)


def _key(name: str, width: dict, size: int, epochs: int, train_samples: int | None) -> str:
    w = "_".join(f"{k}{v}" for k, v in sorted(width.items()))
    return f"{name}_{w}_{size}px_{epochs}ep" + (f"_{train_samples}n" if train_samples else "")


def trained_fixture(name: str, width: dict, size: int, epochs: int, cache: Path = CACHE, seed: int = 0,
                    retrain: bool = False, train_samples: int | None = None) -> Fixture:
    """Train (or load from ``cache``) a zoo model on digits with the zoo's preprocessing; BN momentum 0.9.
    ``train_samples``: use only the first N training digits (the --quick modes)."""
    import keras

    from edgeconv import models

    cache.mkdir(parents=True, exist_ok=True)
    key = _key(name, width, size, epochs, train_samples)
    wfile, meta = cache / f"{key}.weights.h5", cache / f"{key}.json"
    if wfile.exists() and meta.exists() and not retrain:
        d = json.loads(meta.read_text())
        return Fixture(name, width, size, epochs, wfile, d["accuracy"], d["params"], d["train_seconds"], cached=True)
    # keras.applications builders draw their initial weights from the global seed
    keras.utils.set_random_seed(seed)
    pre = models.model_info(name).preprocessing
    (xtr, ytr), (xte, yte) = digits_pixels(size)
    xtr, ytr = xtr[:train_samples], ytr[:train_samples]
    model = build(name, size, width)
    set_bn_momentum(model)
    model.compile(optimizer=keras.optimizers.Adam(2e-3), loss="sparse_categorical_crossentropy",
                  metrics=["accuracy"])
    t0 = time.perf_counter()
    model.fit(pre.apply(xtr), ytr, batch_size=64, epochs=epochs, verbose=0, shuffle=True)
    secs = time.perf_counter() - t0
    acc = float(np.mean(np.argmax(model.predict(pre.apply(xte), verbose=0, batch_size=128), 1) == yte))
    model.save_weights(wfile)
    meta.write_text(json.dumps({"accuracy": acc, "params": int(model.count_params()), "train_seconds": secs,
                                "width": width, "size": size, "epochs": epochs, "bn_momentum": BN_MOMENTUM}))
    return Fixture(name, width, size, epochs, wfile, acc, int(model.count_params()), secs)


# ---------------------------------------------------------------- timing

def median_p90(ms: list[float]) -> tuple[float, float]:
    return float(np.median(ms)), float(np.percentile(ms, 90))


# ---------------------------------------------------------------- machine and output

def machine() -> dict:
    """CPU model, cores, flags of interest, versions; recorded with every result."""
    from edgeconv.pipeline.manifest import tool_versions

    cpu, flags = platform.processor() or "?", ""
    try:
        out = subprocess.run(["lscpu"], capture_output=True, text=True, timeout=10).stdout
        for line in out.splitlines():
            k, _, v = line.partition(":")
            if k.strip() == "Model name":
                cpu = v.strip()
            if k.strip() == "Flags":
                flags = v
    except (OSError, subprocess.SubprocessError):
        pass
    isa = [f for f in ("avx2", "fma", "avx512f", "avx512_vnni", "avx512_bf16") if f" {f} " in f" {flags} "]
    return {"cpu": cpu, "cores": os.cpu_count(), "isa": isa, "platform": platform.platform(),
            "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()), "versions": tool_versions()}


def _cell(v) -> str:
    if v is None:
        return "-"
    if isinstance(v, float):
        return f"{v:.4g}" if abs(v) < 1e4 else f"{v:.0f}"
    return str(v)


def markdown_table(columns: list[str], rows: list[list]) -> str:
    from edgeconv.console import markdown_table as table

    return table(columns, rows, cell=_cell)


def write_results(stem: str, title: str, columns: list[str], rows: list[list], *, command: str, notes=(),
                  extra: dict | None = None, out: Path | None = None) -> tuple[Path, Path]:
    """Print the table and write ``<out>/<stem>.json`` and ``<out>/<stem>.md`` (out: benchmarks/results)."""
    from edgeconv.console import print_table
    from edgeconv.fileio import atomic_write_json, atomic_write_text

    out = Path(out or RESULTS)
    print_table(title, columns, [[_cell(v) for v in r] for r in rows])
    for n in notes:
        print(f"note: {n}")
    m = machine()
    payload = {"title": title, "command": command, "machine": m, "columns": columns, "rows": rows,
               "notes": list(notes), **(extra or {})}
    j = atomic_write_json(out / f"{stem}.json", payload)
    md = [f"### {title}", "", f"Reproduce: `{command}`", "",
          f"Machine: {m['cpu']}, {m['cores']} cores ({', '.join(m['isa'])}); {m['date']}", "",
          markdown_table(columns, rows)]
    if notes:
        md += [""] + [f"- {n}" for n in notes]
    k = atomic_write_text(out / f"{stem}.md", "\n".join(md) + "\n")
    return j, k


def command_line() -> str:
    return "python3 " + " ".join([os.path.relpath(sys.argv[0], HERE.parent), *sys.argv[1:]])


def tf_docs_int8(model, calib: np.ndarray) -> bytes:
    """The full-integer recipe of https://www.tensorflow.org/lite/performance/post_training_integer_quant ."""
    import tensorflow as tf

    def representative_dataset():
        for i in range(len(calib)):
            yield [calib[i:i + 1]]

    converter = tf.lite.TFLiteConverter.from_keras_model(model)
    converter.optimizations = [tf.lite.Optimize.DEFAULT]
    converter.representative_dataset = representative_dataset
    converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
    converter.inference_input_type = tf.int8
    converter.inference_output_type = tf.int8
    return converter.convert()
