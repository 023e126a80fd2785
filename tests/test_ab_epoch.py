"""benchmarks/ab_epoch.py's JSON: the speed ratios and the loss differences between sides."""

import argparse
import json

import pytest

from benchmark_testing import load_benchmark


def _row(train_s, first, losses):
    return {"train_s": train_s, "epoch_s": train_s + 1, "first_epoch_s": first, "steadiness": 1.01,
            "train_loss_each": losses, "validation_loss_each": [x - 1 for x in losses]}


def test_ratios_and_loss_differences(monkeypatch, tmp_path):
    ab = load_benchmark(monkeypatch, "ab_epoch")
    out = tmp_path / "ab.json"
    args = argparse.Namespace(epochs=3, out=str(out))
    rows = {"base": {"af-af": _row(50.0, 300.0, [10.0, 8.0, 7.5])},
            "head": {"af-af": _row(40.0, 250.0, [10.0, 8.25, 7.0])}}
    ab.write(args, {"base": (None, "aaa"), "head": (None, "bbb")}, rows, {"cpus": 2})
    ratios = json.loads(out.read_text())["ratios"]["af-af"]
    assert ratios["measure"] == "train_s"
    assert ratios["base_over_head"] == pytest.approx(1.25)
    assert ratios["first_epoch_base_over_head"] == pytest.approx(1.2)
    assert ratios["max_abs_loss_difference"] == {"train": pytest.approx(0.5), "validation": pytest.approx(0.5)}


def test_old_rows_without_losses_still_compare(monkeypatch, tmp_path):
    ab = load_benchmark(monkeypatch, "ab_epoch")
    out = tmp_path / "ab.json"
    old = {"train_s": None, "epoch_s": 60.0, "first_epoch_s": 300.0, "steadiness": 1.2}
    rows = {"base": {"lstm": old}, "head": {"lstm": _row(4.0, 30.0, [9.0, 8.5])}}
    ab.write(argparse.Namespace(epochs=2, out=str(out)), {"base": (None, "a"), "head": (None, "b")},
             rows, {"cpus": 2})
    ratios = json.loads(out.read_text())["ratios"]["lstm"]
    assert ratios["measure"] == "epoch_s" and ratios["base_over_head"] == pytest.approx(12.0)
    assert "max_abs_loss_difference" not in ratios
