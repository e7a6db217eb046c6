"""Test helpers (imported as ``from helpers import ...``; conftest.py holds only fixtures): tiny models *trained* on
scikit-learn's digits (random weights say nothing about quantization), and the on-disk cache of the trained model
that every test process shares."""
from __future__ import annotations

import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import fcntl
import hashlib
import json
import tempfile
from pathlib import Path

import numpy as np

SIZE = 32


def digits_pixels(size: int = SIZE):
    """scikit-learn's 1,797 8x8 digits as RGB pixels in [0, 255] at size x size; train/held-out split (1400/397)."""
    from sklearn.datasets import load_digits

    d = load_digits()
    img = (d.images / 16.0 * 255.0).astype(np.float32)  # (N, 8, 8)
    rep = size // 8
    img = np.kron(img, np.ones((rep, rep), np.float32))  # nearest upscale to size x size
    x = np.repeat(img[..., None], 3, axis=-1)
    y = d.target.astype(np.int64)
    order = np.random.default_rng(0).permutation(len(x))
    x, y = x[order], y[order]
    return (x[:1400], y[:1400]), (x[1400:], y[1400:])


def build_tiny_mnv3(size: int = SIZE, classes: int = 10, hswish: str = "builtin"):
    """A MobileNetV3-style net: Rescaling inside, h-swish, depthwise + ReLU6, squeeze-excite with hard-sigmoid.

    ``hswish``: "builtin" uses Activation("hard_swish"); "tutorial" uses the hand-written forms users write:
    a custom Layer computing x * relu6(x + 3) / 6 and Activation(python_function) for hard-sigmoid.
    """
    import keras
    from keras import layers

    if hswish == "builtin":
        def hs(name):
            return layers.Activation("hard_swish", name=name)

        def hsig(name):
            return layers.Activation("hard_sigmoid", name=name)
    else:
        def hs(name):
            return TutorialHSwish(name=name)

        def hsig(name):
            return layers.Activation(tutorial_hard_sigmoid, name=name)

    bn = dict(momentum=0.9, epsilon=1e-3)
    inp = keras.Input((size, size, 3), name="image")
    x = layers.Rescaling(1 / 255.0, name="rescale")(inp)
    x = layers.Conv2D(16, 3, strides=2, padding="same", use_bias=False, name="stem_conv")(x)
    x = layers.BatchNormalization(name="stem_bn", **bn)(x)
    x = hs("stem_hswish")(x)
    x = layers.DepthwiseConv2D(3, padding="same", use_bias=False, name="b1_dw")(x)
    x = layers.BatchNormalization(name="b1_dw_bn", **bn)(x)
    x = layers.ReLU(6.0, name="b1_relu6")(x)
    s = layers.GlobalAveragePooling2D(keepdims=True, name="b1_se_pool")(x)
    s = layers.Conv2D(8, 1, name="b1_se_reduce")(s)
    s = layers.ReLU(name="b1_se_relu")(s)
    s = layers.Conv2D(16, 1, name="b1_se_expand")(s)
    s = hsig("b1_se_hsigmoid")(s)
    x = layers.Multiply(name="b1_se_mul")([x, s])
    x = layers.Conv2D(24, 1, use_bias=False, name="b1_project")(x)
    x = layers.BatchNormalization(name="b1_project_bn", **bn)(x)
    x = layers.Conv2D(48, 1, use_bias=False, name="b2_expand")(x)
    x = layers.BatchNormalization(name="b2_expand_bn", **bn)(x)
    x = hs("b2_expand_hswish")(x)
    x = layers.DepthwiseConv2D(3, strides=2, padding="same", use_bias=False, name="b2_dw")(x)
    x = layers.BatchNormalization(name="b2_dw_bn", **bn)(x)
    x = hs("b2_dw_hswish")(x)
    x = layers.Conv2D(32, 1, use_bias=False, name="b2_project")(x)
    x = layers.BatchNormalization(name="b2_project_bn", **bn)(x)
    x = layers.GlobalAveragePooling2D(name="pool")(x)
    x = layers.Dense(classes, name="logits")(x)
    out = layers.Activation("softmax", name="probs")(x)
    return keras.Model(inp, out, name="tiny_mnv3")


def _tutorial_classes():
    import keras
    import tensorflow as tf

    @keras.saving.register_keras_serializable(package="edgeconv_tests")
    class TutorialHSwish(keras.layers.Layer):
        """h-swish the way the tutorials write it."""

        def call(self, x):
            return x * tf.nn.relu6(x + 3.0) / 6.0

    @keras.saving.register_keras_serializable(package="edgeconv_tests")
    def tutorial_hard_sigmoid(x):
        return tf.nn.relu6(x + 3.0) / 6.0

    return TutorialHSwish, tutorial_hard_sigmoid


TutorialHSwish, tutorial_hard_sigmoid = _tutorial_classes()


def train(model, epochs: int = 20, seed: int = 0):
    import keras

    keras.utils.set_random_seed(seed)
    (xtr, ytr), (xte, yte) = digits_pixels(model.input_shape[1])
    model.compile(optimizer=keras.optimizers.Adam(3e-3), loss="sparse_categorical_crossentropy",
                  metrics=["accuracy"])
    model.fit(xtr, ytr, batch_size=64, epochs=epochs, verbose=0, shuffle=True)
    acc = float(np.mean(np.argmax(model.predict(xte, verbose=0), 1) == yte))
    return acc


def _cache_dir() -> Path:
    return Path(os.environ.get("EDGECONV_TEST_CACHE") or Path(tempfile.gettempdir()) / "edgeconv-test-cache")


def cached_trained_tiny(epochs: int = 20, seed: int = 0) -> tuple[Path, float]:
    """(path to .keras, held-out float accuracy) of the trained tiny MobileNetV3-style model, trained once per
    machine: the file is keyed by this module's source, the Keras/TF versions and the arguments, and an exclusive
    file lock makes concurrent test processes (pytest-xdist workers) wait for the first one instead of each
    training its own copy."""
    import keras
    import tensorflow as tf

    key = hashlib.sha256(Path(__file__).read_bytes() + f"{keras.__version__} {tf.__version__} {epochs} {seed}"
                         .encode()).hexdigest()[:16]
    folder = _cache_dir()
    folder.mkdir(parents=True, exist_ok=True)
    model_file, info_file = folder / f"tiny_mnv3-{key}.keras", folder / f"tiny_mnv3-{key}.json"
    with open(folder / f"tiny_mnv3-{key}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not (model_file.exists() and info_file.exists()):
            keras.utils.set_random_seed(seed)
            model = build_tiny_mnv3()
            acc = train(model, epochs=epochs, seed=seed)
            tmp = folder / f".tiny_mnv3-{key}.{os.getpid()}.keras"
            model.save(tmp)
            os.replace(tmp, model_file)
            info_file.write_text(json.dumps({"heldout_accuracy": acc}))
    return model_file, float(json.loads(info_file.read_text())["heldout_accuracy"])

