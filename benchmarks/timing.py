"""Timing helpers shared by the benchmark scripts (run them as `python benchmarks/<name>.py`)."""

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

