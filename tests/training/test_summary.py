"""The seed table: statistics against NumPy, the reproducing command through the real CLI
parser, runs that differ beyond the seed flagged, and the CLI."""

import argparse
import dataclasses
import json
import pathlib
import shlex

import numpy as np
import pytest

from tf_latentflow.training import summary
from tf_latentflow.training.config import (MUSIC_DATASETS, TEXT_DATASETS, add_arguments, config_from_args,
                                           default_config)
from trainers import summary as summary_cli


def _write(directory, name, config, nll, wall=600.0, epochs_trained=None):
    record = {"dataset": config.dataset, "model": config.model, "wall_seconds": wall,
              "epochs_trained": config.epochs if epochs_trained is None else epochs_trained,
              "config": {k: v for k, v in dataclasses.asdict(config).items() if k != "output_dir"},
              "test": {"nll": nll, "unit": "nats per time step"}}
    (directory / f"{name}.json").write_text(json.dumps(record))


def _parse(command):
    words = shlex.split(command.split("  (no flag")[0])
    assert words[:3] == ["python", "-m", "trainers.music"] or words[:3] == ["python", "-m", "trainers.text"]
    parser = argparse.ArgumentParser()
    add_arguments(parser, datasets=tuple(MUSIC_DATASETS) + tuple(TEXT_DATASETS), default_dataset="jsb_chorales")
    if words[2] == "trainers.text":
        words[3:3] = ["--dataset", "ptb"]
    return config_from_args(parser.parse_args(words[3:]))


def test_mean_sd_min_and_paper_difference(tmp_path):
    nll = [6.528, 6.555, 6.61]
    for seed, value in enumerate(nll):
        config = default_config("jsb", "af-scf", "x", seed=seed, epochs=65, min_learning_rate=1e-6)
        _write(tmp_path, f"af-scf-seed{seed}", config, value, wall=60.0 * (90 + seed))
    _write(tmp_path, "lstm-seed0", default_config("jsb", "lstm", "x"), 8.07)
    (tmp_path / "af-scf-allref.json").write_text("{}")  # not a seed file: ignored
    rows = summary.seed_rows(tmp_path)
    assert [r.model for r in rows] == ["af-scf", "lstm"]
    row = rows[0]
    assert row.seeds == (0, 1, 2) and row.test_nll == tuple(nll)
    assert row.mean == pytest.approx(np.mean(nll))
    assert row.sd == pytest.approx(np.std(nll, ddof=1))
    assert row.minimum == 6.528 and row.paper == 6.64
    assert row.difference == pytest.approx(np.mean(nll) - 6.64)
    assert row.wall_minutes == pytest.approx(91.0) and row.differences == ()
    assert rows[1].sd is None and rows[1].paper == 8.17
    table = summary.markdown(rows)
    assert "| af-scf | 0, 1, 2 | 6.528, 6.555, 6.610 | **6.564** | 0.042 | 6.528 | 6.64 | -0.076 | 91 |" in table
    assert "Test NLL in nats per time step." in table


@pytest.mark.parametrize("dataset,model,overrides", [
    ("jsb", "af-af", dict(seed=2, epochs=65, min_learning_rate=1e-6, inference_dropout=0.0,
                          flow_hidden_units=(64, 64), nlsq_damping=True, kl_start_weight=1e-5)),
    ("ptb", "iaf-scf", dict(train_subset=1500, embedding_size=256, kl_zero_epochs=1, jit_compile=False)),
    ("piano", "lstm", dict(optimizer="sgd", learning_rate=20.0)),
])
def test_the_command_makes_the_same_config(tmp_path, dataset, model, overrides):
    config = default_config(dataset, model, "somewhere", **overrides)
    parsed = _parse(summary.command(config))
    ignored = {"output_dir", "data_dir"}
    got = {k: v for k, v in dataclasses.asdict(parsed).items() if k not in ignored}
    want = {k: v for k, v in dataclasses.asdict(config).items() if k not in ignored}
    assert got == want


def test_settings_without_a_flag_are_named():
    config = default_config("jsb", "af-scf", "x", lr_decay=2.0)
    assert summary.command(config).endswith("(no flag: lr_decay=2.0)")


def test_the_command_writes_to_the_row_s_directory(tmp_path):
    # A row named for an ablation of a model (the file's name, not `--model`).
    _write(tmp_path, "af-af-affine-seed3", default_config("ptb", "af-af", "x", seed=3, scalar_map="affine"), 3.0)
    row = summary.seed_rows(tmp_path)[0]
    words = shlex.split(row.command)
    assert row.model == "af-af-affine" and words[words.index("--model") + 1] == "af-af"
    assert words[words.index("--output-dir") + 1] == "runs/ptb_char/af-af-affine-seed3"
    assert _parse(row.command).scalar_map == "affine"


def test_runs_differing_beyond_the_seed_are_flagged(tmp_path):
    _write(tmp_path, "iaf-scf-seed0", default_config("jsb", "iaf-scf", "x", seed=0), 6.6)
    _write(tmp_path, "iaf-scf-seed1", default_config("jsb", "iaf-scf", "x", seed=1, emission_dropout=0.0), 6.7)
    row = summary.seed_rows(tmp_path)[0]
    assert row.differences == ("emission_dropout",)
    assert "iaf-scf (differ: emission_dropout)" in summary.markdown([row])


def test_the_evaluation_batch_is_not_a_difference_but_its_samples_are(tmp_path):
    # Seed 0 evaluated in batches of 16 (before the default became 8): the same estimator.
    _write(tmp_path, "af-scf-seed0", default_config("jsb", "af-scf", "x", seed=0, eval_batch_size=16), 6.5)
    _write(tmp_path, "af-scf-seed1", default_config("jsb", "af-scf", "x", seed=1), 6.6)
    assert summary.seed_rows(tmp_path)[0].differences == ()
    _write(tmp_path, "af-scf-seed2", default_config("jsb", "af-scf", "x", seed=2, nll_samples=10), 6.7)
    assert summary.seed_rows(tmp_path)[0].differences == ("nll_samples",)


def test_epochs_differ_only_if_the_trained_epochs_do(tmp_path):
    # Seed 0 set to 100 epochs and stopped by hand after 65; seed 1 set to 65.
    _write(tmp_path, "af-af-seed0", default_config("jsb", "af-af", "x", seed=0), 6.5, epochs_trained=65)
    _write(tmp_path, "af-af-seed1", default_config("jsb", "af-af", "x", seed=1, epochs=65), 6.6)
    row = summary.seed_rows(tmp_path)[0]
    assert row.differences == () and "--epochs 65 --seed 1" in row.command
    _write(tmp_path, "af-af-seed2", default_config("jsb", "af-af", "x", seed=2, epochs=40), 6.7)
    assert summary.seed_rows(tmp_path)[0].differences == ("epochs",)


def test_cli(tmp_path, capsys):
    assert summary_cli.main([str(tmp_path)]) == 1
    _write(tmp_path, "lstm-seed0", default_config("jsb", "lstm", "x"), 8.07)
    assert summary_cli.main([str(tmp_path)]) == 0
    assert "| lstm | 0 | 8.070 | **8.070** |" in capsys.readouterr().out
