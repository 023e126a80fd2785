"""Timing helpers shared by the benchmark scripts (run them as `python benchmarks/<name>.py`)."""

import os
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


def machine() -> dict:
    """Platform, CPUs, TensorFlow and its thread settings, for a benchmark's JSON."""
    import tensorflow as tf

    return {"platform": platform.platform(), "cpus": os.cpu_count(), "tensorflow": tf.__version__,
            "threads": {k: os.environ.get(k) for k in ("TF_NUM_INTRAOP_THREADS", "TF_NUM_INTEROP_THREADS")}}
