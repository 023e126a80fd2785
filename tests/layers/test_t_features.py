"""T-conditioning features (appendix D): one-hot indices at first, last and padded steps."""

import numpy as np
import pytest
import tensorflow as tf

from tf_latentflow.layers import t_features as D


def test_indices_and_padding():
    start, end = D.t_indices([3, 1], 4)
    assert start.dtype == tf.int32
    np.testing.assert_array_equal(start, [[0, 1, 2, -1], [0, -1, -1, -1]])
    np.testing.assert_array_equal(end, [[2, 1, 0, -1], [0, -1, -1, -1]])
    assert D.PAD_INDEX == -1


def test_features_are_one_hot_at_first_last_and_zero_at_padding():
    depth = 5
    f = D.t_features([3, 5], 5, depth).numpy()
    assert f.shape == (2, 5, 2 * depth) and f.dtype == np.float32
    first, last = f[0, 0], f[0, 2]
    assert np.argmax(first[:depth]) == 0 and np.argmax(first[depth:]) == 2
    assert np.argmax(last[:depth]) == 2 and np.argmax(last[depth:]) == 0
    valid = f[0, :3]
    np.testing.assert_array_equal(valid.sum(-1), [2, 2, 2])
    np.testing.assert_array_equal(f[0, 3:], 0)  # padded steps: all zero
    assert f[1, 4, depth - 1] == 1 and f[1, 4, depth] == 1  # T = depth uses the last slots


def test_single_step_matches_full_features_in_a_while_loop():
    lengths = tf.constant([4, 2, 7])
    depth = 8
    full = D.t_features(lengths, 7, depth)

    @tf.function(input_signature=[tf.TensorSpec([None], tf.int32)])
    def stepwise(lengths):
        ta = tf.TensorArray(tf.float32, size=7)
        def body(t, ta):
            return t + 1, ta.write(t, D.t_features_at(t, lengths, depth))
        _, ta = tf.while_loop(lambda t, _: t < 7, body, (tf.constant(0), ta))
        return tf.transpose(ta.stack(), [1, 0, 2])

    np.testing.assert_array_equal(stepwise(lengths), full)


def test_dynamic_shapes_in_tf_function():
    fn = tf.function(lambda x, n: D.t_features(n, tf.shape(x)[1], 6),
                     input_signature=[tf.TensorSpec([None, None]), tf.TensorSpec([None], tf.int32)])
    out = fn(tf.zeros([2, 3]), tf.constant([3, 2]))
    assert out.shape == (2, 3, 12)


def test_lengths_beyond_depth_are_refused():
    with pytest.raises(tf.errors.InvalidArgumentError, match="exceeds the one-hot depth"):
        D.t_features([4], 4, depth=3)


def test_feature_rows_equal_the_one_hot_product_without_building_it():
    rng = np.random.default_rng(0)
    depth, steps = 7, 6
    lengths = np.array([6, 3, 0, 7], np.int32)[:3]  # full, padded, empty
    weights = rng.normal(size=(2 * depth, 5)).astype(np.float32)
    expected = D.t_features(lengths, steps, depth).numpy() @ weights
    rows = D.t_feature_rows(weights, lengths, steps, depth).numpy()
    np.testing.assert_allclose(rows, expected, rtol=1e-6, atol=1e-6)
    assert np.all(rows[1, 3:] == 0) and np.all(rows[2] == 0)  # padding steps: zero
    for t in range(steps):
        np.testing.assert_allclose(D.t_feature_rows_at(weights, t, lengths, depth).numpy(),
                                   expected[:, t], rtol=1e-6, atol=1e-6)
    # gradients reach exactly the two rows of each valid step
    w = tf.Variable(weights)
    with tf.GradientTape() as tape:
        total = tf.reduce_sum(D.t_feature_rows(w, lengths, steps, depth))
    grad = tf.convert_to_tensor(tape.gradient(total, w)).numpy()
    counts = D.t_features(lengths, steps, depth).numpy().sum(axis=(0, 1))
    np.testing.assert_allclose(grad, np.repeat(counts[:, None], 5, axis=1))
