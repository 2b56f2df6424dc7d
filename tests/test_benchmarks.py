"""The README's benchmark block is exactly the rendering of benchmarks/measured.json (the last full
benchmarks/run.py), so its numbers cannot drift from what was measured."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def _tables():
    spec = importlib.util.spec_from_file_location("tables", ROOT / "benchmarks" / "tables.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_the_readme_quotes_the_measured_json():
    tables = _tables()
    measured = json.loads(tables.MEASURED.read_text())
    assert set(measured) >= {"runtimes", "serving", "realtime", "video", "sidecar", "training", "quality",
                             "add_style", "soak"}, sorted(measured)
    assert tables.readme_block((ROOT / "README.md").read_text()) == tables.render(measured)


def test_rendering_is_a_table_per_list_of_rows():
    tables = _tables()
    text = tables.render({"demo": {"seconds": 3.0, "args": ["--repeats", "3"], "machine": {"cpu": "X", "flags": []},
                                   "repeats": 3, "rows": [{"size": 256, "ms": 12.345}, {"size": 512, "ms": 40.0}]}})
    assert "**demo** (`--repeats 3`, 3 s): repeats 3" in text
    assert "| size | ms |\n| --- | --- |\n| 256 | 12.3 |\n| 512 | 40 |" in text
