"""Timing helper shared by the benchmark scripts (run them as `python benchmarks/<name>.py`)."""

import statistics
import time


def median_seconds(fn, repeats):
    """Median wall time of `fn()` over `repeats` calls, after one warm-up call (tracing, XLA)."""
    fn()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)
