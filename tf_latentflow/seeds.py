"""Stateless random seeds: every sampler in the project takes a seed and is reproducible."""

import tensorflow as tf

__all__ = ["SAMPLING_ALG", "as_stateless_seed", "split_seed"]

# The generator of the samplers' draws (prior noise, emission and baseline draws).
# TensorFlow's kernels resolve the default "auto_select" to Philox on CPU, and under XLA
# both names give the same numbers as each other; but there "auto_select" lowers to XLA's
# generic bit generator, much slower on CPU. Naming Philox keeps every draw and skips
# that path.
SAMPLING_ALG = "philox"


def as_stateless_seed(seed):
    """A stateless seed, int64 `[2]`, from an int, a `[2]` tensor, or None.

    None draws a fresh seed from the global generator (not reproducible).
    """
    if seed is None:
        return tf.random.uniform([2], minval=0, maxval=2**31 - 1, dtype=tf.int64)
    seed = tf.cast(tf.convert_to_tensor(seed), tf.int64)
    if seed.shape.rank == 0:
        seed = tf.stack([seed, tf.constant(0, tf.int64)])
    return seed


def split_seed(seed, num):
    """`num` independent stateless seeds, int64 `[num, 2]`, derived from `seed`."""
    return tf.random.experimental.stateless_split(as_stateless_seed(seed), num=num)
