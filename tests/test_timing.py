"""benchmarks/timing.py: wall time and the cores a call keeps busy, against known work."""

import threading
import time

import pytest
from benchmark_testing import load_benchmark


@pytest.fixture
def timing(monkeypatch):
    return load_benchmark(monkeypatch, "timing")


def _spin(seconds):
    end = time.thread_time() + seconds
    while time.thread_time() < end:
        pass


def test_a_sleeping_call_keeps_no_core_busy_and_a_spinning_one_keeps_one(timing):
    calls = []
    wall, cores = timing.timed(lambda: (calls.append(1), time.sleep(0.05)), repeats=3)
    assert len(calls) == 4  # one warm-up call, then the timed ones
    assert wall == pytest.approx(0.05, abs=0.04) and cores < 0.2
    wall, cores = timing.timed(lambda: _spin(0.05), repeats=3)
    assert 0.04 <= wall and 0.25 < cores <= 1.1  # 1 unless other processes take the core


def test_cpu_time_of_every_thread_counts(timing):
    def two_threads():  # CPU time in a second thread, while this one sleeps
        worker = threading.Thread(target=_spin, args=(0.05,))
        worker.start()
        time.sleep(0.02)
        worker.join()

    _, cores = timing.timed(two_threads, repeats=3)
    assert cores > 0.25


def test_cpu_reads_the_model_and_the_vector_extensions_of_the_first_processor(timing):
    cpuinfo = ("processor\t: 0\nmodel name\t: Example Xeon\nflags\t\t: fpu sse2 avx2 avx512f avx512bw\n\n"
               "processor\t: 1\nmodel name\t: Other\nflags\t\t: fpu amx_bf16\n")
    assert timing.cpu(cpuinfo) == {"model": "Example Xeon", "flags": ["avx2", "avx512f"]}
    assert timing.cpu("processor\t: 0\n") == {"model": None, "flags": []}
