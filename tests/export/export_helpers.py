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

TINY = dict(latent_size=4, embedding_size=8, hidden_units=8, prior_lstm_units=8, num_flow_layers=2,
            flow_hidden_units=(8,), eval_batch_size=4, nll_samples=3, num_buckets=1)
BLOCKED = ("tensorflow_probability", "tf_keras", "tf_latentflow", "trainers", "export")


def synthetic_music_bundle(seed=0, max_len=9):
    """Three tiny splits of random piano rolls of lengths 3..max_len-1 (as in tests/training)."""
    rng = np.random.default_rng(seed)

    def split(n):
        lengths = rng.integers(3, max_len, size=n)
        rolls = [(rng.random((t, 88)) < 0.1).astype(np.uint8) for t in lengths]
        ds = tf.data.Dataset.from_generator(
            lambda: ({"piano_roll": r, "length": np.int32(len(r))} for r in rolls),
            output_signature={"piano_roll": tf.TensorSpec([None, 88], tf.uint8),
                              "length": tf.TensorSpec([], tf.int32)})
        return ds, lengths

    splits, lengths = {}, {}
    for name, n in (("train", 8), ("validation", 4), ("test", 4)):
        splits[name], lengths[name] = split(n)
    return trainer_lib.DataBundle(splits=splits, lengths=lengths, vocabulary=None)


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
