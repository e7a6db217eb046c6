"""The user's own code a model file needs: ``--custom-objects`` sources, and what a saved model refers to.

Keras saves a custom Layer or activation function by name only. Reloading needs that name to resolve: through
``keras.saving.register_keras_serializable`` or through ``custom_objects``. Most tutorials do neither, so a ``.keras``
with a hand-written h-swish Layer fails with Keras' generic "could not be deserialized properly", which names nothing.

- :func:`import_custom_objects` imports each ``--custom-objects`` source explicitly: a ``.py`` file under the unique
  module name ``edgeconv_custom_<stem>_<sha256[:8]>`` (its folder is on ``sys.path`` while it runs, so it can import
  its neighbours), or an importable module name. It collects every Keras Layer / Model / initializer / regularizer /
  constraint subclass and every plain function found in it, registered or not, keyed by the names Keras saved them
  under. Each source is recorded (:class:`CustomSource`: file name, sha256, path) for the manifest.
- :func:`missing_objects` walks a model's config (``config.json`` of a ``.keras``, ``model_config`` of a legacy
  ``.h5``) and lists the classes / functions that are neither Keras built-ins, nor registered, nor provided;
  :func:`python_lambdas` lists the Lambda layers holding Python bytecode (what Keras' safe mode refuses to run).

Side effects on the caller, by design and documented: importing a file runs its top-level code; the module stays in
``sys.modules`` under its unique name (importing the same bytes again reuses it); a ``register_keras_serializable``
decorator in it registers into Keras' global registry, as any import would.
"""
from __future__ import annotations

import importlib
import importlib.util
import inspect
import json
import re
import sys
import zipfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping, Sequence

from edgeconv.errors import EdgeconvError, UsageError, first_line
from edgeconv.fileio import sha256_file

__all__ = ["CustomSource", "CustomObjects", "import_custom_objects", "collect_objects", "read_model_config",
           "missing_objects", "python_lambdas", "shadowed_builtins", "describe_missing", "reuse_recorded",
           "MODULE_PREFIX"]

MODULE_PREFIX = "edgeconv_custom_"
# Objects whose module's top-level package is one of these are library code, never the user's custom objects.
_LIBRARIES = {"keras", "tensorflow", "tf_keras", "numpy", "jax", "torch", "builtins", "edgeconv"}


@dataclass(frozen=True)
class CustomSource:
    """One ``--custom-objects`` source as the manifest records it."""

    name: str  # the file name ("my_layers.py") or the module name given
    sha256: str | None
    path: str | None  # absolute path of the file that was imported
    module: str  # the module name it was imported as
    objects: tuple[str, ...] = ()  # the names it provided

    def to_dict(self) -> dict:
        return {"name": self.name, "sha256": self.sha256, "path": self.path, "module": self.module,
                "objects": list(self.objects)}

    @classmethod
    def from_dict(cls, d: Mapping) -> "CustomSource":
        return cls(str(d.get("name", "")), d.get("sha256"), d.get("path"), str(d.get("module", "")),
                   tuple(d.get("objects") or ()))


@dataclass(frozen=True)
class CustomObjects:
    """What the custom-objects sources provide: ``objects`` (name -> class or function) for
    ``keras.models.load_model(custom_objects=...)``, and the ``sources`` they came from."""

    sources: tuple[CustomSource, ...] = ()
    objects: Mapping[str, Any] = field(default_factory=dict)

    def __bool__(self) -> bool:
        return bool(self.sources)

    def describe(self) -> str:
        return ", ".join(s.name for s in self.sources)

    def to_manifest(self) -> list[dict]:
        return [s.to_dict() for s in self.sources]


def _is_library(obj) -> bool:
    return (getattr(obj, "__module__", "") or "").split(".")[0] in _LIBRARIES


def collect_objects(module) -> dict[str, Any]:
    """Every Keras Layer / Model / initializer / regularizer / constraint subclass and every plain Python function
    in ``module``'s namespace (defined there or imported into it; not Keras' or TensorFlow's own), keyed by its
    ``__name__`` (what Keras saves for unregistered objects) and, when registered, its registered name."""
    import keras

    bases = (keras.layers.Layer, keras.initializers.Initializer, keras.regularizers.Regularizer,
             keras.constraints.Constraint)
    out: dict[str, Any] = {}
    for attr, obj in sorted(vars(module).items()):
        if attr.startswith("__") or _is_library(obj):
            continue
        if not ((isinstance(obj, type) and issubclass(obj, bases)) or inspect.isfunction(obj)):
            continue
        out[obj.__name__] = obj
        registered = keras.saving.get_registered_name(obj)
        if registered and registered != obj.__name__:
            out[registered] = obj
    return out


def _module_name(path: Path, sha: str) -> str:
    stem = re.sub(r"\W", "_", path.stem) or "file"
    return f"{MODULE_PREFIX}{stem}_{sha[:8]}"


def _import_file(path: Path):
    sha = sha256_file(path)
    name = _module_name(path, sha)
    module = sys.modules.get(name)
    if module is None:
        spec = importlib.util.spec_from_file_location(name, path)
        if spec is None or spec.loader is None:
            raise UsageError(f"--custom-objects {path}: cannot be imported as a Python file")
        module = importlib.util.module_from_spec(spec)
        folder = str(path.parent)
        sys.modules[name] = module  # before exec: dataclasses, pickling and self-imports look it up there
        sys.path.insert(0, folder)
        try:
            spec.loader.exec_module(module)
        except Exception as e:  # noqa: BLE001 - the user's code failed: their problem, said in one line
            sys.modules.pop(name, None)
            raise EdgeconvError(f"--custom-objects {path.name}: importing it failed: {type(e).__name__}: "
                                f"{first_line(e)}") from None
        finally:
            sys.path.remove(folder)  # the first occurrence: the one inserted above
    return module, CustomSource(path.name, sha, str(path), name)


def _import_module(name: str):
    if not re.fullmatch(r"[A-Za-z_]\w*(\.[A-Za-z_]\w*)*", name):
        raise UsageError(f"--custom-objects {name}: no such .py file (and not a module name)")
    try:
        module = importlib.import_module(name)
    except ModuleNotFoundError as e:
        raise UsageError(f"--custom-objects {name}: no such .py file, and no module of that name can be imported "
                         f"({first_line(e)})") from None
    except Exception as e:  # noqa: BLE001 - the user's code failed
        raise EdgeconvError(f"--custom-objects {name}: importing it failed: {type(e).__name__}: "
                            f"{first_line(e)}") from None
    file = getattr(module, "__file__", None)
    sha = sha256_file(file) if file and Path(file).is_file() else None
    return module, CustomSource(name, sha, str(Path(file).resolve()) if file else None, name)


def import_custom_objects(specs: Sequence[str | Path]) -> CustomObjects:
    """Import every source of ``specs`` (``.py`` paths or module names) -> :class:`CustomObjects`. Later sources win
    on equal names. A source that provides nothing Keras could use is a :class:`~edgeconv.errors.UsageError`."""
    sources: list[CustomSource] = []
    objects: dict[str, Any] = {}
    for spec in specs:
        text = str(spec)
        path = Path(text).expanduser()
        if path.suffix == ".py" or path.exists():
            if not path.is_file():
                raise UsageError(f"--custom-objects {text}: file not found")
            if path.suffix != ".py":
                raise UsageError(f"--custom-objects {text}: expected a .py file or an importable module name")
            module, source = _import_file(path.resolve())
        else:
            module, source = _import_module(text)
        found = collect_objects(module)
        if not found:
            raise UsageError(f"--custom-objects {source.name}: defines no Keras layer, model or function")
        objects.update(found)
        names = tuple(sorted({obj.__name__ for obj in found.values()}))
        sources.append(CustomSource(source.name, source.sha256, source.path, source.module, names))
    return CustomObjects(tuple(sources), objects)


def reuse_recorded(recorded: Sequence[Mapping]) -> tuple[CustomObjects | None, str | None]:
    """The custom objects an export recorded (manifest ``model.custom_objects``), imported again when every file is
    still where it was with the same sha256 -> (CustomObjects or None, why not: a hint for the error message)."""
    if not recorded:
        return None, None
    specs, problems = [], []
    for d in recorded:
        src = CustomSource.from_dict(d)
        if not src.path or not Path(src.path).is_file():
            problems.append(f"{src.name} is no longer at {src.path}" if src.path else f"{src.name} has no file")
        elif src.sha256 and sha256_file(src.path) != src.sha256:
            problems.append(f"{src.name} changed since the export (sha256 differs)")
        else:  # a file is imported from its path again, a module by its name
            specs.append(src.path if src.module.startswith(MODULE_PREFIX) else src.module)
    if problems:
        return None, "the export imported " + "; ".join(problems)
    try:
        return import_custom_objects(specs), None
    except EdgeconvError as e:
        return None, f"re-importing what the export used failed: {first_line(e)}"


# --- what a saved model refers to ----------------------------------------------------------------------------------

def read_model_config(path: str | Path) -> dict | None:
    """The model config of a ``.keras`` (``config.json``) or legacy ``.h5`` (``model_config``), or None."""
    path = Path(path)
    try:
        if path.suffix == ".keras":
            with zipfile.ZipFile(path) as z:
                return json.loads(z.read("config.json"))
        if path.suffix in (".h5", ".hdf5"):
            import h5py

            with h5py.File(path, "r") as f:
                raw = f.attrs.get("model_config")
            if raw is None:
                return None
            return json.loads(raw.decode("utf-8") if isinstance(raw, bytes) else raw)
    except Exception:  # noqa: BLE001 - only used to explain a load failure; the load reports damaged files itself
        return None
    return None


_FUNCTION_HOMES = ("activations", "losses", "metrics", "ops")
_CLASS_HOMES = ("layers", "models", "initializers", "regularizers", "constraints", "losses", "metrics",
                "optimizers", "dtype_policies")


def _keras_has(name: str, kind: str) -> bool:
    import keras

    if kind == "function":
        return any(callable(getattr(getattr(keras, m, None), name, None)) for m in _FUNCTION_HOMES)
    if name == "Functional" or isinstance(getattr(keras, name, None), type):  # legacy .h5 names model classes bare
        return True
    return any(isinstance(getattr(getattr(keras, m, None), name, None), type) for m in _CLASS_HOMES)


def _references(node, out: list[tuple[str, str, str | None, str | None]]) -> None:
    """Append (name Keras looks up, "class" | "function", module, registered name) of every serialized object."""
    if isinstance(node, list):
        for v in node:
            _references(v, out)
        return
    if not isinstance(node, dict):
        return
    cls = node.get("class_name")
    if isinstance(cls, str) and not cls.startswith("__") and ("module" in node or "config" in node):
        module, registered = node.get("module"), node.get("registered_name")
        if cls == "function" and isinstance(node.get("config"), str):
            out.append((node["config"], "function", module, registered))
        elif cls != "function":
            out.append((registered or cls, "class", module, registered))
    for key, v in node.items():
        if key in ("activation", "recurrent_activation") and isinstance(v, str):
            out.append((v, "function", None, None))
        else:
            _references(v, out)


def missing_objects(config: Mapping | None, custom: CustomObjects | None = None) -> list[tuple[str, str, str | None]]:
    """[(name, "class" | "function", module)] the config refers to that neither Keras, nor its registry, nor
    ``custom`` provides: what a load would fail on. Keras' own objects (module ``keras...``) are never listed."""
    if not config:
        return []
    import keras

    refs: list = []
    _references(config, refs)
    provided = dict(custom.objects) if custom else {}
    seen, out = set(), []
    for name, kind, module, registered in refs:
        if module and (module == "keras" or str(module).startswith("keras.")):
            continue
        keys = [k for k in (name, registered) if k and k != "function"]
        if any(k in provided or keras.saving.get_registered_object(k) is not None for k in keys):
            continue
        if _keras_has(name, kind) or name in seen:
            continue
        seen.add(name)
        out.append((name, kind, None if module == "builtins" else module))
    return out


def shadowed_builtins(config: Mapping | None, custom: CustomObjects | None) -> list[str]:
    """Functions ``custom`` defines under the name of a Keras built-in activation that the config stores as a bare
    name (``"activation": "hard_sigmoid"``): Keras saved the user's function that way and reloads *its own* built-in,
    custom objects or not. Worth a warning: the user's function is not in the file."""
    if not config or not custom:
        return []
    refs: list = []
    _references(config, refs)
    out = []
    for name, kind, module, _ in refs:
        if (kind == "function" and module is None and name in custom.objects and _keras_has(name, kind)
                and name not in out):
            out.append(name)
    return out


def python_lambdas(config: Mapping | None) -> list[str]:
    """Names of the Lambda layers whose function is Python bytecode stored in the file (Keras 3: ``__lambda__``;
    legacy .h5: ``function_type: lambda``)."""
    out: list[str] = []

    def walk(node):
        if isinstance(node, list):
            for v in node:
                walk(v)
        elif isinstance(node, dict):
            if node.get("class_name") == "Lambda" and isinstance(node.get("config"), dict):
                c = node["config"]
                fn = c.get("function")
                bytecode = isinstance(fn, dict) and fn.get("class_name") == "__lambda__"
                if bytecode or c.get("function_type") == "lambda":
                    out.append(str(c.get("name", "lambda")))
            for v in node.values():
                walk(v)

    walk(config)
    return out


def describe_missing(missing: Sequence[tuple[str, str, str | None]]) -> str:
    """ "class HSwish (module my_layers) and function my_act" """
    def where(module: str | None) -> str:
        if not module:
            return ""
        if module.startswith(MODULE_PREFIX):  # saved from a file edgeconv imported: name the file
            return f" (from {module[len(MODULE_PREFIX):].rsplit('_', 1)[0]}.py)"
        return f" (module {module})"

    parts = [f"{kind} {name}{where(module)}" for name, kind, module in missing]
    return parts[0] if len(parts) == 1 else ", ".join(parts[:-1]) + " and " + parts[-1]
