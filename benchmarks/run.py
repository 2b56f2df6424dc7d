"""Every benchmark in one command, about 10 minutes on 2 cores:

    .venv/bin/python benchmarks/run.py            # or --full for the long settings of each script

Runs runtimes.py, serving.py, sidecar.py and training.py one after another (each in its own process,
so none disturbs another's timings), prints their tables, and collects their JSON files (each with the
machine description) into benchmarks/results/all.json. The quick settings: two repeats, Gatys for 100
steps instead of 300 (about 0.85 s per step here, so the 300-step time is three times that), training
fp32 only (bf16 is measured by `training.py --precisions fp32,bf16`).
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
QUICK = {
    "runtimes": ["--repeats", "3"],
    "serving": ["--repeats", "3", "--per-client", "3"],
    "sidecar": ["--repeats", "2", "--gatys-steps", "100"],
    "training": ["--steps", "2", "--precisions", "fp32"],
}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--full", action="store_true", help="each script's default (longer) settings")
    ap.add_argument("--only", help="comma-separated: runtimes,serving,sidecar,training")
    a = ap.parse_args()
    results, t_start = {}, time.perf_counter()
    for name in a.only.split(",") if a.only else QUICK:
        args = [] if a.full else QUICK[name]
        print(f"\n=== {name} {' '.join(args)}", flush=True)
        t0 = time.perf_counter()
        subprocess.run([sys.executable, str(HERE / f"{name}.py"), *args], cwd=HERE, check=True)
        data = json.loads((HERE / "results" / f"{name}.json").read_text())
        results[name] = {"seconds": time.perf_counter() - t0, "args": args, **data}
    out = HERE / "results" / "all.json"
    out.write_text(json.dumps(results, indent=2))
    print(f"\nall benchmarks in {time.perf_counter() - t_start:.0f} s; wrote {out}")


if __name__ == "__main__":
    main()
