"""Helpers of the export tests: tiny trained runs, and a reload in a clean subprocess."""

from __future__ import annotations

import json
import os
import pathlib
import subprocess
import sys
import textwrap

import numpy as np
import tensorflow as tf

from tf_latentflow.training import trainer as trainer_lib
from tf_latentflow.training.config import default_config
import training_testing
from training_testing import TINY

REPO_ROOT = pathlib.Path(__file__).resolve().parents[1]
BLOCKED = ("tensorflow_probability", "tf_keras", "tf_latentflow", "trainers", "export")


def synthetic_music_bundle(seed=0):
    return training_testing.synthetic_music_bundle(seed, sizes=(8, 4, 4))


def train_tiny_run(run_dir, model: str, *, steps: int = 2, **overrides) -> trainer_lib.Trainer:
    """A music run of `model` trained for `steps` steps of one epoch (checkpoints/latest and best)."""
    fields = dict(TINY, epochs=1, batch_size=4, kl_zero_epochs=0, kl_ramp_epochs=1, seed=3,
                  max_steps_per_epoch=steps, patience=2)
    fields.update(overrides)
    config = default_config("jsb", model, str(run_dir), **fields)
    trainer = trainer_lib.Trainer(config, bundle=synthetic_music_bundle(), log=lambda *_: None)
    trainer.fit()
    return trainer


CLEAN_PRELUDE = textwrap.dedent(f"""
    import sys
    BLOCKED = {BLOCKED!r}

    class _Block:
        def find_spec(self, name, path=None, target=None):
            if name.split(".")[0] in BLOCKED:
                raise ImportError(f"{{name}} is blocked in this clean process")
            return None

    sys.meta_path.insert(0, _Block())
    for _name in list(sys.modules):
        if _name.split(".")[0] in BLOCKED:
            del sys.modules[_name]
    import json
    import numpy as np
    import tensorflow as tf
""")


def run_clean(script: str, *, timeout: float = 600) -> dict:
    """Run `script` after CLEAN_PRELUDE in a fresh Python (no project, TFP or tf_keras importable).

    The script prints one JSON object on its last stdout line; that object is returned.
    """
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2", PYTHONPATH="")
    proc = subprocess.run([sys.executable, "-c", CLEAN_PRELUDE + textwrap.dedent(script)],
                          capture_output=True, text=True, timeout=timeout, env=env,
                          cwd=str(pathlib.Path("/")))
    if proc.returncode != 0:
        raise AssertionError(f"clean subprocess failed ({proc.returncode}):\n{proc.stderr[-6000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


TEXT_VOCABULARY = ("<pad>", "<unk>", " ", "a", "b", "c", "d")


def make_trained_run(run_dir, model: str, *, text: bool = False, steps: int = 3, seed: int = 0,
                     **overrides):
    """A run directory like the trainer's (config.json, checkpoints/best) for a tiny `model`
    (`training_testing.TINY`, then `overrides` such as latent_size=2) trained eagerly for
    `steps` Adam steps on random data; returns the in-memory model.

    Much faster than `train_tiny_run` (no tf.function tracing of a train step).
    """
    import keras

    from tf_latentflow.layers import LengthModel
    from tf_latentflow.runs import RunDirectory, build_model
    from tf_latentflow.runs.checkpoints import checkpoint_objects
    from tf_latentflow.training.resume import portable_config

    run_dir = pathlib.Path(run_dir)
    dataset = "ptb" if text else "jsb"
    config = default_config(dataset, model, str(run_dir), **dict(TINY, seed=seed, **overrides))
    rng = np.random.default_rng(seed)
    lengths = rng.integers(3, 9, size=16)
    keras.utils.set_random_seed(seed)
    model_obj = build_model(
        config.model_settings, LengthModel.from_lengths(lengths, smoothing=not text, name="length_model"),
        len(TEXT_VOCABULARY) if text else None)
    batch_lengths = tf.constant(lengths[:4], tf.int32)
    steps_t = int(lengths[:4].max())
    if text:
        x = tf.constant(rng.integers(2, len(TEXT_VOCABULARY), size=(4, steps_t)), tf.int32)
    else:
        x = tf.constant((rng.random((4, steps_t, 88)) < 0.1).astype(np.int32))
    optimizer = keras.optimizers.Adam(0.01)
    for step in range(steps):
        with tf.GradientTape() as tape:
            terms = model_obj.loss_terms(x, batch_lengths, kl_weight=1.0, num_samples=1, seed=step,
                                         training=True)
            loss = tf.reduce_mean(terms["loss"] / (tf.cast(batch_lengths, tf.float32) + 1))
        variables = model_obj.trainable_variables
        optimizer.apply_gradients(zip(tape.gradient(loss, variables), variables))
    run = RunDirectory(run_dir)
    run.checkpoint_manager(tf.train.Checkpoint(**checkpoint_objects(model_obj)), "best").save(checkpoint_number=1)
    run.write_config(portable_config(config), model_obj, vocabulary=TEXT_VOCABULARY if text else None)
    return model_obj
