"""benchmarks/iterator_release.py: one row per epoch from the trainer's own pipeline, and the summary."""

import pytest
from benchmark_testing import load_benchmark


@pytest.fixture
def iterator_release(monkeypatch):
    return load_benchmark(monkeypatch, "iterator_release")


def test_the_summary_counts_the_slow_releases(iterator_release):
    rows = [{"release_s": 34.7}, {"release_s": 0.0}, {"release_s": 34.8}, {"release_s": 0.5}]
    assert iterator_release.summary(rows) == {"release_total_s": 70.0, "release_max_s": 34.8,
                                              "epochs_over_1s": 2}


def test_each_epoch_reads_the_training_batches_then_releases_the_iterator(iterator_release, shared_data_dir):
    rows = iterator_release.measure("jsb", epochs=2, steps=3, step_seconds=0.0, data_dir=str(shared_data_dir))
    assert [r["batches"] for r in rows] == [3, 3]
    assert all(r["read_s"] >= 0 and r["release_s"] >= 0 for r in rows)
    # more steps than an epoch has: the epoch's batches, then the release (229 chorales, batch 5)
    (whole,) = iterator_release.measure("jsb", epochs=1, steps=1000, step_seconds=0.0,
                                        data_dir=str(shared_data_dir))
    assert 46 <= whole["batches"] <= 60
