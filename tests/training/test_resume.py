"""A run directory resumes with the batching it was trained with (`resume.inherit_saved`)."""

import json

import tensorflow as tf

from tf_latentflow.runs import RunDirectory
from tf_latentflow.training.config import default_config
from tf_latentflow.training.resume import changed_settings, inherit_saved


def checkpointed_run(path, saved: dict):
    run = RunDirectory(path)
    run.path.mkdir(parents=True)
    run.config_path.write_text(json.dumps(saved))
    tf.train.CheckpointManager(tf.train.Checkpoint(v=tf.Variable(1.0)), run.checkpoint_dir("latest"),
                               max_to_keep=1).save()
    return run


def test_a_run_saved_before_pooled_batching_resumes_with_its_buckets(tmp_path):
    config = default_config("jsb", "af-scf", str(tmp_path / "old"), jit_compile=True)
    assert config.batching == "pooled"
    saved = json.loads(config.to_json())
    del saved["batching"], saved["length_grid_size"]  # written before these settings existed
    run = checkpointed_run(tmp_path / "old", saved)
    resumed = inherit_saved(config)
    assert resumed.batching == "bucketed" and changed_settings(run, resumed) == {}
    # given explicitly, the new batching stands (and the resume check then names it)
    explicit = inherit_saved(config, {"batching"})
    assert explicit.batching == "pooled" and "batching" in changed_settings(run, explicit)


def test_a_new_or_uncheckpointed_directory_takes_the_defaults(tmp_path):
    config = default_config("nottingham", "lstm", str(tmp_path / "new"), jit_compile=True)
    assert inherit_saved(config) == config
    (tmp_path / "new").mkdir()
    (tmp_path / "new" / "config.json").write_text(json.dumps({"batching": "bucketed"}))
    assert inherit_saved(config) == config  # nothing checkpointed: nothing to resume
    saved = json.loads(config.to_json())
    saved["length_grid_size"] = 7
    checkpointed_run(tmp_path / "grid", saved)
    other = default_config("nottingham", "lstm", str(tmp_path / "grid"), jit_compile=True)
    assert inherit_saved(other).length_grid_size == 7
