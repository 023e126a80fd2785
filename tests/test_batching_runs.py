"""benchmarks/batching_runs.py: two harvested runs side by side, read against the seeds' spread."""

import json

import pytest

from benchmark_testing import load_benchmark


def write_run(folder, name, test_nll, validation_losses, batching=None):
    config = {"dataset": "jsb_chorales", "model": "af-scf", "seed": 0}
    if batching:
        config["batching"] = batching
    results = {"config": config, "best_epoch": len(validation_losses) - 1,
               "test": {"nll": test_nll}, "validation": {"nll": test_nll + 0.05}}
    (folder / f"{name}.json").write_text(json.dumps(results))
    rows = [{"epoch": i, "train_loss": v + 1.0, "validation_loss": v, "learning_rate": 1e-3,
             "train_seconds": 30.0 + i} for i, v in enumerate(validation_losses)]
    (folder / f"{name}.history.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    return str(folder / name)


def test_the_runs_line_up_by_epoch_and_the_new_nll_is_read_against_the_seeds(monkeypatch, tmp_path):
    bench = load_benchmark(monkeypatch, "batching_runs")
    new = write_run(tmp_path, "pooled", 6.60, [10.0, 8.0, 7.0], batching="pooled")
    old = write_run(tmp_path, "seed0", 6.53, [10.5, 8.5])  # an old config names no batching
    seeds = [write_run(tmp_path, "seed1", 6.67, [9.0]), write_run(tmp_path, "seed2", 6.56, [9.0])]
    out = tmp_path / "out.json"
    result = bench.main([new, old, "--seeds", *seeds, "--out", str(out)])

    assert json.loads(out.read_text()) == result
    assert result["new"]["batching"] == "pooled" and result["old"]["batching"] == "bucketed"
    assert result["new"]["epochs"] == 3 and result["old"]["epochs"] == 2
    assert result["new"]["train_seconds_median"] == pytest.approx(31.5)  # epochs 1-2: 31, 32
    assert result["seed_range"] == [6.53, 6.67]
    assert result["within_seed_spread"] is True and result["against_seed_spread"] == "within"
    assert result["seed_mean"] == pytest.approx((6.53 + 6.67 + 6.56) / 3)
    assert result["seed_sd"] == pytest.approx(0.0737111, abs=1e-6)
    assert result["epochs_compared"] == 2
    assert result["validation_loss_mean_abs_difference"] == pytest.approx(0.5)
    last = result["epochs_each"][2]
    assert last["new_validation_loss"] == 7.0 and "old_validation_loss" not in last


def test_a_run_outside_the_seeds_range_is_flagged(monkeypatch, tmp_path):
    bench = load_benchmark(monkeypatch, "batching_runs")
    new = write_run(tmp_path, "pooled", 6.70, [10.0], batching="pooled")
    old = write_run(tmp_path, "seed0", 6.53, [10.0])
    result = bench.compare(new, old, [write_run(tmp_path, "seed1", 6.67, [9.0])])
    assert result["within_seed_spread"] is False and result["against_seed_spread"] == "above"
    better = write_run(tmp_path, "better", 6.50, [10.0], batching="pooled")
    assert bench.compare(better, old, [])["against_seed_spread"] == "below"
