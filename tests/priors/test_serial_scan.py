"""serial_scan: the same outputs and gradients as differentiating the loop directly;
serial_loop: the same outputs, without the custom gradient."""

import keras
import numpy as np
import pytest
import tensorflow as tf

from tf_latentflow.priors.serial_scan import serial_loop, serial_scan


def _toy(seed=0):
    """A row-wise step with a recurrent state, a previous-output input and a mask."""
    keras.utils.set_random_seed(seed)
    cell = keras.layers.Dense(6, activation="tanh")
    head = keras.layers.Dense(3)
    cell.build((None, 3 + 6 + 2))
    head.build((None, 6))

    def step(carry, elems):
        previous, h = carry
        y_t, mask_t = elems
        h = cell(tf.concat([previous, h, y_t[:, :2]], axis=-1)) * mask_t
        shift = head(h)
        x_t = (y_t - shift) * tf.exp(-0.1 * shift)
        return (x_t, h), {"x": x_t, "log_det": -0.1 * tf.reduce_sum(shift, axis=-1)}

    return step, cell.trainable_variables + head.trainable_variables


def _reference(step, carry, elems, steps):
    """The plain loop, differentiated by TensorFlow."""
    xs, log_dets = [], []
    for t in range(steps):
        carry, out = step(carry, tf.nest.map_structure(lambda e: e[t], elems))
        xs.append(out["x"])
        log_dets.append(out["log_det"])
    return {"x": tf.stack(xs), "log_det": tf.stack(log_dets)}


@pytest.mark.parametrize("jit_compile", [False, True])
def test_outputs_and_gradients_equal_automatic_differentiation(jit_compile):
    step, variables = _toy()
    rng = np.random.default_rng(0)
    steps, batch = 5, 4
    y = tf.constant(rng.normal(size=(steps, batch, 3)).astype(np.float32))
    mask = tf.constant((rng.uniform(size=(steps, batch, 6)) < 0.7).astype(np.float32) / 0.7)
    carry = (tf.constant(rng.normal(size=(batch, 3)).astype(np.float32)),
             tf.constant(rng.normal(size=(batch, 6)).astype(np.float32)))
    weights = tf.constant(rng.normal(size=(steps, batch, 3)).astype(np.float32))
    spec = {"x": tf.TensorSpec([None, 3]), "log_det": tf.TensorSpec([None])}

    def loss_of(outs):
        return tf.reduce_sum(weights * outs["x"] ** 2) + tf.reduce_sum(outs["log_det"])

    def scanned(y, carry):
        with tf.GradientTape() as tape:
            tape.watch([y, carry])
            outs = serial_scan(step, carry, (y, mask), spec)
            loss = loss_of(outs)
        return outs, tape.gradient(loss, [y, carry] + variables)

    fn = tf.function(scanned, jit_compile=jit_compile, input_signature=[
        tf.TensorSpec([None, None, 3]), (tf.TensorSpec([None, 3]), tf.TensorSpec([None, 6]))])
    outs, grads = fn(y, carry)
    with tf.GradientTape() as tape:
        tape.watch([y, carry])
        expected_outs = _reference(step, carry, (y, mask), steps)
        loss = loss_of(expected_outs)
    expected = tape.gradient(loss, [y, carry] + variables)
    for name in ("x", "log_det"):
        np.testing.assert_allclose(outs[name].numpy(), expected_outs[name].numpy(), rtol=1e-5, atol=1e-6)
    for g, e in zip(tf.nest.flatten(grads), tf.nest.flatten(expected)):
        assert np.any(e.numpy() != 0)
        np.testing.assert_allclose(g.numpy(), e.numpy(), rtol=1e-4, atol=1e-5)


def test_a_step_without_variables_differentiates_its_inputs():
    def step(carry, y_t):
        new = tf.tanh(carry * y_t + y_t)
        return new, new ** 2

    y = tf.constant(np.random.default_rng(1).normal(size=(4, 2, 3)).astype(np.float32))
    carry = tf.constant(np.random.default_rng(2).normal(size=(2, 3)).astype(np.float32))
    with tf.GradientTape(persistent=True) as tape:
        tape.watch([y, carry])
        got = serial_scan(step, carry, y, tf.TensorSpec([None, 3]))
        c, outs = carry, []
        for t in range(4):
            c, out = step(c, y[t])
            outs.append(out)
        expected = tf.stack(outs)
    np.testing.assert_allclose(got.numpy(), expected.numpy(), rtol=1e-6)
    for g, e in zip(tape.gradient(got, [y, carry]), tape.gradient(expected, [y, carry])):
        np.testing.assert_allclose(g.numpy(), e.numpy(), rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("jit_compile", [False, True])
def test_serial_loop_gives_the_outputs_of_the_step_by_step_loop(jit_compile):
    step, _ = _toy(seed=3)
    rng = np.random.default_rng(3)
    steps, batch = 6, 3
    y = tf.constant(rng.normal(size=(steps, batch, 3)).astype(np.float32))
    mask = tf.constant((rng.uniform(size=(steps, batch, 6)) < 0.5).astype(np.float32) / 0.5)
    carry = (tf.constant(rng.normal(size=(batch, 3)).astype(np.float32)), tf.zeros([batch, 6]))
    spec = {"x": tf.TensorSpec([None, 3]), "log_det": tf.TensorSpec([None])}
    looped = tf.function(lambda y, carry: serial_loop(step, carry, (y, mask), spec),
                         jit_compile=jit_compile)
    got = looped(y, carry)
    expected = _reference(step, carry, (y, mask), steps)
    for name in ("x", "log_det"):
        assert got[name].shape == expected[name].shape
        np.testing.assert_allclose(got[name].numpy(), expected[name].numpy(), rtol=1e-5, atol=1e-6)
