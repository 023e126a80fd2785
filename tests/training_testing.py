"""Test helpers shared by the training and export tests: tiny sizes and synthetic music splits."""

import numpy as np
import tensorflow as tf

from tf_latentflow.training.inputs import DataBundle

# Model sizes small enough that a few epochs train in seconds; graph execution (XLA, the
# trainer's default, is tested where it is named: a compile per shape would dominate).
TINY = dict(latent_size=4, embedding_size=8, hidden_units=8, prior_lstm_units=8, num_flow_layers=2,
            flow_hidden_units=(8,), eval_batch_size=4, nll_samples=3, num_buckets=1, jit_compile=False)


def synthetic_music_bundle(seed=0, sizes=(12, 6, 6), max_len=9) -> DataBundle:
    """Train/validation/test splits of random piano rolls ([T, 88] uint8, T in 3..max_len-1)."""
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
    for name, n in zip(("train", "validation", "test"), sizes):
        splits[name], lengths[name] = split(n)
    return DataBundle(splits=splits, lengths=lengths, vocabulary=None)


def tiny_config(tmp_path, name, **overrides):
    """A tiny JSB AF/SCF run of 3 epochs in tmp_path/name (the trainer tests' run)."""
    from tf_latentflow.training.config import default_config

    fields = dict(TINY, epochs=3, batch_size=4, kl_zero_epochs=1, kl_ramp_epochs=1, seed=3)
    fields.update(overrides)
    return default_config("jsb", "af-scf", str(tmp_path / name), **fields)
