"""Load what the user names -> a Keras model plus the metadata the pipeline needs.

Sources: a zoo name, a ``.keras`` file, a legacy ``.h5`` model, a TensorFlow SavedModel folder.

Weights of a zoo model (``weights``): None (the default) means keras.applications' ImageNet weights where the
model has them and the build fits them (1000 classes, a size they exist for), else random weights; when they cannot
be had (no network, not in the Keras cache) the model gets random weights and a note saying why
(:mod:`edgeconv.pipeline.pretrained`). ``"imagenet"`` asks for them (a build they do not fit is a usage error, weights
that cannot be had an error), ``"random"`` for random weights, anything else is a weights file (``.weights.h5`` or
``.keras``) loaded into the zoo model (a file named "imagenet" or "random" is passed as ``./imagenet``).

User models as they come (issue #17):
- custom Layers / functions that are not registered with Keras: ``custom_objects`` (``--custom-objects FILE.py``) are
  imported first (:mod:`edgeconv.pipeline.custom_objects`); a load that fails on a missing class names it and says
  which option fixes it;
- Lambda layers holding Python code: loaded only with ``unsafe_deserialization`` (Keras' safe mode off), with a
  warning that this runs code from the model file;
- an open input size (``keras.Input((None, None, 3))``): ``input_size`` fixes it. The model is rebuilt from its own
  config with that input shape and the same weights (checked to give the same outputs), so the trace, the
  calibration and validation images, the saved Keras reference and the manifest all use one fixed size.
"""
from __future__ import annotations

import dataclasses
import os
import re
from dataclasses import dataclass, field
from pathlib import Path

from edgeconv.errors import EdgeconvError, UsageError, first_line
from edgeconv.pipeline.custom_objects import (CustomObjects, describe_missing, import_custom_objects,
                                              missing_objects, python_lambdas, read_model_config, shadowed_builtins)
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
    custom_objects: CustomObjects | None = None  # what --custom-objects imported (recorded in the manifest)
    open_input_shape: tuple | None = None  # the model's own (H, W, C) with None dims, when input_size fixed them
    warnings: list[str] = field(default_factory=list)  # one line each, for the user (e.g. unsafe deserialization)
    # where the weights came from (a random record has no seed yet: the export adds it) and, for a zoo model that
    # got random weights although it has pretrained ones, one line saying why (the export's warning)
    weights: WeightsRecord = field(default_factory=lambda: WeightsRecord("model_file"))
    weights_note: str | None = None

    @property
    def input_shape(self) -> tuple[int, int, int]:
        """The fixed (H, W, C) everything is traced, calibrated and validated at."""
        return tuple(int(s) for s in self.model.input_shape[1:])


def _quiet_tf() -> None:
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")



def unsafe_warning(path: Path, lambdas: list[str]) -> str:
    """The one-line warning of ``--unsafe-deserialization``."""
    if not lambdas:
        return (f"--unsafe-deserialization: Keras' safe mode was off while loading {path.name}, which has no Python "
                f"lambda: the flag is not needed for it")
    return (f"--unsafe-deserialization: loading {path.name} ran Python code stored in the model file (Lambda "
            f"layer{'s' if len(lambdas) > 1 else ''} {', '.join(lambdas)}); use it only with model files you trust")


def _load_failure(path: Path, e: Exception, config, custom: CustomObjects | None, unsafe: bool,
                  hint: str | None) -> str:
    """One line that says why ``path`` did not load and what to pass: the missing classes by name, the Lambda opt-in,
    or Keras' own first line."""
    missing = missing_objects(config, custom)
    named = {m[0] for m in missing}
    for kind, name in re.findall(r"Could not locate (class|function) '([^']+)'", str(e)):
        if name not in named:  # what Keras says it could not find, in case the config walk missed it
            missing.append((name, kind, None))
            named.add(name)
    if missing:
        one = len(missing) == 1
        by = f"Keras or by {custom.describe()}" if custom else "Keras"
        return (f"cannot load {path.name}: it uses {describe_missing(missing)}, which {'is' if one else 'are'} not "
                f"defined by {by}: pass --custom-objects FILE.py that defines {'it' if one else 'them'}"
                + (f" ({hint})" if hint else ""))
    lambdas = python_lambdas(config)
    if not unsafe and (lambdas or ("Lambda" in str(e) and "safe_mode" in str(e))):
        which = ("Lambda layers" if len(lambdas) != 1 else "Lambda layer") + (f" {', '.join(lambdas)}" if lambdas
                                                                               else "")
        return (f"cannot load {path.name}: its {which} {'holds' if len(lambdas) == 1 else 'hold'} Python code, "
                f"which Keras does not run by default: pass --unsafe-deserialization to allow it (it runs code "
                f"from the model file; only for files you trust)")
    return f"cannot load {path.name}: {first_line(e)}"


def load_keras_model(path: str | os.PathLike, *, custom_objects: CustomObjects | None = None,
                     unsafe_deserialization: bool = False, hint: str | None = None) -> tuple[object, list[str]]:
    """Load a ``.keras`` / ``.h5`` model -> (model, warnings). The zoo's custom layers are registered first so zoo
    files reload; ``custom_objects`` (from :func:`~edgeconv.pipeline.custom_objects.import_custom_objects`) reach
    Keras' deserialization; ``unsafe_deserialization`` turns Keras' safe mode off (Lambda layers). ``hint`` is added
    to a missing-class error (validate: why the export's custom objects could not be reused)."""
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
    config = read_model_config(path)
    try:
        model = keras.models.load_model(path, compile=False, safe_mode=not unsafe_deserialization,
                                        custom_objects=dict(custom_objects.objects) if custom_objects else None)
    except Exception as e:  # keras raises many types for corrupt / foreign files
        raise EdgeconvError(_load_failure(path, e, config, custom_objects, unsafe_deserialization, hint)) from None
    warnings = [unsafe_warning(path, python_lambdas(config))] if unsafe_deserialization else []
    shadowed = shadowed_builtins(config, custom_objects)
    if shadowed:
        warnings.append(f"{custom_objects.describe()} defines {', '.join(shadowed)}, but {path.name} stores "
                        f"{'it' if len(shadowed) == 1 else 'them'} by name only, the name of a Keras built-in "
                        f"activation: Keras loads its own keras.activations.{shadowed[0]}, not yours (if they differ, "
                        f"rename the function and save the model again)")
    return model, warnings


def load_keras_file(path: str | os.PathLike, **kwargs):
    """:func:`load_keras_model` without the warnings: just the Keras model."""
    return load_keras_model(path, **kwargs)[0]


def _size(input_size) -> tuple[int, int] | None:
    if input_size is None:
        return None
    return (int(input_size), int(input_size)) if isinstance(input_size, int) else tuple(int(v) for v in input_size)


def _fixed_shape(name: str, own: tuple, input_size) -> tuple[int, int, int]:
    """The (H, W, C) to export a user model at: its own, with ``input_size`` filling open dimensions. A fixed size
    that ``input_size`` contradicts, or an open size without ``input_size``, is a usage error."""
    hw = _size(input_size)
    fmt = "x".join("?" if s is None else str(s) for s in own[:2])
    if own[2] is None:
        raise EdgeconvError(f"{name}: the model's channel count is open {tuple(own)}; rebuild it with a fixed number "
                            f"of channels (e.g. keras.Input((None, None, 3)))")
    if hw is None:
        if any(s is None for s in own[:2]):
            raise UsageError(f"{name}: the model's input size is open ({fmt}x{own[2]}): pass --input-size H or HxW "
                             f"to export it at a fixed size")
        return tuple(int(s) for s in own)
    for have, want in zip(own[:2], hw):
        if have is not None and have != want:
            raise UsageError(f"{name}: the model's input size is fixed at {fmt}, --input-size {hw[0]}x{hw[1]} "
                             f"differs (only a model built with an open size, keras.Input((None, None, "
                             f"{own[2]})), can be exported at another size)")
    return int(hw[0]), int(hw[1]), int(own[2])


def with_input_shape(model, shape: tuple[int, int, int], custom_objects: CustomObjects | None = None,
                     unsafe_deserialization: bool = False):
    """``model`` (Functional or Sequential) rebuilt from its own config with input (H, W, C) = ``shape`` and the same
    weights. Checked: on a seeded input both give the same outputs (else the user's get_config() loses something)."""
    import keras
    import numpy as np

    cfg = keras.saving.serialize_keras_object(model)
    inner = cfg.get("config") or {}
    layers = inner.get("layers") or []
    wanted = inner.get("input_layers")
    if wanted and isinstance(wanted[0], str):  # one input: [name, node, tensor]
        wanted = [wanted]
    names = {w[0] for w in wanted or []}
    sequential = cfg.get("class_name") == "Sequential"
    patched = 0
    for i, layer in enumerate(layers):
        if layer.get("class_name") == "InputLayer" and (layer.get("config", {}).get("name") in names
                                                         or (sequential and i == 0)):
            batch = (layer["config"].get("batch_shape") or [None])[0]
            layer["config"]["batch_shape"] = [batch, *shape]
            patched += 1
    if not patched:
        raise EdgeconvError(f"cannot fix the input size of {model.name} ({type(model).__name__}): only Functional and "
                            f"Sequential models can be rebuilt at --input-size; build it on keras.Input({shape})")
    for holder, key in ((cfg.get("build_config") or {}, "input_shape"), (inner, "build_input_shape")):
        if holder.get(key) is not None:
            holder[key] = [holder[key][0], *shape]
    try:
        new = keras.saving.deserialize_keras_object(
            cfg, custom_objects=dict(custom_objects.objects) if custom_objects else None,
            safe_mode=not unsafe_deserialization)
        new.set_weights(model.get_weights())
    except Exception as e:  # noqa: BLE001 - the user's layers decide what from_config accepts
        raise EdgeconvError(f"cannot rebuild {model.name} at input size {shape[0]}x{shape[1]}: "
                            f"{type(e).__name__}: {first_line(e)}") from None
    x = np.random.default_rng(0).uniform(0, 1, (2, *shape)).astype(np.float32)
    a, b = model(x, training=False), new(x, training=False)
    a, b = (list(v) if isinstance(v, (list, tuple)) else [v] for v in (a, b))
    diff = max(float(np.max(np.abs(np.asarray(p) - np.asarray(q)))) for p, q in zip(a, b))
    if not diff <= 1e-6 * max(1.0, max(float(np.max(np.abs(np.asarray(p)))) for p in a)):
        raise EdgeconvError(f"{model.name} rebuilt at input size {shape[0]}x{shape[1]} computes something else "
                            f"(max difference {diff:.3g}): a custom layer's get_config() leaves something out")
    return new


def _load_savedmodel(path: Path, input_size=None):
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
    own = tuple(specs[0].shape.as_list()[1:])
    shape = _fixed_shape(f"SavedModel {path.name}", own, input_size)
    layer = keras.layers.TFSMLayer(str(path), call_endpoint="serving_default", name="savedmodel")
    inp = keras.Input(shape=tuple(shape), batch_size=None, name=specs[0].name or "input")
    out = layer(inp)
    if isinstance(out, dict):
        out = [out[k] for k in sorted(out)]
        out = out[0] if len(out) == 1 else out
    return keras.Model(inp, out, name=path.name), (own if own != shape else None)


def _first_layers(model, n: int = 4) -> list:
    """The first ``n`` layers, looking inside a nested model that comes first (a transfer-learning model's
    keras.applications backbone keeps its Rescaling inside)."""
    out = []
    for layer in getattr(model, "layers", [])[:n]:
        out.append(layer)
        if getattr(layer, "layers", None):
            out += _first_layers(layer, n)
    return out


def _guess_preprocessing(model):
    """User models: a Rescaling layer near the input means raw [0, 255] pixels; otherwise assume [0, 1]."""
    from edgeconv import models

    for layer in _first_layers(model):
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
               classes: int | None = None, width: dict | None = None, preprocessing=None,
               custom_objects=(), unsafe_deserialization: bool = False) -> LoadedModel:
    """Resolve ``source`` into a :class:`LoadedModel`.

    ``input_size`` (int or (H, W)), ``classes`` and ``width`` (the family's width knobs, e.g. ``{"alpha": 0.75}``)
    reach the zoo builder; ``preprocessing`` (a ``models.Preprocessing``) overrides the model's own. For model files,
    ``input_size`` fixes an open input size; ``custom_objects`` (``.py`` paths or module names, or a
    :class:`CustomObjects`) are imported and given to Keras; ``unsafe_deserialization`` allows Lambda layers.
    """
    _quiet_tf()
    from edgeconv import models

    src = str(source)
    path = Path(src)
    width = dict(width or {})
    if models.is_model(src):
        if custom_objects or unsafe_deserialization:
            raise UsageError("--custom-objects and --unsafe-deserialization apply to model files (.keras, .h5), "
                             "not zoo models")
        info = models.model_info(src)
        shape = info.input_shape
        if input_size is not None:
            hw = (input_size, input_size) if isinstance(input_size, int) else tuple(input_size)
            shape = (int(hw[0]), int(hw[1]), info.input_shape[2])
        model, record, note = _zoo_model(info, shape, classes, width, None if weights is None else str(weights))
        return LoadedModel(model, src, src, "zoo", preprocessing or info.preprocessing, False, info.to_dict(),
                           {"input_shape": list(shape), "classes": classes or info.classes, **width},
                           weights=record, weights_note=note)

    looks_like_path = path.suffix in (".keras", ".h5", ".hdf5") or os.sep in src or path.exists()
    if not looks_like_path:
        raise UsageError(str(models.UnknownModelError(src, models.suggest(src))))
    if not path.exists():
        raise EdgeconvError(f"model file not found: {path}")
    if weights:
        raise UsageError("--weights applies to zoo models; a model file already has its weights")
    if classes is not None or width:
        raise UsageError("--classes and width options only apply to zoo models")
    warnings: list[str] = []
    custom, open_shape = None, None
    if path.is_dir():
        if custom_objects or unsafe_deserialization:
            raise UsageError("--custom-objects and --unsafe-deserialization apply to .keras / .h5 files; a SavedModel "
                             "holds its traced graph")
        if not (path / "saved_model.pb").exists():
            raise EdgeconvError(f"{path} is a folder but not a SavedModel (no saved_model.pb)")
        (model, open_shape), kind = _load_savedmodel(path, input_size), "savedmodel"
    elif path.suffix in (".keras", ".h5", ".hdf5"):
        custom = (custom_objects if isinstance(custom_objects, CustomObjects)
                  else import_custom_objects(custom_objects) if custom_objects else None)
        model, warnings = load_keras_model(path, custom_objects=custom, unsafe_deserialization=unsafe_deserialization)
        kind = "keras" if path.suffix == ".keras" else "h5"
    else:
        raise UsageError(f"{path}: unknown model format (expected a zoo name, .keras, .h5 or a SavedModel folder)")
    if len(model.inputs) != 1 or len(model.input_shape) != 4:
        raise EdgeconvError(f"{path}: expected one image input (N, H, W, C), got {model.input_shape}")
    own = tuple(model.input_shape[1:])
    shape = _fixed_shape(path.name, own, input_size)
    if shape != own:
        model, open_shape = with_input_shape(model, shape, custom, unsafe_deserialization), own
    assumed = preprocessing is None
    name = path.stem if path.is_file() else path.name
    return LoadedModel(model, name, str(path), kind, preprocessing or _guess_preprocessing(model), assumed,
                       custom_objects=custom, open_input_shape=open_shape, warnings=warnings)


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
    return dataclasses.replace(loaded, model=model, build_kwargs={**loaded.build_kwargs, "rgb_input": True})
