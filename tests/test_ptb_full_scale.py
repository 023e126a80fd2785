"""benchmarks/ptb_full_scale.py: the fit and the projection, and one tiny end-to-end run on PTB."""

import json

import numpy as np
import pytest
from benchmark_testing import load_benchmark


@pytest.fixture
def ptb_full_scale(monkeypatch):
    return load_benchmark(monkeypatch, "ptb_full_scale")


def test_the_step_time_fit_is_the_least_squares_line(ptb_full_scale):
    a, b = ptb_full_scale.fit_line([(64, 1.0 + 0.01 * 64), (128, 1.0 + 0.01 * 128), (256, 1.0 + 0.01 * 256)])
    assert a == pytest.approx(1.0) and b == pytest.approx(0.01)
    rng = np.random.default_rng(0)
    points = [(float(n), float(t)) for n, t in zip(rng.integers(16, 300, 8), rng.random(8))]
    a, b = ptb_full_scale.fit_line(points)
    lengths, times = np.array(points).T
    residual = times - (a + b * lengths)
    assert abs(residual.sum()) < 1e-9 and abs((residual * lengths).sum()) < 1e-6  # normal equations
    # one point: proportional to the length
    assert ptb_full_scale.fit_line([(100, 2.0)]) == (0.0, pytest.approx(0.02))


@pytest.mark.slow  # reads the whole PTB training split and compiles a few shapes
def test_a_tiny_run_reports_every_length_and_projects_the_epoch(ptb_full_scale, shared_data_dir, tmp_path):
    out = tmp_path / "ptb.json"
    result = ptb_full_scale.main(["--small", "--models", "lstm", "--shapes", "2", "--repeats", "1",
                                  "--nll-samples", "2", "--data-dir", str(shared_data_dir),
                                  "--out", str(out)])
    assert json.loads(out.read_text()) == json.loads(json.dumps(result))
    row = result["models"]["lstm"]
    assert len(row["steps"]) == 2 and row["shapes_precompiled"] >= row["shapes_met_in_epoch_0"] >= 2
    fit = row["fit_seconds"]
    # the projection is the fit summed over the epoch's batches: between all-shortest and
    # all-longest (either way round: two timed shapes on a busy machine can fit a slope < 0)
    ends = [row["steps_per_epoch"] * (fit["a"] + fit["b_per_step"] * steps) for steps in (16, 288)]
    assert min(ends) - 1 <= row["epoch_projected_s"] <= max(ends) + 1
    # ~42k training sentences at batch 32, plus at most one partial batch per length bucket
    assert 1300 <= row["steps_per_epoch"] <= 1330
    assert row["nll"]["num_samples"] == 2 and row["nll"]["test_projected_s"] > 0
