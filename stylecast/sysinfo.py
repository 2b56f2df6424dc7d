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


def machine() -> dict:
    cpu = ""
    try:
        with open("/proc/cpuinfo") as f:
            cpu = next((ln.split(":", 1)[1].strip() for ln in f if ln.startswith("model name")), "")
    except OSError:
        pass
    info = {"cpu": cpu or platform.processor(), "cores": os.cpu_count(), "amx": cpu_has_amx(),
            "python": platform.python_version(), "platform": platform.platform()}
    for mod in ("onnxruntime", "torch"):
        try:
            info[mod] = __import__(mod).__version__
        except ImportError:
            pass
    return info
