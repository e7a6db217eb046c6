"""Pretrained ImageNet weights published by keras.applications, as registry facts, and the class names that go with
them.

keras.applications publishes ImageNet weights only for each builder's canonical configuration: the 1000-class top,
3-channel inputs, the default width (or one of a few listed ``alpha`` values) and the default input size. The
MobileNets also have weights for a few smaller sizes, and since their top is fully convolutional keras loads the
224x224 weights into any input size (with a warning; accuracy drops). Outside that, ``weights="imagenet"`` raises a
``ValueError`` in keras.

A family says what its builder accepts with a :class:`Pretrained` next to the builder
(``@register_model(..., pretrained=Pretrained(...))``). :meth:`Pretrained.problem` says, in one sentence, why a build
cannot take the weights; :meth:`Pretrained.file_name` is the file keras.applications asks ``keras.utils.get_file``
for (``<keras cache>/models/<file>``), so that callers can look for it in the Keras cache before keras goes to the
network. Nothing in this module touches the network: the download, its hash check and the cache are keras'
own (``create_model(name, weights="imagenet")`` calls the builder with ``weights="imagenet"``).

:func:`imagenet_classes` returns the 1000 ImageNet class names shipped as package data (``data/imagenet_classes.txt``,
provenance in ``data/NOTICE``): keras' ``decode_predictions`` would download them at run time.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from functools import lru_cache
from typing import Any, Callable, Mapping

__all__ = ["Pretrained", "imagenet_classes", "IMAGENET_CLASSES_FILE", "KERAS_WEIGHTS_HOST"]

IMAGENET_CLASSES_FILE = "imagenet_classes.txt"
#: Where every keras.applications weights file is downloaded from (checked against keras' modules by tests/zoo).
KERAS_WEIGHTS_HOST = "storage.googleapis.com"


@dataclass(frozen=True)
class Pretrained:
    """The ImageNet weights keras.applications publishes for one zoo model.

    ``file``: the file name keras asks ``get_file`` for, or a function of the build configuration (a dict with
    ``input_shape``, ``classes`` and every width knob, defaults filled in) for families whose file depends on it.
    ``sizes``: the square input sizes that have weights of their own. ``any_size``: keras also loads the weights
    into other input sizes (the 224x224 ones; MobileNets). ``widths``: width knob -> the values that have weights;
    a knob not listed must keep the builder's default. ``rule``: one more check of the configuration (returns why it
    cannot take the weights, or None).
    """

    file: str | Callable[[dict], str]
    sizes: tuple[int, ...] = (224,)
    any_size: bool = False
    widths: Mapping[str, tuple] = field(default_factory=dict)
    rule: Callable[[dict], str | None] | None = None
    classes: int = 1000
    dataset: str = "imagenet"

    def file_name(self, config: dict) -> str:
        return self.file(config) if callable(self.file) else self.file

    def native_size(self, config: dict) -> bool:
        """True when the input size has weights of its own (not the 224x224 ones loaded into another size)."""
        h, w = config["input_shape"][:2]
        return h == w and h in self.sizes

    def problem(self, config: dict, width_defaults: Mapping[str, Any]) -> str | None:
        """Why a build with ``config`` cannot take these weights (what keras.applications would refuse), or None."""
        h, w, c = config["input_shape"]
        what = self.title
        if c != 3:
            return f"{what} weights take 3-channel inputs, not {c}"
        if config["classes"] != self.classes:
            return f"{what} weights have {self.classes} classes, not {config['classes']}"
        for knob, default in width_defaults.items():
            value = config.get(knob, default)
            allowed = self.widths.get(knob)
            if allowed is None and value != default:
                dflt = "" if default is None else f" ({_text(default)})"
                return f"{what} weights exist only for the default {knob}{dflt}, not {_text(value)}"
            if allowed is not None and value not in allowed:
                return f"{what} weights exist for {knob} in {', '.join(_text(a) for a in allowed)}, not {_text(value)}"
        if self.rule is not None:
            why = self.rule(config)
            if why:
                return why
        if not self.any_size and not self.native_size(config):
            return f"{what} weights need a {self.size_text()} input, not {h}x{w}"
        return None

    @property
    def title(self) -> str:
        """The dataset's name for messages ("ImageNet")."""
        return {"imagenet": "ImageNet"}.get(self.dataset, self.dataset)

    def size_text(self) -> str:
        return " / ".join(f"{s}x{s}" for s in self.sizes)

    def to_dict(self) -> dict:
        return {"dataset": self.dataset, "classes": self.classes, "input_sizes": list(self.sizes),
                "any_input_size": self.any_size, "widths": {k: list(v) for k, v in self.widths.items()}}


def _text(v) -> str:
    return f"{v:g}" if isinstance(v, (int, float)) and not isinstance(v, bool) else repr(v)


@lru_cache(maxsize=1)
def _imagenet_classes() -> tuple[str, ...]:
    from importlib.resources import files

    text = (files(__package__) / "data" / IMAGENET_CLASSES_FILE).read_text(encoding="utf-8")
    names = tuple(line.strip() for line in text.splitlines() if line.strip())
    if len(names) != 1000:  # the package is broken, not the user's input
        raise RuntimeError(f"{IMAGENET_CLASSES_FILE} has {len(names)} class names, expected 1000")
    return names


def imagenet_classes() -> list[str]:
    """The 1000 ImageNet class names in class-index order ("tench", "goldfish", ..., "toilet tissue")."""
    return list(_imagenet_classes())
