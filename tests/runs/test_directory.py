"""The run directory: config.json written in one place, checkpoints, history, results, load."""

import json

import keras
import numpy as np
import pytest
import tensorflow as tf

from tf_latentflow.layers import LengthModel
from tf_latentflow.runs import ModelSettings, RunDirectory, build_model
from tf_latentflow.runs.checkpoints import IncompleteCheckpointError, checkpoint_objects

SMALL = dict(latent_size=4, embedding_size=8, hidden_units=8, prior_lstm_units=8, num_flow_layers=2,
             flow_hidden_units=(8,))


def small(model="af-scf", seed=0, **overrides):
    keras.utils.set_random_seed(seed)
    settings = ModelSettings(model=model, dataset="jsb_chorales", **dict(SMALL, **overrides))
    return build_model(settings, LengthModel.from_lengths([3, 4, 6], smoothing=True, name="length_model"))


def save(run, model, kind="best", number=1):
    return run.checkpoint_manager(tf.train.Checkpoint(**checkpoint_objects(model)), kind).save(
        checkpoint_number=number)


def test_config_json_holds_settings_model_config_and_run_facts(tmp_path):
    run, model = RunDirectory(tmp_path / "run"), small()
    written = run.write_config({"model": "af-scf", "dataset": "jsb_chorales", "seed": 4}, model,
                               precision_policy="mixed_float16", num_replicas=2, vocabulary=("a", "b"))
    saved = run.read_config()
    assert saved == json.loads(json.dumps(written))
    assert saved["seed"] == 4 and saved["precision_policy"] == "mixed_float16" and saved["num_replicas"] == 2
    assert saved["vocabulary"] == ["a", "b"]
    assert saved["model_config"]["prior"] == "af-scf" and saved["model_config"]["latent_size"] == 4
    assert not list(run.path.glob("*.tmp"))  # written through a temporary file
    with pytest.raises(ValueError, match="unknown model"):
        run.write_config({"model": "gru", "dataset": "jsb_chorales"}, model)


@pytest.mark.parametrize("model_name", ["af-scf", "lstm"])
def test_load_restores_the_saved_function(tmp_path, model_name):
    run, trained = RunDirectory(tmp_path / model_name), small(model_name, seed=1)
    run.write_config({"model": model_name, "dataset": "jsb_chorales", "nll_samples": 7}, trained)
    save(run, trained)
    loaded = run.load()
    assert loaded.checkpoint.endswith("ckpt-1") and loaded.vocabulary is None
    assert loaded.nll_samples == (0 if model_name == "lstm" else 7)
    x = tf.constant((np.random.default_rng(0).random((2, 5, 88)) < 0.2).astype(np.float32))
    lengths = tf.constant([5, 2])
    expected = trained.nll_terms(x, lengths, num_samples=3, seed=2)["nll"].numpy()
    np.testing.assert_allclose(loaded.model.nll_terms(x, lengths, num_samples=3, seed=2)["nll"].numpy(),
                               expected, rtol=1e-6)
    assert any(not np.allclose(a.numpy(), b.numpy())  # an untrained rebuild differs
               for a, b in zip(small(model_name, seed=2).weights, trained.weights))


def test_best_falls_back_to_latest_and_kinds_are_checked(tmp_path):
    run, model = RunDirectory(tmp_path / "run"), small()
    run.write_config({"model": "af-scf", "dataset": "jsb_chorales"}, model)
    with pytest.raises(FileNotFoundError, match="no best or latest checkpoint"):
        run.load()
    assert not run.has_checkpoint()
    save(run, model, "latest", 5)
    assert run.has_checkpoint() and run.load("best").checkpoint.endswith("latest/ckpt-5")
    with pytest.raises(ValueError, match="checkpoint must be one of"):
        run.load("newest")
    with pytest.raises(FileNotFoundError, match="config.json not found"):
        RunDirectory(tmp_path / "empty").load()


def test_a_checkpoint_of_another_model_is_refused(tmp_path):
    run = RunDirectory(tmp_path / "run")
    run.write_config({"model": "af-scf", "dataset": "jsb_chorales"}, small())
    save(run, small(latent_size=3))
    with pytest.raises(IncompleteCheckpointError):
        run.load()


def test_history_results_and_clear(tmp_path):
    run = RunDirectory(tmp_path / "run")
    assert run.read_history() == []
    run.path.mkdir()
    run.append_history({"epoch": 0, "loss": 1.5})
    run.append_history({"epoch": 1, "loss": 1.25})
    assert run.read_history() == [{"epoch": 0, "loss": 1.5}, {"epoch": 1, "loss": 1.25}]
    run.keep_history(2)
    assert len(run.read_history()) == 2
    run.keep_history(1)  # a resume from the checkpoint after epoch 0
    assert run.history_path.read_text() == '{"epoch": 0, "loss": 1.5}\n'
    run.keep_history(0)  # a resume of a run killed before its first checkpoint
    assert not run.history_path.exists()
    run.append_history({"epoch": 0, "loss": 1.5})
    run.append_history({"epoch": 1, "loss": 1.25})
    run.write_results({"test": {"nll": 6.5}})
    assert run.read_results() == {"test": {"nll": 6.5}}
    model = small()
    run.write_config({"model": "af-scf", "dataset": "jsb_chorales"}, model)
    for number in range(3):  # latest keeps 2
        save(run, model, "latest", number)
    assert len(list(run.checkpoint_dir("latest").glob("*.index"))) == 2
    run.tensorboard_dir.mkdir()
    run.clear()
    assert sorted(p.name for p in run.path.iterdir()) == []
