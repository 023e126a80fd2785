"""Test helpers shared by the bijector and layer tests."""

import numpy as np
import tensorflow as tf


def randomize_weights(layer, seed, scale=0.5):
    """Give every weight of `layer` a random value so flows are far from the identity."""
    rng = np.random.default_rng(seed)
    for w in layer.weights:
        w.assign(rng.normal(scale=scale, size=w.shape).astype(w.dtype))


def log_det_from_autodiff(fn, x):
    """log|det J| of an event-rank-1 map `fn` at each row of `x`, via batch_jacobian."""
    x = tf.convert_to_tensor(x)
    with tf.GradientTape() as tape:
        tape.watch(x)
        y = fn(x)
    jac = tape.batch_jacobian(y, x)
    sign, logdet = tf.linalg.slogdet(tf.cast(jac, tf.float64))
    assert np.all(sign.numpy() != 0)
    return logdet.numpy(), jac.numpy()
