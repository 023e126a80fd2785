"""A standard-normal sequence prior: the no-flow reference point for the priors.

    log p(z) = sum_t log N(z_t; 0, I) over the valid steps t < T

It has the interface every sequence prior of `tf_latentflow.priors` shares:
`log_prob(z, lengths)` -> `[B, T]` (zero on padding) and `sample(lengths, seed)`
-> `[B, T, H]` (zero on padding).
"""

import math

import keras
import tensorflow as tf

from tf_latentflow.seeds import SAMPLING_ALG, as_stateless_seed

__all__ = ["StandardNormalPrior", "step_mask", "standard_normal_log_prob"]


def step_mask(lengths, max_steps, dtype=tf.float32):
    """`[B, max_steps]` with 1 at valid steps t < T and 0 at padding."""
    return tf.sequence_mask(lengths, maxlen=max_steps, dtype=dtype)


def standard_normal_log_prob(eps):
    """sum_h log N(eps_h; 0, 1) over the last axis."""
    return -0.5 * tf.reduce_sum(tf.square(eps), axis=-1) - 0.5 * eps.shape[-1] * math.log(2 * math.pi)


@keras.saving.register_keras_serializable(package="tf_latentflow")
class StandardNormalPrior(keras.layers.Layer):
    """z_t ~ N(0, I_H) independently at every step."""

    def __init__(self, latent_size=50, **kwargs):
        # autocast=False: z keeps the flow dtype (float32) under mixed precision
        kwargs.setdefault("autocast", False)
        super().__init__(**kwargs)
        self.latent_size = int(latent_size)

    def log_prob(self, z, lengths, training=False):
        z = tf.convert_to_tensor(z)
        valid = tf.sequence_mask(lengths, tf.shape(z)[1])
        # Padding steps are zeroed before the density (not after), so whatever they hold
        # (NaN, Inf) never reaches the result or its gradient.
        z = tf.where(valid[..., tf.newaxis], z, tf.zeros_like(z))
        return tf.where(valid, standard_normal_log_prob(z), tf.zeros([], z.dtype))

    def sample(self, lengths, seed=None, max_steps=None):
        lengths = tf.cast(lengths, tf.int32)
        steps = tf.reduce_max(lengths) if max_steps is None else max_steps
        eps = tf.random.stateless_normal(
            tf.stack([tf.shape(lengths)[0], steps, self.latent_size]), seed=as_stateless_seed(seed),
            alg=SAMPLING_ALG)
        return eps * step_mask(lengths, steps)[..., tf.newaxis]

    def call(self, z, lengths, training=False):
        return self.log_prob(z, lengths, training=training)

    def get_config(self):
        config = super().get_config()
        config["latent_size"] = self.latent_size
        return config
