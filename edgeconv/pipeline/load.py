"""Load what the user names -> a Keras model plus the metadata the pipeline needs.

Sources: a zoo name, a ``.keras`` file, a legacy ``.h5`` model, a TensorFlow SavedModel folder.

Weights of a zoo model (``weights``): None (the default) means keras.applications' ImageNet weights where the
model has them and the build fits them (1000 classes, a size they exist for), else random weights; when they cannot
be had (no network, not in the Keras cache) the model gets random weights and a note saying why
(:mod:`edgeconv.pipeline.pretrained`). ``"imagenet"`` asks for them (a build they do not fit is a usage error, weights
that cannot be had an error), ``"random"`` for random weights, anything else is a weights file (``.weights.h5`` or
``.keras``) loaded into the zoo model (a file named "imagenet" or "random" is passed as ``./imagenet``).
"""
from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

from edgeconv.errors import EdgeconvError, UsageError, first_line
from edgeconv.fileio import sha256_file
from edgeconv.pipeline.manifest import WeightsRecord


@dataclass
class LoadedModel:
    model: object  # keras.Model
    name: str  # used for artifact names: artifacts/<name>/<name>_<precision>.tflite
    source: str
    source_kind: str  # "zoo" | "keras" | "h5" | "savedmodel"
    preprocessing: object  # models.Preprocessing
    preprocessing_assumed: bool = False  # True when a user model gave no --mean/--std/--scale and we guessed
    zoo: dict | None = None  # the zoo entry (ModelInfo.to_dict()) for zoo models
    build_kwargs: dict = field(default_factory=dict)
    # where the weights came from (a random record has no seed yet: the export adds it) and, for a zoo model that
    # got random weights although it has pretrained ones, one line saying why (the export's warning)
    weights: WeightsRecord = field(default_factory=lambda: WeightsRecord("model_file"))
    weights_note: str | None = None

    @property
    def input_shape(self) -> tuple[int, int, int]:
        return tuple(int(s) for s in self.model.input_shape[1:])


def _quiet_tf() -> None:
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")



def load_keras_file(path: str | os.PathLike):
    """Load a ``.keras`` / ``.h5`` model; the zoo's custom layers are registered first so zoo files reload."""
    _quiet_tf()
    import keras

    from edgeconv import models  # noqa: F401  (registers the zoo's custom layers)

    models.list_models()
    path = Path(path)
    if not path.exists():
        raise EdgeconvError(f"model file not found: {path}")
    import zipfile

    if path.suffix == ".keras" and not zipfile.is_zipfile(path):
        raise EdgeconvError(f"cannot load {path}: not a valid .keras file (a .keras file is a zip archive; "
                            f"this one is damaged or is something else renamed)")
    try:
        return keras.models.load_model(path, compile=False)
    except Exception as e:  # keras raises many types for corrupt / foreign files
        raise EdgeconvError(f"cannot load {path}: {first_line(e)}") from None


def _load_savedmodel(path: Path):
    import keras
    import tensorflow as tf

    try:
        loaded = tf.saved_model.load(str(path))
        fn = loaded.signatures["serving_default"]
    except Exception as e:
        raise EdgeconvError(f"cannot load SavedModel {path}: {first_line(e)}") from None
    specs = list(fn.structured_input_signature[1].values())
    if len(specs) != 1 or specs[0].shape.rank != 4:
        raise EdgeconvError(f"SavedModel {path}: expected one image input (N, H, W, C), got {specs}")
    shape = specs[0].shape.as_list()[1:]
    if any(s is None for s in shape):
        raise UsageError(f"SavedModel {path} has a dynamic input size {shape}; pass --input-size")
    layer = keras.layers.TFSMLayer(str(path), call_endpoint="serving_default", name="savedmodel")
    inp = keras.Input(shape=tuple(shape), batch_size=None, name=specs[0].name or "input")
    out = layer(inp)
    if isinstance(out, dict):
        out = [out[k] for k in sorted(out)]
        out = out[0] if len(out) == 1 else out
    return keras.Model(inp, out, name=path.name)


def _guess_preprocessing(model):
    """User models: a Rescaling layer near the input means raw [0, 255] pixels; otherwise assume [0, 1]."""
    from edgeconv import models

    for layer in model.layers[:4]:
        if type(layer).__name__ == "Rescaling":
            return models.RAW_0_255
    return models.UNIT


def _zoo_model(info, shape: tuple, classes: int | None, width: dict, weights: str | None):
    """Build zoo model ``info`` with the weights asked for (module docstring) -> (model, WeightsRecord, note)."""
    from edgeconv import models
    from edgeconv.pipeline.pretrained import WeightsUnavailable, load_pretrained

    name = info.name
    try:  # argument mistakes are usage errors, found before anything is downloaded
        shape, n_classes = models.check_build(name, shape, classes, **width)
    except ValueError as e:
        raise UsageError(str(e)) from None
    config = info.build_config(shape, n_classes, **width)

    def random_model():
        try:
            return models.create_model(name, input_shape=shape, classes=n_classes, **width)
        except ValueError as e:
            raise UsageError(str(e)) from None

    if weights == "imagenet" or (weights is None and info.pretrained is not None):
        why = info.pretrained_problem(config)
        if weights == "imagenet" and why:
            raise UsageError(f"--weights imagenet: {name}: {why}")
        if weights is None and not why and not info.pretrained.native_size(config):
            why = (f"its ImageNet weights are for {info.pretrained.size_text()} inputs (--weights imagenet loads "
                   f"them into this {shape[0]}x{shape[1]} model anyway)")
        if why:
            return random_model(), WeightsRecord("random", reason=why), f"{name} has random weights: {why}"
        try:
            model, got = load_pretrained(name, shape, n_classes, width)
        except WeightsUnavailable as e:
            if weights == "imagenet":
                raise WeightsUnavailable(f"--weights imagenet: {name}: {e} (copy the file into that folder, or "
                                         f"pass --weights FILE for a local weights file)") from None
            note = (f"{name}: no ImageNet weights: {e}; exporting with random weights (--weights random: the same "
                    f"without this warning; --weights FILE: a local weights file; or copy the file into that folder)")
            return random_model(), WeightsRecord("random", reason=f"ImageNet weights not available: {e}"), note
        note = None
        if not info.pretrained.native_size(config):  # only where keras loads them anyway (MobileNetV3)
            note = (f"{name}: its ImageNet weights are for {info.pretrained.size_text()} inputs; in this "
                    f"{shape[0]}x{shape[1]} model they classify worse than the published figures")
        return model, WeightsRecord(got.dataset, path=got.file, sha256=got.sha256), note

    model = random_model()
    if weights is None:
        return model, WeightsRecord("random", reason="no pretrained weights are published for this model"), None
    if weights == "random":
        return model, WeightsRecord("random", reason="asked for (--weights random)"), None
    wpath = Path(weights)
    if not wpath.exists():
        raise EdgeconvError(f"weights file not found: {wpath}")
    try:
        model.load_weights(str(wpath))
    except Exception as e:
        raise EdgeconvError(f"cannot load weights {wpath} into {name} {shape}: {first_line(e)}") from None
    return model, WeightsRecord("file", path=str(wpath), sha256=sha256_file(wpath) if wpath.is_file() else None), None


def load_model(source: str | os.PathLike, *, weights: str | None = None, input_size: int | tuple | None = None,
               classes: int | None = None, width: dict | None = None, preprocessing=None) -> LoadedModel:
    """Resolve ``source`` into a :class:`LoadedModel`.

    ``input_size`` (int or (H, W)), ``classes`` and ``width`` (the family's width knobs, e.g. ``{"alpha": 0.75}``)
    reach the zoo builder; ``preprocessing`` (a ``models.Preprocessing``) overrides the model's own.
    """
    _quiet_tf()
    from edgeconv import models

    src = str(source)
    path = Path(src)
    width = dict(width or {})
    if models.is_model(src):
        info = models.model_info(src)
        shape = info.input_shape
        if input_size is not None:
            hw = (input_size, input_size) if isinstance(input_size, int) else tuple(input_size)
            shape = (int(hw[0]), int(hw[1]), info.input_shape[2])
        model, record, note = _zoo_model(info, shape, classes, width, None if weights is None else str(weights))
        return LoadedModel(model, src, src, "zoo", preprocessing or info.preprocessing, False, info.to_dict(),
                           {"input_shape": list(shape), "classes": classes or info.classes, **width}, record, note)

    looks_like_path = path.suffix in (".keras", ".h5", ".hdf5") or os.sep in src or path.exists()
    if not looks_like_path:
        raise UsageError(str(models.UnknownModelError(src, models.suggest(src))))
    if not path.exists():
        raise EdgeconvError(f"model file not found: {path}")
    if weights:
        raise UsageError("--weights applies to zoo models; a model file already has its weights")
    if input_size is not None or classes is not None or width:
        raise UsageError("--input-size, --classes and width options only apply to zoo models")
    if path.is_dir():
        if not (path / "saved_model.pb").exists():
            raise EdgeconvError(f"{path} is a folder but not a SavedModel (no saved_model.pb)")
        model, kind = _load_savedmodel(path), "savedmodel"
    elif path.suffix in (".keras", ".h5", ".hdf5"):
        model, kind = load_keras_file(path), ("keras" if path.suffix == ".keras" else "h5")
    else:
        raise UsageError(f"{path}: unknown model format (expected a zoo name, .keras, .h5 or a SavedModel folder)")
    if len(model.inputs) != 1 or len(model.input_shape) != 4:
        raise EdgeconvError(f"{path}: expected one image input (N, H, W, C), got {model.input_shape}")
    if any(s is None for s in model.input_shape[1:]):
        raise EdgeconvError(f"{path}: the model's input size is dynamic {model.input_shape}; "
                            "rebuild it with a fixed height, width and channels")
    assumed = preprocessing is None
    name = path.stem if path.is_file() else path.name
    return LoadedModel(model, name, str(path), kind, preprocessing or _guess_preprocessing(model), assumed)


LUMA_BT601 = (0.299, 0.587, 0.114)  # ITU-R BT.601 luma, what most "to grayscale" code (PIL's "L", OpenCV) uses


def with_rgb_input(loaded: LoadedModel) -> LoadedModel:
    """A 1-channel model behind an RGB input: a fixed 1x1 convolution ``rgb_to_gray`` (BT.601 luma weights, no bias)
    turns RGB into the gray channel the model was trained on. Phone APIs (MediaPipe Tasks refuses 1-channel inputs)
    then feed it camera images; gray images given as R = G = B reach the model unchanged (the weights sum to 1).
    The preprocessing stays the model's: with one mean/std for all channels it commutes with the luma sum."""
    import keras
    import numpy as np

    h, w, c = loaded.input_shape
    if c != 1:
        raise UsageError(f"--rgb-input adds an RGB front end to a 1-channel (grayscale) model; {loaded.name} already "
                         f"takes {c} channels")
    if len(set(loaded.preprocessing.mean)) > 1 or len(set(loaded.preprocessing.std)) > 1:
        raise UsageError("--rgb-input needs one mean and std for all channels")
    inp = keras.Input((h, w, 3), name="image_rgb")
    front = keras.layers.Conv2D(1, 1, use_bias=False, trainable=False, name="rgb_to_gray")
    gray = front(inp)
    front.set_weights([np.asarray(LUMA_BT601, np.float32).reshape(1, 1, 3, 1)])
    out = loaded.model(gray)
    model = keras.Model(inp, out, name=loaded.model.name)
    return LoadedModel(model, loaded.name, loaded.source, loaded.source_kind, loaded.preprocessing,
                       loaded.preprocessing_assumed, loaded.zoo, {**loaded.build_kwargs, "rgb_input": True},
                       loaded.weights, loaded.weights_note)
