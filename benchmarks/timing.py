"""Timing helpers shared by the benchmark scripts (run them as `python benchmarks/<name>.py`)."""

import os
import pathlib
import platform
import statistics
import time


def timed(fn, repeats):
    """(median wall seconds, median cores busy) of `fn()` over `repeats` calls, after one
    warm-up call (tracing, XLA). Cores busy = the process's CPU time (every thread, user and
    system) over the wall time of the call: 2.0 keeps both cores of a 2-core machine busy."""
    fn()
    walls, cores = [], []
    for _ in range(repeats):
        wall, cpu = time.perf_counter(), time.process_time()
        fn()
        wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
        walls.append(wall)
        cores.append(cpu / wall if wall > 0 else 0.0)
    return statistics.median(walls), statistics.median(cores)


# The vector extensions that move the reference's ratio: torch's oneDNN kernels use
# AVX-512 and AMX where the CPU has them (docs/performance.md "Against the reference").
VECTOR_FLAGS = ("avx2", "avx512f", "amx_bf16")


def cpu(cpuinfo: str | None = None) -> dict:
    """The CPU's model name and which of VECTOR_FLAGS it has (Linux /proc/cpuinfo)."""
    if cpuinfo is None:
        try:
            cpuinfo = pathlib.Path("/proc/cpuinfo").read_text()
        except OSError:
            return {"model": platform.processor() or None, "flags": None}
    fields = {}
    for line in cpuinfo.splitlines():
        key, _, value = line.partition(":")
        fields.setdefault(key.strip(), value.strip())
    flags = set(fields.get("flags", "").split())
    return {"model": fields.get("model name"), "flags": [f for f in VECTOR_FLAGS if f in flags]}


def machine() -> dict:
    """Platform, CPU, TensorFlow and its thread settings, for a benchmark's JSON."""
    import tensorflow as tf

    return {"platform": platform.platform(), "cpus": os.cpu_count(), "cpu": cpu(), "tensorflow": tf.__version__,
            "threads": {k: os.environ.get(k) for k in ("TF_NUM_INTRAOP_THREADS", "TF_NUM_INTEROP_THREADS")}}
