"""FastLSTM computes exactly what keras.layers.LSTM computes with the same weights."""

import keras
import numpy as np
import pytest
import tensorflow as tf

from tf_latentflow.layers.lstm import FastLSTM


def test_matches_keras_lstm_with_and_without_initial_state():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(3, 7, 5)).astype(np.float32)
    reference = keras.layers.LSTM(6, return_sequences=True)
    reference(x)
    fast = FastLSTM(6)
    fast(x)
    fast.set_weights(reference.get_weights())  # same layout: kernel, recurrent kernel, bias
    np.testing.assert_allclose(fast(x).numpy(), reference(x).numpy(), rtol=1e-5, atol=1e-6)
    state = [rng.normal(size=(3, 6)).astype(np.float32) for _ in range(2)]
    np.testing.assert_allclose(fast(x, initial_state=state).numpy(),
                               reference(x, initial_state=state).numpy(), rtol=1e-5, atol=1e-6)


def test_step_by_step_equals_the_whole_sequence_and_gradients_flow():
    rng = np.random.default_rng(1)
    x = tf.constant(rng.normal(size=(2, 4, 3)).astype(np.float32))
    lstm = FastLSTM(5)
    whole = lstm(x).numpy()
    state = lstm.zero_state(2)
    for t in range(4):
        h, state = lstm.step(x[:, t], state)
        np.testing.assert_allclose(h.numpy(), whole[:, t], rtol=1e-5, atol=1e-6)
    with tf.GradientTape() as tape:
        loss = tf.reduce_sum(tf.square(lstm(x)))
    for var, grad in zip(lstm.trainable_variables, tape.gradient(loss, lstm.trainable_variables)):
        assert grad is not None and np.any(grad.numpy() != 0), var.path


def test_forget_bias_starts_at_one_and_config_round_trips():
    lstm = FastLSTM(4)
    lstm.build((None, None, 3))
    np.testing.assert_array_equal(lstm.bias.numpy(), np.r_[np.zeros(4), np.ones(4), np.zeros(8)])
    assert FastLSTM.from_config(lstm.get_config()).units == 4


@pytest.mark.parametrize("policy", ["mixed_bfloat16"])
def test_runs_under_mixed_precision(policy):
    try:
        keras.mixed_precision.set_global_policy(policy)
        lstm = FastLSTM(4)
        out = lstm(np.ones((2, 3, 3), np.float32))
    finally:
        keras.mixed_precision.set_global_policy("float32")
    assert out.dtype == tf.bfloat16 and np.all(np.isfinite(tf.cast(out, tf.float32).numpy()))


@pytest.mark.parametrize("jit_compile", [False, True])
def test_hand_written_recurrence_gradient_equals_automatic_differentiation(jit_compile):
    # FastLSTM's recurrence has a custom gradient (dU as one product after the loop); the
    # reference differentiates the step-by-step path, which TF differentiates itself.
    rng = np.random.default_rng(3)
    x = tf.constant(rng.normal(size=(3, 6, 4)).astype(np.float32))
    weights = tf.constant(rng.normal(size=(3, 6, 5)).astype(np.float32))
    state = [tf.constant(rng.normal(size=(3, 5)).astype(np.float32)) for _ in range(2)]
    lstm = FastLSTM(5)
    lstm.build(x.shape)
    lstm.recurrent_kernel.assign(rng.normal(scale=0.5, size=(5, 20)).astype(np.float32))

    def whole(x, h0, c0):
        with tf.GradientTape() as tape:
            tape.watch([x, h0, c0])
            loss = tf.reduce_sum(weights * lstm(x, initial_state=[h0, c0]))
        return tape.gradient(loss, [x, h0, c0] + lstm.trainable_variables)

    def by_step(x, h0, c0):
        with tf.GradientTape() as tape:
            tape.watch([x, h0, c0])
            outputs, s = [], [h0, c0]
            for t in range(x.shape[1]):
                h, s = lstm.step(x[:, t], s)
                outputs.append(h)
            loss = tf.reduce_sum(weights * tf.stack(outputs, axis=1))
        return tape.gradient(loss, [x, h0, c0] + lstm.trainable_variables)

    got = tf.function(whole, jit_compile=jit_compile)(x, *state)
    expected = by_step(x, *state)
    for name, g, e in zip(["x", "h0", "c0", "kernel", "recurrent", "bias"], got, expected):
        assert np.any(e.numpy() != 0), name
        np.testing.assert_allclose(g.numpy(), e.numpy(), rtol=1e-4, atol=1e-5, err_msg=name)


def test_empty_sequence_gives_empty_output_and_zero_state_gradients():
    # T = 0 (the time axis traced as unknown, as in the trainer): no outputs, and the
    # gradient w.r.t. the initial state and the weights is zero instead of an index error.
    # Graph mode only: under XLA, tf.scan itself rejects an empty sequence (its
    # TensorList read is compiled as a size-1 dynamic slice); no data set holds an
    # empty sequence.
    lstm = FastLSTM(4)
    lstm.build((None, None, 3))
    h0, c0 = tf.ones([2, 4]), tf.ones([2, 4])

    @tf.function(input_signature=[tf.TensorSpec([None, None, 3])])
    def outputs_and_gradients(x):
        with tf.GradientTape() as tape:
            tape.watch([h0, c0])
            out = lstm(x, initial_state=[h0, c0])
            loss = tf.reduce_sum(out)
        return [out] + tape.gradient(loss, [h0, c0, lstm.recurrent_kernel])

    out, dh0, dc0, d_recurrent = outputs_and_gradients(tf.zeros([2, 0, 3]))
    assert out.shape == (2, 0, 4)
    for g in (dh0, dc0, d_recurrent):
        np.testing.assert_array_equal(g.numpy(), np.zeros(g.shape))
    # and the same traced function still differentiates a non-empty sequence
    _, dh0, _, _ = outputs_and_gradients(tf.ones([2, 3, 3]))
    assert np.any(dh0.numpy() != 0)


def test_t_feature_rows_equal_concatenated_one_hot_features():
    """`call(x, t_rows=...)` and `step(x_t, state, t_row=...)` equal the layer on
    concat([x, t_features]) (the same kernel: its last 2 * depth rows multiply them)."""
    from tf_latentflow.layers.t_features import t_features, t_features_at

    rng = np.random.default_rng(4)
    depth, steps, size = 6, 5, 3
    lengths = np.array([5, 2], np.int32)
    x = rng.normal(size=(2, steps, size)).astype(np.float32)
    layer = FastLSTM(4)
    layer.build((None, None, size + 2 * depth))
    layer.kernel.assign(rng.normal(scale=0.5, size=layer.kernel.shape).astype(np.float32))
    full = tf.concat([x, t_features(lengths, steps, depth)], axis=-1)
    np.testing.assert_allclose(layer(x, t_rows=layer.t_feature_rows(lengths, steps, depth)).numpy(),
                               layer(full).numpy(), rtol=1e-5, atol=1e-6)
    state = layer.zero_state(2)
    for t in range(steps):
        got, _ = layer.step(x[:, t], state, t_row=layer.t_feature_rows_at(t, lengths, depth))
        want, _ = layer.step(tf.concat([x[:, t], t_features_at(t, lengths, depth)], -1), state)
        np.testing.assert_allclose(got.numpy(), want.numpy(), rtol=1e-5, atol=1e-6)
