"""The sweep's matrix: one :class:`Cell` per model x input size, holding the precisions exported together.

A cell is one ``export`` (the model is loaded and traced once and every precision converts from that trace) followed
by ``validate`` (and ``bench`` with ``--bench``); its rows are one per artifact. Cells are independent: each has its
own output folder (``OUT/<name>/``, or ``OUT/<H>x<W>/<name>/`` when the sweep has several input sizes), so any number
of them can run at once on any machine.

Memory: :func:`estimate_memory` gives a cell's peak resident memory from the zoo registry's parameter count (the
largest width of the family: an upper bound for narrow widths) or a model file's size, so the local pool does not
start two huge models together and a Ray task declares what it needs.
"""
from __future__ import annotations

import fnmatch
import json
import os
import shlex
from dataclasses import dataclass, field, replace
from pathlib import Path

from edgeconv.errors import UsageError

__all__ = ["Cell", "plan", "expand_models", "estimate_memory", "memory_budget", "parse_sizes"]

#: Peak resident memory of one cell, measured (``peak_mb`` of the rows; 200 validation inputs at 96x96, fp32 +
#: int8): LeNet-5 (62 k parameters) 0.72 GB, MobileNetV3-Small (2.6 M) 1.36 GB, MobileNetV2 (3.5 M) 2.18 GB. A
#: straight line through them: 0.7 GB for the process (TensorFlow, tf2onnx, onnxruntime, LiteRT) and ~400 bytes per
#: parameter (the Keras model, its trace, the converter's copies, calibration and validation activations).
BASE_BYTES = 700_000_000
BYTES_PER_PARAM = 400


@dataclass(frozen=True)
class Cell:
    """One export of ``model`` (zoo name or model file) at ``input_size`` to ``precisions``, then its validation."""

    model: str
    precisions: tuple[str, ...]
    input_size: tuple[int, int] | None = None
    width: tuple[tuple[str, object], ...] = ()  # zoo width knobs, e.g. (("alpha", 0.25),)
    weights: str | None = None
    samples: int = 200  # held-out validation inputs
    calib_samples: int = 200
    seed: int = 0
    bench: bool = False
    subdir: str = ""  # "" or "96x96": where under the sweep's output folder the model's folder goes
    params: int | None = None  # the zoo registry's parameter count (None: a model file)

    @property
    def name(self) -> str:
        """The export folder's name (what :func:`edgeconv.export` names it)."""
        return Path(self.model).stem if _is_file(self.model) else self.model

    @property
    def size_text(self) -> str:
        return "default" if self.input_size is None else f"{self.input_size[0]}x{self.input_size[1]}"

    @property
    def key(self) -> str:
        """Unique within a sweep: ``mobilenet_v1@96x96``."""
        return f"{self.name}@{self.size_text}"

    def folder(self, out: Path) -> Path:
        return Path(out) / self.subdir / self.name if self.subdir else Path(out) / self.name

    def command(self) -> str:
        """The ``edgeconv export`` command line that makes this cell's folder; the manifest records it, and
        ``--resume`` compares it to know that a published folder was made with the same options."""
        args = ["edgeconv", "export", self.model]
        from edgeconv.precisions import PRECISIONS

        args += [PRECISIONS[p].flag for p in self.precisions if p != "fp32"]
        if self.input_size is not None:
            args += ["--input-size", self.size_text]
        for k, v in self.width:
            args += ["--width", f"{k}={v}"]
        if self.weights is not None:
            args += ["--weights", str(self.weights)]
        args += ["--samples", str(self.samples), "--calib-samples", str(self.calib_samples), "--seed", str(self.seed)]
        return shlex.join(args)

    def export_options(self, out_root: Path):
        from edgeconv.options import ExportOptions

        return ExportOptions(precisions=self.precisions, out_dir=str(Path(out_root) / self.subdir),
                             calib_samples=self.calib_samples, input_size=self.input_size, width=dict(self.width),
                             weights=self.weights, seed=self.seed, validate=False, quiet=True,
                             jobs=1,  # one CPU per cell: the sweep's --jobs / Ray's num_cpus share the machine
                             command=self.command())

    def validation_options(self):
        from edgeconv.options import ValidationOptions

        return ValidationOptions(samples=self.samples, seed=self.seed)

    def to_dict(self) -> dict:
        return {"model": self.model, "precisions": list(self.precisions),
                "input_size": None if self.input_size is None else list(self.input_size),
                "width": [list(kv) for kv in self.width], "weights": self.weights, "samples": self.samples,
                "calib_samples": self.calib_samples, "seed": self.seed, "bench": self.bench, "subdir": self.subdir,
                "params": self.params}

    @classmethod
    def from_dict(cls, d: dict) -> "Cell":
        return cls(d["model"], tuple(d["precisions"]), None if d["input_size"] is None else tuple(d["input_size"]),
                   tuple((k, v) for k, v in d["width"]), d["weights"], d["samples"], d["calib_samples"], d["seed"],
                   d["bench"], d["subdir"], d.get("params"))


def _is_file(model: str) -> bool:
    """A model file is written as a path: ``my_model.keras``, ``x.h5``, ``./saved_model`` (a bare name is a zoo
    name, even when a folder of that name happens to be here, e.g. an earlier sweep's output)."""
    return "/" in model or os.sep in model or model.endswith((".keras", ".h5"))


def expand_models(patterns, models_file=None) -> list[str]:
    """Zoo names, shell-style patterns over the zoo (``mobilenet*``) and model files, in the order given, each once.
    ``models_file``: one name / pattern / file per line (``#`` comments)."""
    from edgeconv import models

    items = list(patterns or [])
    if models_file is not None:
        p = Path(models_file)
        if not p.is_file():
            raise UsageError(f"--models-file {p} not found")
        items += [ln.split("#", 1)[0].strip() for ln in p.read_text().splitlines()]
    items = [i for i in items if i]
    if not items:
        raise UsageError("no models: give zoo names, patterns such as 'mobilenet*', model files or --models-file")
    out: list[str] = []
    for item in items:
        if _is_file(item):
            if not Path(item).exists():
                raise UsageError(f"model file {item} not found")
            found = [item]
        elif any(c in item for c in "*?["):
            found = models.list_models(item)
            if not found:
                raise UsageError(f"no zoo model matches {item!r} (`edgeconv zoo list` shows all)")
        else:
            try:
                models.model_info(item)
            except ValueError as e:
                hint = f" (for the model folder {item}, write ./{item})" if Path(item).is_dir() else ""
                raise UsageError(f"{e}{hint}") from None
            found = [item]
        out += [f for f in found if f not in out]
    return out


def parse_sizes(text) -> list[tuple[int, int] | None]:
    """``"96"`` / ``"96,128"`` / ``"96x128"`` / None -> input sizes (None: each model's default)."""
    from edgeconv.options import parse_input_size

    if text is None or text == "":
        return [None]
    items = [text] if isinstance(text, (int, tuple)) else [t.strip() for t in str(text).split(",") if t.strip()]
    out = []
    for item in items:
        size = parse_input_size(item)
        out.append((size, size) if isinstance(size, int) else tuple(size))
    return out


def plan(models: list[str], precisions, input_sizes=(None,), *, narrow: bool = False, weights=None,
         samples: int = 200, calib_samples: int = 200, seed: int = 0, bench: bool = False) -> list[Cell]:
    """The cells of ``models`` x ``input_sizes``, each exporting ``precisions`` (fp32 always first), lightest
    model first (a sweep cut short still covers the most). ``narrow``: each zoo model at its narrow test width
    (``ModelInfo.small_kwargs``)."""
    from edgeconv import models as zoo
    from edgeconv.precisions import PRECISIONS

    keys = ["fp32"] + [p for p in precisions if p != "fp32"]
    bad = [p for p in keys if p not in PRECISIONS]
    if bad:
        raise UsageError(f"unknown precision {bad[0]!r}; choose from {', '.join(PRECISIONS)}")
    sizes = list(input_sizes) or [None]
    cells = []
    for m in models:
        info = None if _is_file(m) else zoo.model_info(m)
        width = tuple(sorted(info.small_kwargs.items())) if (narrow and info is not None) else ()
        for size in sizes:
            subdir = "" if len(sizes) == 1 else ("default" if size is None else f"{size[0]}x{size[1]}")
            cells.append(Cell(m, tuple(keys), size, width, weights, samples, calib_samples, seed, bench, subdir,
                              None if info is None else int(info.params)))
    return sorted(cells, key=lambda c: estimate_memory(c))


def estimate_memory(cell: Cell) -> int:
    """Peak resident bytes of one cell: :data:`BASE_BYTES` + :data:`BYTES_PER_PARAM` x parameters (zoo registry;
    a model file: its size / 4 bytes per weight), scaled by the input area over 224x224 for the activations of
    large inputs (never below the 224 figure)."""
    if cell.params is not None:
        params = cell.params
    else:
        p = Path(cell.model)
        size = sum(f.stat().st_size for f in p.rglob("*") if f.is_file()) if p.is_dir() else p.stat().st_size
        params = size // 4
    area = 1.0 if cell.input_size is None else max(1.0, cell.input_size[0] * cell.input_size[1] / 224 ** 2)
    return int(BASE_BYTES * area + BYTES_PER_PARAM * params)


def memory_budget(gb: float | None = None) -> int:
    """``gb`` GB, else 80% of the memory available now (``MemAvailable``; the cgroup limit when lower)."""
    if gb is not None:
        if gb <= 0:
            raise UsageError(f"--memory must be > 0 GB, got {gb:g}")
        return int(gb * 1e9)
    avail = None
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemAvailable:"):
                avail = int(line.split()[1]) * 1024
    except OSError:
        pass
    if avail is None:
        avail = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_AVPHYS_PAGES")
    for f in ("/sys/fs/cgroup/memory.max", "/sys/fs/cgroup/memory/memory.limit_in_bytes"):
        try:
            limit = int(Path(f).read_text().split()[0])
            avail = min(avail, limit)
        except (OSError, ValueError):
            pass
    return int(avail * 0.8)
