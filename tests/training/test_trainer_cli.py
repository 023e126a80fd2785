"""`python -m trainers.music` end to end on the real JSB files with tiny sizes."""

import json
import os
import pathlib

import numpy as np
import pytest

from tf_latentflow.training.config import MUSIC_DATASETS
from trainers.cli import main


def data_dir():
    for candidate in (os.environ.get("LATENTFLOW_DATA_DIR"),
                      pathlib.Path(__file__).resolve().parents[3] / "shared" / "data"):
        if candidate and (pathlib.Path(candidate) / "jsb_chorales").is_dir():
            return str(candidate)
    pytest.skip("JSB Chorales not found in $LATENTFLOW_DATA_DIR or ../shared/data")


def run_cli(tmp_path, model, *extra):
    argv = ["--dataset", "jsb", "--model", model, "--data-dir", data_dir(),
            "--prepared-dir", str(tmp_path / "prepared"), "--output-dir", str(tmp_path / model),
            "--epochs", "2", "--max-steps-per-epoch", "2", "--max-eval-batches", "1",
            "--kl-zero-epochs", "0", "--kl-ramp-epochs", "1", "--nll-samples", "2",
            "--latent-size", "4", "--embedding-size", "8", "--hidden-units", "8",
            "--prior-lstm-units", "8", "--num-flow-layers", "2", "--flow-hidden-units", "8", *extra]
    return main(argv, prog="trainers.music", datasets=MUSIC_DATASETS, default_dataset="jsb_chorales",
                description="test")


def check_results(tmp_path, model):
    results = json.loads((tmp_path / model / "results.json").read_text())
    assert results["model"] == model and results["epochs_trained"] == 2
    for split in ("validation", "test"):
        assert np.isfinite(results[split]["nll"]) and results[split]["unit"] == "nats per time step"


@pytest.mark.slow  # the default suite's 10-minute budget
def test_cli_trains_evaluates_and_prints_the_table(tmp_path, capsys):
    # graph execution here; the slow tests run every model through the CLI with XLA (the default)
    assert run_cli(tmp_path, "af-scf", "--no-jit-compile") == 0
    check_results(tmp_path, "af-scf")
    out = capsys.readouterr().out
    assert "jsb_chorales / af-scf" in out and "\ntest " in out
    # Other settings in the same directory: refused with the differences, exit code 1.
    assert run_cli(tmp_path, "af-scf", "--no-jit-compile", "--batch-size", "3") == 1
    assert "batch_size 5 (saved) vs 3 (now)" in capsys.readouterr().err


@pytest.mark.slow
@pytest.mark.parametrize("model", ["af-af", "iaf-scf", "af-only", "lstm"])
def test_cli_runs_every_model(tmp_path, model):
    assert run_cli(tmp_path, model) == 0
    check_results(tmp_path, model)
    # independent value: a new process state restoring the best checkpoint (--evaluate-only)
    # must reproduce the evaluation exactly (the importance samples are seeded)
    first = json.loads((tmp_path / model / "results.json").read_text())
    assert run_cli(tmp_path, model, "--evaluate-only") == 0
    again = json.loads((tmp_path / model / "results.json").read_text())
    for split in ("validation", "test"):
        assert again[split]["nll"] == pytest.approx(first[split]["nll"], rel=1e-6)
    assert again["best_epoch"] == first["best_epoch"]


@pytest.mark.parametrize("flags, message", [
    (["--latent-size", "128"], "latent_size 128 is larger than the MADE width 100"),
    (["--patience", "0"], "patience must be >= 1"),
    (["--learning-rate", "1e-3", "--model", "lstm", "--scalar-map", "affine"], "no scalar map"),
])
def test_settings_that_cannot_work_exit_2_before_anything_is_written(tmp_path, capsys, flags,
                                                                      message):
    argv = ["--dataset", "jsb", "--model", "af-af", "--output-dir", str(tmp_path / "run"), *flags]
    code = main(argv, prog="trainers.music", datasets=MUSIC_DATASETS,
                default_dataset="jsb_chorales", description="test")
    err = capsys.readouterr().err.strip()
    assert code == 2 and message in err and len(err.splitlines()) == 1
    assert not (tmp_path / "run").exists()


def test_xla_cache_dir_reaches_tensorflow_before_the_run(tmp_path, monkeypatch):
    import trainers.cli as cli
    from tf_latentflow.data import DataError

    seen = {}

    def fake_run(config, force_new):
        seen["flags"], seen["jit"] = os.environ.get("TF_XLA_FLAGS"), config.jit_compile
        raise DataError("stop before training")

    monkeypatch.setattr(cli, "run", fake_run)
    monkeypatch.delenv("TF_XLA_FLAGS", raising=False)
    monkeypatch.delenv("LATENTFLOW_XLA_CACHE_DIR", raising=False)
    assert run_cli(tmp_path, "af-scf", "--jit-compile", "--xla-cache-dir", str(tmp_path / "xla")) == 1
    assert seen == {"flags": f"--tf_xla_persistent_cache_directory={tmp_path / 'xla'}", "jit": True}
    assert (tmp_path / "xla").is_dir()
    monkeypatch.delenv("TF_XLA_FLAGS")
    assert run_cli(tmp_path, "af-scf", "--no-jit-compile", "--xla-cache-dir", str(tmp_path / "x2")) == 1
    assert seen["flags"] is None and not (tmp_path / "x2").exists()  # no XLA, no cache
    assert run_cli(tmp_path, "af-scf", "--jit-compile") == 1
    assert seen["flags"] is None  # off unless asked for
