"""The zoo registry, in the style of timm: decorate a builder with ``@register_model(...)`` and it is listed.

    >>> import models
    >>> models.list_models("mobilenet*")
    >>> model = models.create_model("mobilenetv3_small", input_shape=(96, 96, 3), classes=10, alpha=0.75)

Every entry carries the metadata the pipeline needs: family, default input shape and class count, the input
preprocessing, the export-sensitive activations it contains, its parameter count at the default size (verified
exactly by ``tests/zoo``) next to the published reference count, and the pretrained weights keras.applications
publishes for it (``pretrained``, a :class:`~.pretrained.Pretrained`; None for the families written here):

    >>> model = models.create_model("mobilenetv3_small", weights="imagenet")  # keras' own download and cache
"""
from __future__ import annotations

import difflib
import fnmatch
import inspect
from dataclasses import dataclass, field
from typing import Any, Callable

from .preprocessing import Preprocessing
from .pretrained import Pretrained

#: Activations that are known to change behaviour in conversion / quantization.
SENSITIVE_ACTIVATIONS = ("relu6", "hard_swish", "hard_sigmoid", "swish", "gelu")


class UnknownModelError(ValueError):
    """Raised for a name that is not in the zoo; ``suggestions`` holds the closest names."""

    def __init__(self, name: str, suggestions: list[str]):
        self.name = name
        self.suggestions = suggestions
        hint = f"; did you mean {', '.join(suggestions)}?" if suggestions else ""
        super().__init__(f"unknown model '{name}'{hint} (`edgeconv zoo list` shows all)")


@dataclass(frozen=True)
class ModelInfo:
    name: str
    family: str
    builder: Callable[..., Any]
    input_shape: tuple[int, int, int]
    classes: int
    preprocessing: Preprocessing
    activations: tuple[str, ...]
    params: int  # parameter count of create_model(name) (default input, default classes); verified by tests/zoo
    reference_params: int  # the published reference count (shared/ZOO.md)
    reference_source: str
    param_tolerance: float = 0.0  # allowed |params - reference| / reference; the builder's docstring says why
    min_input_size: int = 32
    width_kwargs: tuple[str, ...] = ()  # the family's width knobs accepted by the builder (alpha, groups, ...)
    small_kwargs: dict = field(default_factory=dict)  # a narrow, fast variant for tests (e.g. {"alpha": 0.25})
    doc: str = ""
    # "all": reference_params counts every weight, as keras' count_params() does; "trainable": the reference
    # (torchvision / timm) counts batch-norm running statistics as buffers, not parameters, so it is compared
    # with the model's trainable weights (verified exactly by tests/zoo).
    reference_counts: str = "all"
    pretrained: Pretrained | None = None  # the ImageNet weights keras.applications publishes, if any
    width_defaults: dict = field(default_factory=dict)  # the builder's default for each width knob

    @property
    def param_rel_diff(self) -> float:
        return abs(self.params - self.reference_params) / self.reference_params

    def to_dict(self) -> dict:
        return {
            "name": self.name,
            "family": self.family,
            "params": self.params,
            "reference_params": self.reference_params,
            "reference_source": self.reference_source,
            "input_shape": list(self.input_shape),
            "classes": self.classes,
            "min_input_size": self.min_input_size,
            "preprocessing": self.preprocessing.to_dict(),
            "sensitive_activations": list(self.activations),
            "width_kwargs": list(self.width_kwargs),
            "reference_counts": self.reference_counts,
            "pretrained": None if self.pretrained is None else self.pretrained.dataset,
            "pretrained_input_sizes": [] if self.pretrained is None else list(self.pretrained.sizes),
        }

    def build_config(self, input_shape: tuple | None = None, classes: int | None = None, **width) -> dict:
        """What ``create_model(name, input_shape, classes, **width)`` builds: ``input_shape``, ``classes`` and every
        width knob, the registry's and the builder's defaults filled in."""
        return {"input_shape": tuple(input_shape) if input_shape is not None else self.input_shape,
                "classes": self.classes if classes is None else int(classes),
                **self.width_defaults, **{k: v for k, v in width.items() if k != "name"}}

    def pretrained_problem(self, config: dict) -> str | None:
        """Why the build ``config`` (:meth:`build_config`) cannot take ImageNet weights, or None when it can."""
        if self.pretrained is None:
            return "no pretrained weights (keras.applications publishes none for this model)"
        return self.pretrained.problem(config, self.width_defaults)


_REGISTRY: dict[str, ModelInfo] = {}


def register_model(*, family: str, input_shape: tuple[int, int, int], preprocessing: Preprocessing,
                   params: int, reference_params: int, reference_source: str, classes: int = 1000,
                   activations: tuple[str, ...] = (), param_tolerance: float = 0.0, min_input_size: int = 32,
                   width_kwargs: tuple[str, ...] = (), small_kwargs: dict | None = None,
                   reference_counts: str = "all", pretrained: Pretrained | None = None, name: str | None = None):
    """Register ``builder(input_shape=..., classes=..., **kwargs) -> keras.Model`` under its function name."""
    if reference_counts not in ("all", "trainable"):
        raise ValueError(f"reference_counts must be 'all' or 'trainable', not {reference_counts!r}")
    unknown = set(activations) - set(SENSITIVE_ACTIVATIONS)
    if unknown:
        raise ValueError(f"unknown sensitive activation(s) {sorted(unknown)}; use {SENSITIVE_ACTIVATIONS}")

    def decorate(fn):
        key = name or fn.__name__
        if key in _REGISTRY:
            raise ValueError(f"model '{key}' is registered twice")
        params_of = inspect.signature(fn).parameters
        if pretrained is not None and "weights" not in params_of:
            raise ValueError(f"model '{key}' declares pretrained weights but its builder takes no `weights`")
        _REGISTRY[key] = ModelInfo(
            name=key, family=family, builder=fn, input_shape=tuple(input_shape), classes=classes,
            preprocessing=preprocessing, activations=tuple(activations), params=params,
            reference_params=reference_params, reference_source=reference_source, param_tolerance=param_tolerance,
            min_input_size=min_input_size,
            width_kwargs=tuple(width_kwargs), small_kwargs=dict(small_kwargs or {}), doc=(fn.__doc__ or "").strip(),
            reference_counts=reference_counts, pretrained=pretrained,
            width_defaults={k: params_of[k].default for k in width_kwargs if k in params_of},
        )
        return fn

    return decorate


def _ensure_loaded() -> None:
    # Importing the family modules runs their @register_model decorators.
    from . import families  # noqa: F401


def list_models(pattern: str | None = None) -> list[str]:
    """Sorted zoo names, optionally filtered by a shell-style pattern (``"resnet*"``)."""
    _ensure_loaded()
    names = sorted(_REGISTRY)
    if pattern:
        names = [n for n in names if fnmatch.fnmatch(n, pattern)]
    return names


def suggest(name: str, n: int = 3) -> list[str]:
    _ensure_loaded()
    names = sorted(_REGISTRY)
    close = difflib.get_close_matches(name.lower(), names, n=n, cutoff=0.5)
    if not close:
        close = [m for m in names if name.lower() in m or m in name.lower()][:n]
    return close


def model_info(name: str) -> ModelInfo:
    """Metadata of a zoo model; raises :class:`UnknownModelError` with suggestions."""
    _ensure_loaded()
    try:
        return _REGISTRY[name]
    except KeyError:
        raise UnknownModelError(name, suggest(name)) from None


def is_model(name: str) -> bool:
    _ensure_loaded()
    return name in _REGISTRY


def check_build(name: str, input_shape: tuple[int, int, int] | None = None, classes: int | None = None,
                **kwargs) -> tuple[tuple[int, int, int], int]:
    """The registry's argument checks of :func:`create_model` (one ``ValueError`` per mistake), without building:
    -> (input_shape, classes) with the defaults filled in. The builders check their width knobs' values."""
    info = model_info(name)
    shape = tuple(input_shape) if input_shape is not None else info.input_shape
    if len(shape) != 3 or any(int(s) <= 0 for s in shape):
        raise ValueError(f"input_shape must be (height, width, channels) with positive sizes, got {shape}")
    if min(shape[0], shape[1]) < info.min_input_size:
        raise ValueError(f"{name} needs an input of at least {info.min_input_size}x{info.min_input_size}, "
                         f"got {shape[0]}x{shape[1]}")
    n_classes = info.classes if classes is None else int(classes)
    if n_classes < 1:
        raise ValueError(f"classes must be >= 1, got {classes}")
    bad = set(kwargs) - set(info.width_kwargs) - {"name"}
    if bad:
        raise ValueError(f"{name} does not take {sorted(bad)}; its options are {list(info.width_kwargs) or 'none'}")
    return shape, n_classes


def create_model(name: str, input_shape: tuple[int, int, int] | None = None, classes: int | None = None,
                 weights: str | None = None, **kwargs):
    """Build a zoo model. ``input_shape`` is (H, W, C); width knobs go in ``kwargs``.

    ``weights``: None (random weights) or "imagenet": keras.applications' own ``weights="imagenet"`` (its download,
    hash check and ``~/.keras/models`` cache), for models whose ``pretrained`` entry accepts the configuration;
    otherwise a ``ValueError`` says why. A weights file is loaded with ``model.load_weights(path)``.
    """
    info = model_info(name)
    shape, n_classes = check_build(name, input_shape, classes, **kwargs)
    if weights is None:
        return info.builder(input_shape=shape, classes=n_classes, **kwargs)
    if weights != "imagenet":
        raise ValueError(f"weights must be None or 'imagenet', not {weights!r} (load a weights file with "
                         f"model.load_weights)")
    why = info.pretrained_problem(info.build_config(shape, n_classes, **kwargs))
    if why:
        raise ValueError(f"{name}: {why}")
    return info.builder(input_shape=shape, classes=n_classes, weights="imagenet", **kwargs)


def zoo_rows(pattern: str | None = None) -> list[dict]:
    """One dict per zoo model (``name``, ``family``, ``params``, ``input_shape``, ...), sorted by name: what
    ``edgeconv zoo list`` prints. No model is built (the counts are the registry's verified ones)."""
    from edgeconv.errors import UsageError

    names = list_models(pattern)
    if pattern and not names:
        raise UsageError(f"no zoo model matches '{pattern}'")
    return [model_info(n).to_dict() for n in names]
