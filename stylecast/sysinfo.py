"""A description of the machine, recorded with every benchmark result."""

from __future__ import annotations

import os
import platform


def machine() -> dict:
    cpu = ""
    try:
        with open("/proc/cpuinfo") as f:
            cpu = next((ln.split(":", 1)[1].strip() for ln in f if ln.startswith("model name")), "")
    except OSError:
        pass
    info = {"cpu": cpu or platform.processor(), "cores": os.cpu_count(), "python": platform.python_version(),
            "platform": platform.platform()}
    for mod in ("onnxruntime", "torch"):
        try:
            info[mod] = __import__(mod).__version__
        except ImportError:
            pass
    return info
