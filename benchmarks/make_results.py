"""Assemble benchmarks/RESULTS.md from the tables the scripts wrote into benchmarks/results/ (never by hand).

    python3 benchmarks/make_results.py [--intro FILE]
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path

import common

ORDER = ["table1_fixtures", "table2_quant_quality", "table2b_int8_quantizers", "table3_export_time", "table3b_main_job", "table4_latency", "table5_zoo",
         "table6_onnx_int8", "table7_multi_output", "table7b_regression_heads", "table8_sweep"]


def main(argv=None) -> Path:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--intro", type=Path, help="Markdown put between the machine facts and the tables")
    p.add_argument("--results", type=Path, default=common.RESULTS)
    p.add_argument("--out", type=Path, default=common.HERE / "RESULTS.md")
    args = p.parse_args(argv)
    m = common.machine()
    v = m["versions"]
    parts = ["# edgeconv benchmark results", "",
             f"Machine: {m['cpu']}, {m['cores']} cores, {', '.join(m['isa'])}; {m['platform']}.",
             "Versions: " + ", ".join(f"{k} {val}" for k, val in v.items()) + ".",
             f"Assembled {m['date']} from `benchmarks/results/*.json|md` (each table records when and with what "
             "command it was measured).", ""]
    if args.intro:
        parts += [args.intro.read_text().strip(), ""]
    for stem in ORDER:
        md, js = args.results / f"{stem}.md", args.results / f"{stem}.json"
        if not md.exists():
            parts += [f"### {stem}", "", "Not run.", ""]
            continue
        d = json.loads(js.read_text())
        parts += [md.read_text().strip(), "", f"Measured {d['machine']['date']}.", ""]
        if d.get("figure"):
            parts += [f"![roofline](results/{d['figure']})", ""]
    args.out.write_text("\n".join(parts) + "\n")
    print(args.out)
    return args.out


if __name__ == "__main__":
    main()
