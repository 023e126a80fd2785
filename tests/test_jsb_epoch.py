"""benchmarks/jsb_epoch.py: the steps an epoch holds and the ratios to JSB's epoch."""

import json
import types

import numpy as np
import pytest

from benchmark_testing import load_benchmark


def test_ratios_to_jsb(monkeypatch):
    bench = load_benchmark(monkeypatch, "jsb_epoch")
    rows = {"af-scf": {"train_s": 420.0, "train_time_steps": 128_000, "train_padded_steps": 150_000}}
    jsb = {"af-scf": {"train_s": 35.0, "train_time_steps": 10_000, "train_padded_steps": 12_500}}
    bench.add_ratios(rows, jsb)
    row = rows["af-scf"]
    assert row["jsb_train_s"] == 35.0
    assert row["ratio_to_jsb"] == pytest.approx(12.0)
    assert row["time_step_ratio"] == pytest.approx(12.8)
    assert row["padded_step_ratio"] == pytest.approx(12.0)


@pytest.mark.parametrize("batching", ["bucketed", "pooled"])
def test_padded_steps_cover_every_sequence_on_the_xla_grid(monkeypatch, shared_data_dir, tmp_path, batching):
    from tf_latentflow import data as D
    from tf_latentflow.training import default_config
    from tf_latentflow.training.inputs import XLA_TIME_MULTIPLE, batches, load_data

    bench = load_benchmark(monkeypatch, "jsb_epoch")
    config = default_config("jsb", "af-scf", str(tmp_path / "run"), data_dir=str(shared_data_dir),
                            prepared_dir=str(tmp_path / "tfds"), jit_compile=True, batching=batching)
    trainer = types.SimpleNamespace(config=config, bundle=load_data(config))
    padded = bench.padded_steps(trainer)
    lengths = trainer.bundle.lengths["train"]
    # Independently: each sequence padded up to the grid is a lower bound (fill rows add more);
    # every row a batch holds has the batch's padded length, a point of the grid.
    if batching == "bucketed":
        on_grid = -(-lengths // XLA_TIME_MULTIPLE) * XLA_TIME_MULTIPLE
        grid_point = lambda steps: steps % XLA_TIME_MULTIPLE == 0  # noqa: E731
    else:
        grid = D.length_grid(lengths, config.length_grid_size)
        on_grid = np.array([grid[np.searchsorted(grid, n)] for n in lengths])
        grid_point = set(grid).__contains__
    assert padded >= int(np.sum(on_grid))
    shapes = [tuple(b["x"].shape[:2]) for b in batches(config, trainer.bundle, "train", epoch=0)]
    assert all(rows == config.batch_size and grid_point(steps) for rows, steps in shapes)
    assert padded == sum(rows * steps for rows, steps in shapes)
    assert sum(rows for rows, _ in shapes) >= len(lengths)


def test_reference_seconds_are_the_medians_of_the_harness_files(monkeypatch, tmp_path):
    jsb_epoch = load_benchmark(monkeypatch, "jsb_epoch")
    files = []
    for model, seconds in (("af-af", [66.0, 62.0, 70.0]), ("lstm", [9.5])):
        path = tmp_path / f"train_{model}.json"
        path.write_text(json.dumps({"what": "train", "model": model, "seconds_each": seconds}))
        files.append(path)
    assert jsb_epoch.reference_seconds(files) == {"af-af": 66.0, "lstm": 9.5}
    nll = tmp_path / "nll.json"
    nll.write_text(json.dumps({"what": "nll", "model": "af-af", "seconds_each": [74.0]}))
    with pytest.raises(ValueError, match="not a training-pass"):
        jsb_epoch.reference_seconds([nll])
