"""Every benchmark in one command, with quick settings (or each script's own with --full):

    .venv/bin/python benchmarks/run.py            # or --full for the long settings of each script

Runs runtimes, serving, realtime, video, sidecar, training, quality, add_style, soak and (where CUDA is
there) gpu, one after another (each in its own process, so none disturbs another's timings), prints their
tables, and collects their JSON files (each with the machine description: CPU model and flags, AVX-512,
VNNI, AMX) into benchmarks/results/all.json. The quick settings: few repeats, Gatys for 100 steps instead
of 300 (the 300-step time is three times that), training fp32 only, the quality measure on 4 photos without
per-image optimization, add-style for 20 steps on one painting (its quality needs the default 160), a 30 s
soak. ``--only a,b`` reruns some and keeps the others' results in all.json. ``benchmarks/tables.py`` turns
all.json into the README's table of this machine's run.
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
    "realtime": ["--repeats", "5"],
    "video": ["--frames", "4", "--sizes", "256x256,512x512", "--in-flight", "1,4"],
    "sidecar": ["--repeats", "2", "--gatys-steps", "100", "--units", "relu4_3:17", "--unit-steps", "50"],
    "training": ["--steps", "2", "--precisions", "fp32"],
    "quality": ["--max-photos", "4", "--gatys-photos", "0"],
    "add_style": ["--steps", "20", "--painting", str(HERE / "paintings" / "night_cafe.jpg"), "--max-photos", "4"],
    "soak": ["--seconds", "30", "--clients", "4"],
    "gpu": ["--repeats", "5"],
}


def has_cuda() -> bool:
    try:
        import torch
    except ImportError:
        return False
    return torch.cuda.is_available()


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--full", action="store_true", help="each script's default (longer) settings")
    ap.add_argument("--only", help=f"comma-separated, of: {','.join(QUICK)}")
    a = ap.parse_args()
    results, t_start = {}, time.perf_counter()
    names = a.only.split(",") if a.only else [n for n in QUICK if n != "gpu" or has_cuda()]
    out = HERE / "results" / "all.json"
    if a.only and out.exists():  # a rerun of some: the others stay as they were measured
        results = json.loads(out.read_text())
    for name in names:
        args = [] if a.full else QUICK[name]
        print(f"\n=== {name} {' '.join(args)}", flush=True)
        t0 = time.perf_counter()
        subprocess.run([sys.executable, str(HERE / f"{name}.py"), *args], cwd=HERE, check=True)
        data = json.loads((HERE / "results" / f"{name}.json").read_text())
        results[name] = {"seconds": time.perf_counter() - t0, "args": args, **data}
        results = {k: results[k] for k in QUICK if k in results}
        out.write_text(json.dumps(results, indent=2))  # after each: a failure keeps what was measured
    from report import print_table

    print()
    print_table([{"benchmark": k, "seconds": v["seconds"], "args": " ".join(Path(x).name for x in v["args"])}
                 for k, v in results.items()], [("benchmark", "benchmark", ""), ("seconds", "seconds", ".0f"),
                                                ("args", "settings", "")])
    print(f"\nall benchmarks in {time.perf_counter() - t_start:.0f} s; wrote {out}")


if __name__ == "__main__":
    main()
