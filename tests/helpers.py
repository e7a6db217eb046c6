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


def build_tiny_mnv3(size: int = SIZE, classes: int = 10, hswish: str = "builtin", custom=None):
    """A MobileNetV3-style net: Rescaling inside, h-swish, depthwise + ReLU6, squeeze-excite with hard-sigmoid.

    ``hswish``: "builtin" uses Activation("hard_swish"); "tutorial" uses the hand-written forms users write:
    a custom Layer computing x * relu6(x + 3) / 6 and Activation(python_function) for hard-sigmoid. "custom" takes
    them from the user's own module ``custom`` (``HSwish``, ``hsigmoid``, registered nowhere) and writes the
    squeeze-excite multiply as a Lambda layer. All variants compute the same function with the same weights.
    """
    import keras
    from keras import layers

    if hswish == "builtin":
        def hs(name):
            return layers.Activation("hard_swish", name=name)

        def hsig(name):
            return layers.Activation("hard_sigmoid", name=name)
    elif hswish == "custom":
        def hs(name):
            return custom.HSwish(name=name)

        def hsig(name):
            return layers.Activation(custom.hsigmoid, name=name)
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
    if hswish == "custom":
        x = layers.Lambda(lambda ts: ts[0] * ts[1], name="b1_se_mul")([x, s])
    else:
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
    machine: the file is keyed by the source of the functions that make it, the Keras/TF versions and the arguments,
    and an exclusive file lock makes concurrent test processes (pytest-xdist workers) wait for the first one instead
    of each training its own copy."""
    def make():
        model, acc = _train_new(build_tiny_mnv3, train, epochs, seed)
        return model, {"heldout_accuracy": acc}

    path, info = _cached("tiny_mnv3", (digits_pixels, build_tiny_mnv3, train), make, f"{epochs} {seed}")
    return path, float(info["heldout_accuracy"])


# The h-swish of the tutorials as a user's own module: a plain Layer and a plain function, registered nowhere
# (tests/test_custom_objects.py, tests/test_user_models.py).
USER_LAYERS = '''"""h-swish as the tutorials write it: a plain Layer and a plain function, registered nowhere."""
import math

import keras
from keras import layers, ops
from keras.layers import Layer  # Keras' own: not a custom object


class HSwish(layers.Layer):
    def call(self, x):
        return x * ops.relu6(x + 3.0) / 6.0


def hsigmoid(x):
    return ops.relu6(x + 3.0) / 6.0


SCALE = math.pi  # neither a layer nor a function
'''


def stroke_stats(size: int = SIZE):
    """What the strokes of each digit look like, as 4 standardized numbers: mean ink, the ink's centroid (row,
    column) and its spread (radius of gyration), for the train / held-out split of :func:`digits_pixels`: a
    regression target that depends on the image (the strokes' bounding box is nearly constant on these digits)."""
    out = []
    r, c = np.meshgrid(np.arange(size) + 0.5, np.arange(size) + 0.5, indexing="ij")
    for x, _ in digits_pixels(size):
        ink = x[..., 0] / 255.0
        mass = ink.sum(axis=(1, 2)) + 1e-6
        cy, cx = (ink * r).sum(axis=(1, 2)) / mass, (ink * c).sum(axis=(1, 2)) / mass
        spread = np.sqrt((ink * ((r - cy[:, None, None]) ** 2 + (c - cx[:, None, None]) ** 2)).sum(axis=(1, 2)) / mass)
        out.append(np.stack([ink.mean(axis=(1, 2)), cy / size, cx / size, spread / size], 1))
    mean, std = out[0].mean(axis=0), out[0].std(axis=0)  # standardized on the training split: about -3..3
    return tuple(((o - mean) / std).astype(np.float32) for o in out)


def build_two_head(size: int = SIZE):
    """A small CNN with two heads on one trunk: ``digit`` (softmax over 10 classes) and ``blob`` (the 4 numbers of
    :func:`stroke_stats`, linear), in that order; their names sort the other way round."""
    import keras
    from keras import layers

    inp = keras.Input((size, size, 3), name="image")
    x = layers.Rescaling(1 / 255.0, name="rescale")(inp)
    x = layers.Conv2D(16, 3, strides=2, padding="same", activation="relu", name="conv1")(x)
    x = layers.Conv2D(32, 3, strides=2, padding="same", activation="relu", name="conv2")(x)
    x = layers.Conv2D(32, 3, padding="same", activation="relu", name="conv3")(x)
    f = layers.Flatten(name="flatten")(layers.MaxPooling2D(2, name="pool")(x))
    h = layers.Dense(64, activation="relu", name="fc")(f)
    digit = layers.Dense(10, activation="softmax", name="digit")(h)
    blob = layers.Dense(4, name="blob")(h)
    return keras.Model(inp, [digit, blob], name="two_head")


def train_two_head(model, epochs: int = 12, seed: int = 0) -> dict:
    import keras

    keras.utils.set_random_seed(seed)
    size = model.input_shape[1]
    (xtr, ytr), (xte, yte) = digits_pixels(size)
    str_, ste = stroke_stats(size)
    model.compile(optimizer=keras.optimizers.Adam(3e-3), loss=["sparse_categorical_crossentropy", "mse"],
                  loss_weights=[1.0, 0.5])
    model.fit(xtr, [ytr, str_], batch_size=64, epochs=epochs, verbose=0, shuffle=True)
    probs, stats = model.predict(xte, verbose=0)
    return {"heldout_accuracy": float(np.mean(np.argmax(probs, 1) == yte)),
            "blob_mae": float(np.mean(np.abs(stats - ste))), "blob_std": float(np.mean(np.std(ste, 0)))}


def cached_two_head(epochs: int = 12, seed: int = 0) -> tuple[Path, dict]:
    """(path to .keras, held-out figures) of the trained two-head digits model (:func:`build_two_head`), trained
    once per machine and cached like :func:`cached_trained_tiny`."""
    return _cached("two_head", (digits_pixels, stroke_stats, build_two_head, train_two_head),
                   lambda: _train_new(build_two_head, train_two_head, epochs, seed), f"{epochs} {seed}")


def _train_new(build, train_fn, epochs: int, seed: int):
    import keras

    keras.utils.set_random_seed(seed)
    model = build()
    return model, train_fn(model, epochs=epochs, seed=seed)


def _cached(stem: str, functions, make, args: str) -> tuple[Path, dict]:
    """One trained model per machine: keyed by the source of ``functions``, the Keras/TF versions and ``args``;
    an exclusive file lock makes concurrent test processes wait for the first one."""
    import inspect

    import keras
    import tensorflow as tf

    code = "".join(inspect.getsource(f) for f in functions)
    key = hashlib.sha256(f"{code} {keras.__version__} {tf.__version__} {args}".encode()).hexdigest()[:16]
    folder = _cache_dir()
    folder.mkdir(parents=True, exist_ok=True)
    model_file, info_file = folder / f"{stem}-{key}.keras", folder / f"{stem}-{key}.json"
    with open(folder / f"{stem}-{key}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not (model_file.exists() and info_file.exists()):
            model, info = make()
            tmp = folder / f".{stem}-{key}.{os.getpid()}.keras"
            model.save(tmp)
            os.replace(tmp, model_file)
            info_file.write_text(json.dumps(info))
    return model_file, json.loads(info_file.read_text())
