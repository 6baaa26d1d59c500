"""One line describing the machine and software, printed at the top of every benchmark."""

import os
import platform
import sys


def cpu_model():
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown CPU"


def describe():
    import numpy
    threads = os.environ.get("OMP_NUM_THREADS", "unset")
    return (f"machine: {cpu_model()}, {os.cpu_count()} cores, {platform.system()} | "
            f"Python {sys.version.split()[0]}, NumPy {numpy.__version__} | OMP_NUM_THREADS={threads}")
