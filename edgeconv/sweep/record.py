"""Rows, files and resume: what a sweep records.

One row per artifact of a cell (a cell that produced nothing: one row per precision it asked for), made from the
cell's outcome (:mod:`edgeconv.sweep.cell`) and its published folder (``manifest.json`` + ``report.json``), so a
row says the same whichever backend ran the cell. ``sweep.json`` (every cell, its outcome and the rows),
``sweep.md`` and ``sweep.csv`` are rewritten atomically after every cell: an interrupted sweep leaves a correct
record of what finished, and ``--resume`` reads it.
"""
from __future__ import annotations

import csv
import io
import json
import math
from pathlib import Path

from edgeconv.errors import EdgeconvError
from edgeconv.fileio import atomic_write_bytes, atomic_write_json, sha256_file
from edgeconv.sweep.plan import Cell

__all__ = ["SCHEMA", "COLUMNS", "TIMING", "cell_rows", "complete", "load_previous", "write_files", "summary",
           "table"]

SCHEMA = "edgeconv.sweep/1"
REPORT = "report.json"
#: Row fields, in table order. ``status``: ok / failed (``step``: export, validate, bench) / timeout / oom / killed.
COLUMNS = ["model", "input", "weights", "precision", "file", "status", "step", "verdict", "mb", "max_abs", "cosine", "sqnr_db",
           "top1_agreement", "latency_ms", "seconds", "peak_mb", "error"]
#: Fields that are measured times or memory: they differ between runs; everything else is reproducible.
TIMING = ("latency_ms", "seconds", "peak_mb")
OK_VERDICTS = ("PASS", "NOT JUDGED")


def _num(v):
    if isinstance(v, str):  # report.json writes inf / nan as strings
        return float(v)
    return v


def _figures(comparison: dict | None) -> dict:
    """The worst figure over the artifact's outputs (one output for classifiers)."""
    outs = (comparison or {}).get("outputs") or []
    if not outs:
        return {"max_abs": None, "cosine": None, "sqnr_db": None, "top1_agreement": None}

    def pick(key, worst):
        vals = [_num(o.get(key)) for o in outs if o.get(key) is not None]
        vals = [v for v in vals if not (isinstance(v, float) and math.isnan(v))]
        return worst(vals) if vals else None

    return {"max_abs": pick("max_abs", max), "cosine": pick("cosine", min), "sqnr_db": pick("sqnr_db", min),
            "top1_agreement": pick("top1_agreement", min)}


def _read_json(path: Path) -> dict | None:
    try:
        return json.loads(path.read_text())
    except (OSError, json.JSONDecodeError):
        return None


def cell_rows(cell: Cell, outcome: dict, out_root: Path) -> list[dict]:
    """The rows of one cell run: from its published folder when the export got that far, else one per precision."""
    folder = cell.folder(out_root)
    base = {"cell": cell.key, "model": cell.name, "input": cell.size_text, "weights": None, "seconds": outcome.get("seconds"),
            "peak_mb": outcome.get("peak_mb")}
    status, step = outcome["status"], outcome.get("step")
    manifest = _read_json(folder / "manifest.json") if status == "ok" or step in ("validate", "bench") else None
    if manifest is None or manifest.get("command") != outcome.get("command", cell.command()):
        return [{**base, "precision": p, "file": None, "status": status, "step": step, "verdict": None, "mb": None,
                 **_figures(None), "latency_ms": None, "error": outcome.get("error")} for p in cell.precisions]
    shape = manifest["model"].get("input_shape") or []
    if len(shape) >= 3:
        base["input"] = f"{shape[-3]}x{shape[-2]}"
    base["weights"] = (manifest["model"].get("weights") or {}).get("kind")
    report = _read_json(folder / REPORT) if step != "validate" else None
    judged = {a["file"]: a for a in (report or {}).get("artifacts", [])}
    rows = []
    for art in manifest["artifacts"]:
        res = judged.get(art["file"])
        row = {**base, "precision": art["key"], "file": art["file"], "verdict": None if res is None else res["verdict"],
               "mb": round(art["bytes"] / 1e6, 4), **_figures(None if res is None else res.get("comparison")),
               "latency_ms": (outcome.get("latency_ms") or {}).get(art["file"])}
        if status != "ok":
            row.update(status=status, step=step, error=outcome.get("error"))
        elif res is None:
            row.update(status="failed", step="validate", error="not in report.json")
        elif res["verdict"] not in OK_VERDICTS:
            row.update(status="failed", step="validate", error="; ".join(res.get("reasons") or [])[:300] or None)
        else:
            row.update(status="ok", step=None, error=None)
        rows.append(row)
    for p, err in (outcome.get("broken") or {}).items():  # precisions whose conversion failed on their own
        rows.append({**base, "precision": p, "file": None, "status": "failed", "step": "export", "verdict": None,
                     "mb": None, **_figures(None), "latency_ms": None, "error": err})
    return rows


def complete(cell: Cell, out_root: Path) -> bool:
    """The cell's folder is published and complete for the same options: its manifest was made by the same
    command (:meth:`Cell.command`), has every precision the cell asks for, every artifact is there with the sha256
    the manifest recorded, and report.json judged every artifact."""
    folder = cell.folder(out_root)
    manifest, report = _read_json(folder / "manifest.json"), _read_json(folder / REPORT)
    if manifest is None or report is None or manifest.get("command") != cell.command():
        return False
    arts = manifest.get("artifacts") or []
    if not set(cell.precisions) <= {a.get("key") for a in arts}:
        return False
    try:
        if any(sha256_file(folder / a["file"]) != a["sha256"] for a in arts):
            return False
        ref = manifest.get("reference") or {}
        if sha256_file(folder / ref["file"]) != ref["sha256"]:
            return False
    except (OSError, KeyError, TypeError, EdgeconvError):
        return False
    return {a["file"] for a in arts} <= {a.get("file") for a in report.get("artifacts", [])}


def load_previous(out_root: Path) -> dict[str, dict]:
    """cell key -> {"cell": ..., "outcome": ...} from an earlier ``sweep.json`` in ``out_root`` (empty if none)."""
    d = _read_json(Path(out_root) / "sweep.json")
    if not d or d.get("schema") != SCHEMA:
        return {}
    return {c["outcome"]["key"]: c for c in d.get("cells", []) if "outcome" in c}


def _fmt(v, col: str) -> str:
    if v is None:
        return "-"
    if col == "top1_agreement":
        return f"{100 * v:.1f}%"
    if col == "max_abs":
        return f"{v:.2g}"
    if col == "cosine":
        return f"{v:.5f}"
    if isinstance(v, float):
        return "inf" if math.isinf(v) else f"{v:.1f}" if col in ("sqnr_db", "seconds", "peak_mb") else f"{v:g}"
    return str(v)


MD_COLUMNS = ["model", "input", "weights", "precision", "status", "verdict", "mb", "sqnr_db", "top1_agreement", "max_abs",
              "latency_ms", "seconds", "error"]
MD_HEADERS = {"mb": "MB", "sqnr_db": "SQNR dB", "top1_agreement": "top-1 agr.", "max_abs": "max abs",
              "latency_ms": "ms", "seconds": "cell s"}


def summary(rows: list[dict]) -> str:
    n_ok = sum(r["status"] == "ok" for r in rows)
    cells = {r["cell"] for r in rows}
    bad = {s: sum(r["status"] == s for r in rows) for s in ("failed", "timeout", "oom", "killed")}
    extra = ", ".join(f"{n} {s}" for s, n in bad.items() if n)
    return f"{n_ok} of {len(rows)} artifacts ok in {len(cells)} cells" + (f" ({extra})" if extra else "")


def table(rows: list[dict]) -> tuple[list[str], list[list[str]]]:
    """(headers, cells as text): the table of sweep.md and of the command's output."""
    body = [[_fmt(r[c], c) if c != "status" else (r["status"] + (f" ({r['step']})" if r.get("step") else ""))
             for c in MD_COLUMNS] for r in rows]
    return [MD_HEADERS.get(c, c) for c in MD_COLUMNS], body


def markdown(rows: list[dict], notes: list[str]) -> str:
    from edgeconv.console import markdown_table

    table_md = markdown_table(*table(rows))
    return "\n".join([f"# edgeconv sweep: {summary(rows)}", "", table_md, "", *[f"- {n}" for n in notes], ""])


def csv_text(rows: list[dict]) -> str:
    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=["cell", *COLUMNS], extrasaction="ignore", lineterminator="\n")
    w.writeheader()
    w.writerows(rows)
    return buf.getvalue()


def write_files(out_root: Path, cells: list[dict], rows: list[dict], meta: dict, notes: list[str]) -> list[Path]:
    """sweep.json, sweep.md and sweep.csv in ``out_root``, each written atomically."""
    out_root = Path(out_root)
    atomic_write_json(out_root / "sweep.json", {"schema": SCHEMA, "summary": summary(rows), **meta,
                                                "cells": cells, "rows": rows, "notes": notes})
    atomic_write_bytes(out_root / "sweep.md", markdown(rows, notes).encode())
    atomic_write_bytes(out_root / "sweep.csv", csv_text(rows).encode())
    return [out_root / f for f in ("sweep.json", "sweep.md", "sweep.csv")]
