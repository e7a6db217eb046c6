"""report.json, report.md and the terminal table of a validation run (edgeconv.verify.validate.ValidationReport)."""
from __future__ import annotations

import json
import math
from pathlib import Path

from edgeconv.console import markdown_table
from edgeconv.fileio import atomic_write_json, atomic_write_text

__all__ = ["table_columns", "table_rows", "detail_lines", "to_markdown", "write_reports"]

_COLUMNS = ["artifact", "output", "max abs", "mean abs", "cosine", "SQNR dB", "PSNR dB", "top-1", "top-5", "accuracy",
            "tolerance", "result"]


def table_columns() -> list[str]:
    return list(_COLUMNS)


def _num(v, fmt: str) -> str:
    if v is None:
        return "-"
    if isinstance(v, float) and not math.isfinite(v):
        return "inf" if v > 0 else ("-inf" if v < 0 else "nan")
    return format(v, fmt)


def _pct(v) -> str:
    return "-" if v is None else f"{v:.2%}"


def _accuracy(o) -> str:
    if o.accuracy is None:
        return "-"
    return f"{o.accuracy:.2%} (ref {o.accuracy_ref:.2%})"


def table_rows(report) -> list[list[str]]:
    """One row per artifact and output, in manifest order; the result column says PASS / FAIL."""
    rows = []
    for a in report.artifacts:
        verdict = a.verdict
        tol = a.tolerance.describe()
        if a.comparison is None:
            rows.append([a.file, "-", "-", "-", "-", "-", "-", "-", "-", "-", tol, verdict])
            continue
        multi = len(a.comparison.outputs) > 1
        for o in a.comparison.outputs:
            named = multi or o.kind != "scores"
            rows.append([a.file, f"{o.name} ({o.kind})" if named else "", _num(o.max_abs, ".2e"),
                         _num(o.mean_abs, ".2e"), _num(o.cosine, ".6f"), _num(o.sqnr_db, ".1f"), _num(o.psnr_db, ".1f"),
                         _pct(o.top1_agreement), _pct(o.top5_agreement), _accuracy(o),
                         o.tolerance.describe() if o.tolerance is not None else tol,
                         _output_verdict(a, o, multi) if a.sha256_ok else f"{verdict} (sha256)"])
    return rows


def _output_verdict(a, o, multi: bool) -> str:
    """The artifact's verdict; on a multi-output model each output's own ("ok": this output passes, the artifact
    fails on another)."""
    if not multi:
        return a.verdict
    if not all(c.passed for c in o.checks if a.judged_checks is None or c.name in a.judged_checks):
        return "FAIL"
    return a.verdict if a.passed else "ok"


def detail_lines(report) -> list[str]:
    """Lines to print under the table: layer-wise summaries (with the plot file) and layers kept in float."""
    lines = [f"judged on: {report.data_note}"] if report.data_note else []
    judged = next((a.comparison for a in report.artifacts if a.comparison is not None), None)
    if judged is not None and (len(judged.outputs) > 1 or any(o.kind != "scores" for o in judged.outputs)):
        from edgeconv.verify.kinds import KIND_WORDS

        lines.append("outputs: " + "; ".join(f"{o.name} = {o.rule.split(':')[0] or KIND_WORDS.get(o.kind, o.kind)}"
                                              for o in judged.outputs))
    unjudged = [a.file for a in report.artifacts if a.unjudged]
    if unjudged:
        lines.append(f"NOT JUDGED ({', '.join(unjudged)}): {report.artifact(unjudged[0]).unjudged}")
    for a in report.artifacts:
        if a.kept_float:
            lines.append(f"{a.file}: kept in float: {', '.join(a.kept_float)}")
        if a.layers is not None:
            plot = f" (plot: {a.layers.plot_file})" if a.layers.plot_file else ""
            if a.layers.node_data_file:
                plot += (f"; Model Explorer: model-explorer {a.file} "
                         f"--node_data_paths={a.layers.node_data_file}")
            lines.append(f"{a.file}: {a.layers.summary()}{plot}")
    return lines


def to_markdown(report) -> str:
    out = [f"# Validation of {report.model}: {'PASS' if report.passed else 'FAIL'}", "",
           report.summary_line() + ".", "",
           f"- Reference: `{report.reference}` (Keras, inference mode)",
           f"- Inputs: {report.inputs} (never the calibration samples)"]
    if report.data_note:
        out.append(f"- Judged on: {report.data_note}")
    if report.input_ids:
        shown = ", ".join(f"`{i}`" for i in report.input_ids[:10])
        more = f" and {len(report.input_ids) - 10} more (all in report.json)" if len(report.input_ids) > 10 else ""
        out.append(f"- Held-out samples: {shown}{more}")
    if report.labels:
        out.append(f"- Labels: {report.labels}")
    if report.overrides:
        out.append("- Tolerance overrides: " + ", ".join(f"{k} = {v}" for k, v in report.overrides.items()))
    for w in report.warnings:
        out.append(f"- Warning: {w}")
    out += ["", "## Results", "", markdown_table(table_columns(), table_rows(report)), "",
            "Float artifacts are judged by an absolute (+ relative) tolerance; quantized ones by SQNR (dB) and, for "
            "class-score outputs, top-1 agreement with the reference. Regression, landmark and embedding outputs "
            "have no top-1: they are judged by SQNR / atol, cosine similarity and (quantized) their largest error "
            "as a share of the output's range. Top-5 = share of inputs whose reference top-1 class is in the "
            "artifact's top 5.", ""]
    for a in report.artifacts:
        out += [f"## {a.file}: {a.verdict}", "",
                f"{a.format} {a.precision}; tolerance: {a.tolerance.describe()}", ""]
        if a.unjudged:
            out += [f"Not judged: {a.unjudged}.", ""]
        if a.comparison is not None:
            for o in a.comparison.outputs:
                if o.rule:
                    rel = "" if o.rel_error is None else f", max error {_num(o.rel_error * 100, '.2f')}% of range"
                    out.append(f"- output `{o.name}` {tuple(o.shape[1:])}: {o.rule} "
                               f"(SQNR {_num(o.sqnr_db, '.1f')} dB, cosine {_num(o.cosine, '.6f')}{rel})")
                for c in o.checks:
                    judged = a.judged_checks is None or c.name in a.judged_checks
                    mark = "ok" if c.passed else ("FAIL" if judged else "(not judged)")
                    out.append(f"- {mark} {c.reason}")
                for note in o.notes:
                    out.append(f"- note: {note}")
        if not a.sha256_ok:
            out.append("- FAIL sha256 differs from the manifest: the file changed since export")
        if a.error:
            out.append(f"- FAIL {a.error}")
        if a.kept_float:
            out.append(f"- kept in float: {', '.join(a.kept_float)}")
        if a.fallback:
            out += ["", _fallback_md(a.fallback)]
        if a.layers is not None:
            out += ["", _layers_md(a.layers)]
        out.append("")
    return "\n".join(out).rstrip() + "\n"


def _layers_md(rep) -> str:
    if rep.error:
        return f"Layer-wise comparison not available: {rep.error}"
    lines = [f"### Layer-wise ({rep.samples} inputs)", "", rep.summary() + ".", ""]
    if rep.plot_file:
        lines += [f"![error by depth]({rep.plot_file})", ""]
    cols = ["depth", "layer", "class", "TFLite op", "output SQNR dB", "rmse/scale", "local SQNR dB",
            "SQNR vs Keras dB", "max abs", "flags"]
    rank = {id(s): i + 1 for i, s in enumerate(rep.worst(len(rep.layers)))} if rep.layers[:1] and \
        rep.layers[0].output_sqnr_db is not None else {}
    per_output = [n for n in (next((s.output_sqnr_by for s in rep.layers if s.output_sqnr_by), None) or {})]
    cols[5:5] = [f"{n} SQNR dB" for n in per_output]  # multi-output: what the layer's error costs each output
    rows = [[s.depth, s.layer, s.layer_class, s.op,
             _num(s.output_sqnr_db, ".1f") + (f" (#{rank[id(s)]})" if rank.get(id(s), 99) <= 5 else ""),
             *[_num((s.output_sqnr_by or {}).get(n), ".1f") for n in per_output],
             _num(s.rmse_scale, ".2f"), _num(s.local_sqnr_db, ".1f"), _num(s.sqnr_db, ".1f"), _num(s.max_abs, ".3g"),
             ", ".join(s.flags) + (" SUSPECT" if s.suspect else "")] for s in rep.layers]
    lines.append(markdown_table(cols, rows))
    lines += ["", f"Ranked by {rep.ranked_by}. Every matched layer is proven on the fp32 .tflite (its tensor equals "
              "the Keras layer output to float rounding). rmse/scale: the layer's own error (its float computation "
              "on the same TFLite inputs) in quantization steps; about 0.29 is pure rounding, above 0.7 is suspect. "
              "SQNR vs Keras accumulates everything upstream."]
    if rep.not_comparable:
        lines += ["", f"Not comparable ({len(rep.not_comparable)}; the converter fused them, no TFLite tensor holds "
                  "their value): " + "; ".join(f"{k} ({v})" for k, v in rep.not_comparable.items())]
    return "\n".join(lines)


def _fallback_md(fb: dict) -> str:
    from edgeconv.verify.fallback import policy_text

    hist = fb.get("history") or []
    lines = ["### Automatic fallback (--fallback auto)", "",
             f"The plain int8 missed its target; {'passed' if fb.get('passed') else 'still failing'} with "
             f"{len(fb.get('kept_float') or [])} layer(s) kept in float"
             + (f" and {policy_text(fb['stats'])}" if fb.get("stats", "minmax") != "minmax" else "") + ".", ""]
    budget = fb.get("budget") or {}
    if budget:
        lines += [f"Budget: at most {budget['max_bytes'] / 1e3:.1f} KB (fp32 {budget['fp32_bytes'] / 1e3:.1f} KB) and "
                  f"{budget['max_latency_ms']:.3f} ms per image; never less accurate than the plain int8."
                  + (f" {budget['note']}." if budget.get("note") else ""), ""]
    if hist:
        cols = ["round", "action", "kept float", "SQNR dB", "bought dB", "top-1", "KB", "latency ms", "passed",
                "chosen"]
        rows = [[h["round"], h["action"], ", ".join(h["kept_float"]) or "-", _num(h["sqnr_db"], ".1f")
                 if not isinstance(h["sqnr_db"], str) else h["sqnr_db"],
                 "-" if h.get("gain_db") is None else f"{h['gain_db']:+.2f}", _pct(h["top1"]),
                 f"{h['bytes'] / 1e3:.1f}", f"{h['latency_ms']:.3f}", "yes" if h["passed"] else "no",
                 "yes" if h.get("chosen") else ""] for h in hist]
        lines.append(markdown_table(cols, rows))
        end = next((h for h in hist if h.get("chosen")), hist[-1])
        lines += ["", f"Cost of the result: {hist[0]['bytes'] / 1e3:.1f} -> {end['bytes'] / 1e3:.1f} KB, "
                  f"{hist[0]['latency_ms']:.3f} -> {end['latency_ms']:.3f} ms per image (LiteRT, XNNPACK, "
                  f"1 thread)."]
    return "\n".join(lines)


def write_reports(report, folder, stem: str = "report") -> list[Path]:
    """Write ``<stem>.json`` and ``<stem>.md`` into ``folder`` atomically; returns their paths."""
    folder = Path(folder)
    d = report.to_dict()
    json.dumps(d, allow_nan=False)  # fail here, not with a half-valid file, if a NaN slipped through
    return [atomic_write_json(folder / f"{stem}.json", d), atomic_write_text(folder / f"{stem}.md",
                                                                             to_markdown(report))]
