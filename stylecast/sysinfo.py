"""A description of the machine, recorded with every benchmark result."""

from __future__ import annotations

import os
import platform


def cpu_has_amx() -> bool:
    """bf16 pays off on CPUs with AMX; elsewhere it is many times slower than fp32."""
    try:
        with open("/proc/cpuinfo") as f:
            return "amx_bf16" in f.read()
    except OSError:
        return False


# The instruction sets that decide which precision pays: bf16 needs AMX, int8 wants VNNI.
FLAGS_OF_INTEREST = ("avx2", "fma", "avx512f", "avx512bw", "avx512_vnni", "avx_vnni", "avx512_bf16", "amx_bf16",
                     "amx_int8", "amx_tile")


def cpu_flags() -> list[str]:
    """The flags of FLAGS_OF_INTEREST this CPU has (from /proc/cpuinfo)."""
    try:
        with open("/proc/cpuinfo") as f:
            line = next((ln for ln in f if ln.startswith("flags")), "")
    except OSError:
        return []
    have = set(line.split(":", 1)[-1].split())
    return [f for f in FLAGS_OF_INTEREST if f in have]


def machine() -> dict:
    cpu = ""
    try:
        with open("/proc/cpuinfo") as f:
            cpu = next((ln.split(":", 1)[1].strip() for ln in f if ln.startswith("model name")), "")
    except OSError:
        pass
    info = {"cpu": cpu or platform.processor(), "cores": os.cpu_count(), "amx": cpu_has_amx(), "flags": cpu_flags(),
            "python": platform.python_version(), "platform": platform.platform()}
    for mod in ("onnxruntime", "torch"):
        try:
            info[mod] = __import__(mod).__version__
        except ImportError:
            pass
    return info
