"""The README's table of the latest full benchmark run, made from its JSON (nothing typed by hand):

    .venv/bin/python benchmarks/run.py                 # writes benchmarks/results/all.json
    .venv/bin/python benchmarks/tables.py --keep       # copies it to benchmarks/measured.json
    .venv/bin/python benchmarks/tables.py --readme     # rewrites README.md between its two markers

Each benchmark's JSON becomes its scalar settings and results in one line and each list of rows in it a
Markdown table of its scalar columns; tests/test_benchmarks.py checks that the README holds exactly the
rendering of benchmarks/measured.json.
"""

from __future__ import annotations

import argparse
import json
import shutil
from pathlib import Path

HERE = Path(__file__).resolve().parent
MEASURED = HERE / "measured.json"
README = HERE.parent / "README.md"
BEGIN, END = "<!-- benchmarks:begin (benchmarks/tables.py --readme) -->", "<!-- benchmarks:end -->"
MAX_ROWS = 24  # longer lists (per photo) are summarized by their benchmark's own scalars


def cell(v) -> str:
    if isinstance(v, bool) or v is None:
        return "-" if v is None else str(v).lower()
    if isinstance(v, float):
        return f"{v:.3g}" if abs(v) < 1000 else f"{v:.0f}"
    return str(v).replace("|", "/")


def scalars(d: dict) -> dict:
    return {k: v for k, v in d.items() if isinstance(v, (int, float, str, bool)) or v is None}


def tables(d: dict, path: str = "") -> list[tuple[str, list[dict]]]:
    """(where, rows) of every list of row dicts in ``d``, one level of nesting deep."""
    found = []
    for k, v in d.items():
        if isinstance(v, list) and v and all(isinstance(r, dict) for r in v) and len(v) <= MAX_ROWS:
            found.append((path + k, v))
        elif isinstance(v, dict) and not path and k != "machine":
            found += tables(v, f"{k}.")
    return found


def table(rows: list[dict]) -> list[str]:
    columns = list(dict.fromkeys(k for r in rows for k, v in scalars(r).items()))
    lines = ["| " + " | ".join(columns) + " |", "|" + " --- |" * len(columns)]
    lines += ["| " + " | ".join(cell(r.get(c)) for c in columns) + " |" for r in rows]
    return lines


def machine_line(m: dict) -> str:
    flags = ", ".join(m.get("flags", [])) or "none of AVX2 / AVX-512 / VNNI / AMX"
    return (f"Machine: {m.get('cpu', '?')}, {m.get('cores', '?')} cores, flags {flags}; Python {m.get('python')}, "
            f"ONNX Runtime {m.get('onnxruntime', '-')}, torch {m.get('torch', '-')}.")


def render(results: dict) -> str:
    machine = next((r["machine"] for r in results.values() if "machine" in r), {})
    out = [machine_line(machine), ""]
    for name, r in results.items():
        settings = " ".join(Path(a).name for a in r.get("args", [])) or "defaults"
        summary = {k: v for k, v in scalars(r).items() if k not in ("seconds",)}
        out.append(f"**{name}** (`{settings}`, {r.get('seconds', 0):.0f} s)"
                   + ("" if not summary else ": " + ", ".join(f"{k} {cell(v)}" for k, v in summary.items())))
        for where, rows in tables(r):
            out += ["", f"{where}:", "", *table(rows)]
        out.append("")
    return "\n".join(out).rstrip() + "\n"


def readme_block(text: str) -> str:
    return text[text.index(BEGIN) + len(BEGIN):text.index(END)].strip("\n") + "\n"


def write_readme(results: dict) -> None:
    text = README.read_text()
    head, tail = text[:text.index(BEGIN) + len(BEGIN)], text[text.index(END):]
    README.write_text(f"{head}\n{render(results)}{tail}")


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--keep", action="store_true", help="copy benchmarks/results/all.json to benchmarks/measured.json")
    ap.add_argument("--readme", action="store_true", help="rewrite the README's block from benchmarks/measured.json")
    a = ap.parse_args()
    if a.keep:
        shutil.copyfile(HERE / "results" / "all.json", MEASURED)
    results = json.loads(MEASURED.read_text())
    if a.readme:
        write_readme(results)
    print(render(results))


if __name__ == "__main__":
    main()
