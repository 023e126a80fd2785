"""TimeConditioner: the LSTM over the shifted sequence and T-features, in parallel and step by step."""

import numpy as np
import pytest
import tensorflow as tf

from flow_testing import randomize_weights
from tf_latentflow.layers.t_features import t_features, t_features_at
from tf_latentflow.priors.time_conditioner import TimeConditioner

H, MAX_LENGTH, UNITS = 3, 6, 5
LENGTHS = np.array([4, 2, 3], np.int32)  # the batch is padded to T = 4


def sigmoid(x):
    return 1.0 / (1.0 + np.exp(-x))


def numpy_initial_state(layer, lengths):
    """state_{-1} = tanh(W f_0(T) + b), split into [h, c] per layer."""
    f0 = t_features_at(0, lengths, layer.max_length).numpy().astype(np.float64)
    net = layer.initial_state_net
    flat = np.tanh(f0 @ net.kernel.numpy() + net.bias.numpy())
    parts = np.split(flat, 2 * layer.num_layers, axis=-1)
    return [(parts[2 * i], parts[2 * i + 1]) for i in range(layer.num_layers)]


def numpy_conditioner(layer, sequence, lengths, masks=None):
    """The module docstring in NumPy float64: s_{-1} = start, input_t = [s_{t-1}, f_t(T)],
    a stacked LSTM (gates i, f, g, o) from the learned initial state; `masks[l][t]` multiply
    layer l's output at step t (dropout)."""
    sequence = np.asarray(sequence, np.float64)
    batch, steps, _ = sequence.shape
    features = t_features(lengths, steps, layer.max_length).numpy().astype(np.float64)
    start = np.broadcast_to(layer.start.numpy(), (batch, layer.input_size))
    shifted = np.concatenate([start[:, None], sequence[:, :-1]], axis=1)
    inputs = np.concatenate([shifted, features], axis=-1)  # [B, T, H + 2 max_length]
    for i, (lstm, (h, c)) in enumerate(zip(layer.lstms, numpy_initial_state(layer, lengths))):
        kernel, recurrent, bias = (w.numpy().astype(np.float64) for w in (
            lstm.kernel, lstm.recurrent_kernel, lstm.bias))
        outputs = []
        for t in range(steps):
            z = inputs[:, t] @ kernel + h @ recurrent + bias
            gi, gf, gg, go = np.split(z, 4, axis=-1)
            c = sigmoid(gf) * c + sigmoid(gi) * np.tanh(gg)
            h = sigmoid(go) * np.tanh(c)
            outputs.append(h if masks is None else h * np.asarray(masks[i][t], np.float64))
        inputs = np.stack(outputs, axis=1)
    return inputs


def make_conditioner(num_layers=2, dropout=0.0, seed=0, **kwargs):
    layer = TimeConditioner(H, MAX_LENGTH, units=UNITS, num_layers=num_layers, dropout=dropout,
                            **kwargs)
    layer.build()
    randomize_weights(layer, seed=seed, scale=0.5)
    sequence = np.random.default_rng(seed + 1).normal(size=(len(LENGTHS), 4, H)).astype(np.float32)
    return layer, sequence


@pytest.mark.parametrize("num_layers", [1, 2])
def test_parallel_is_the_documented_lstm_of_its_weights(num_layers):
    layer, sequence = make_conditioner(num_layers)
    out = layer.parallel(sequence, LENGTHS)
    assert out.shape == (3, 4, UNITS) and out.dtype == tf.float32
    np.testing.assert_allclose(out.numpy(), numpy_conditioner(layer, sequence, LENGTHS),
                               rtol=1e-5, atol=1e-5)
    np.testing.assert_array_equal(layer(sequence, LENGTHS).numpy(), out.numpy())  # call = parallel


def test_initial_state_is_a_function_of_the_length():
    layer, _ = make_conditioner()
    states = layer.initial_state(LENGTHS)
    expected = numpy_initial_state(layer, LENGTHS)
    assert len(states) == 2
    for (h, c), (h_ref, c_ref) in zip(states, expected):
        assert h.shape == (3, UNITS) and c.shape == (3, UNITS)
        np.testing.assert_allclose(h.numpy(), h_ref, rtol=1e-6, atol=1e-6)
        np.testing.assert_allclose(c.numpy(), c_ref, rtol=1e-6, atol=1e-6)
    # different lengths, different states; the same length, the same state
    assert not np.allclose(states[0][0].numpy()[0], states[0][0].numpy()[1])
    again = layer.initial_state(np.array([4, 4, 2], np.int32))
    np.testing.assert_array_equal(again[1][1].numpy()[0], states[1][1].numpy()[0])
    np.testing.assert_array_equal(again[1][1].numpy()[2], states[1][1].numpy()[1])


def test_h_t_depends_on_earlier_steps_and_the_length_only():
    layer, sequence = make_conditioner()
    base = layer.parallel(sequence, LENGTHS).numpy()
    for t in range(4):
        moved = sequence.copy()
        moved[0, t] += 1.0
        delta = np.abs(layer.parallel(moved, LENGTHS).numpy() - base).sum(-1)
        np.testing.assert_array_equal(delta[:, : t + 1], 0.0)  # h_s for s <= t: untouched
        np.testing.assert_array_equal(delta[1:], 0.0)  # other rows: untouched
        if t < 3:
            assert np.all(delta[0, t + 1:] > 0)
    longer = layer.parallel(sequence, LENGTHS + 1).numpy()
    assert np.all(np.abs(longer - base).sum(-1) > 0)  # T enters every step, h_0 included


def test_start_input_is_the_learned_vector_broadcast():
    layer, _ = make_conditioner()
    start = layer.start_input(3, tf.float64)
    assert start.shape == (3, H) and start.dtype == tf.float64
    np.testing.assert_array_equal(start.numpy(), np.tile(layer.start.numpy(), (3, 1)))


def test_step_features_are_the_one_hot_product_with_the_first_kernel():
    layer, _ = make_conditioner()
    rows = layer.step_features(LENGTHS, 5).numpy()  # one step past the longest length
    kernel = layer.lstms[0].kernel.numpy()[H:]  # the rows multiplying f_t(T)
    expected = np.transpose(t_features(LENGTHS, 5, MAX_LENGTH).numpy() @ kernel, (1, 0, 2))
    assert rows.shape == (5, 3, 4 * UNITS)
    np.testing.assert_allclose(rows, expected, rtol=1e-6, atol=1e-6)
    np.testing.assert_array_equal(rows[4], 0.0)  # padding steps: zero
    np.testing.assert_array_equal(rows[2:, 1], 0.0)


def run_steps(layer, sequence, lengths, masks=None, step=None):
    """h for every step from `layer.step` (or `step`, the same function compiled)."""
    step = step or layer.step
    steps = sequence.shape[1]
    features = layer.step_features(lengths, steps)
    previous, states = layer.start_input(tf.shape(sequence)[0]), layer.initial_state(lengths)
    outputs = []
    for t in range(steps):
        step_masks = () if masks is None else [m[t] for m in masks]
        h, states = step(previous, features[t], states, step_masks)
        outputs.append(h)
        previous = sequence[:, t]
    return tf.stack(outputs, axis=1)


def test_step_by_step_equals_parallel_eagerly_and_in_a_graph():
    layer, sequence = make_conditioner()
    expected = layer.parallel(sequence, LENGTHS).numpy()
    np.testing.assert_allclose(run_steps(layer, tf.constant(sequence), LENGTHS).numpy(), expected,
                               rtol=1e-5, atol=1e-5)
    state = [tf.TensorSpec([None, UNITS])] * 2
    graph_step = tf.function(layer.step, input_signature=[
        tf.TensorSpec([None, H]), tf.TensorSpec([None, 4 * UNITS]), [state, state], ()])
    np.testing.assert_allclose(
        run_steps(layer, tf.constant(sequence), LENGTHS, step=graph_step).numpy(), expected,
        rtol=1e-5, atol=1e-5)
    parallel = tf.function(lambda s, n: layer.parallel(s, n), input_signature=[
        tf.TensorSpec([None, None, H]), tf.TensorSpec([None], tf.int32)])
    np.testing.assert_allclose(parallel(sequence, LENGTHS).numpy(), expected, rtol=1e-6, atol=1e-6)


def test_dropout_masks_and_step_with_masks():
    layer, sequence = make_conditioner(dropout=0.5)
    masks = layer.dropout_masks(3, 4)
    assert len(masks) == 2
    for mask in masks:
        values = mask.numpy()
        assert values.shape == (4, 3, UNITS)
        assert set(np.unique(values)) == {0.0, 2.0}  # 0 or 1 / (1 - rate)
    assert not np.array_equal(masks[0].numpy(), masks[1].numpy())
    got = run_steps(layer, tf.constant(sequence), LENGTHS, masks).numpy()
    np.testing.assert_allclose(
        got, numpy_conditioner(layer, sequence, LENGTHS, [m.numpy() for m in masks]),
        rtol=1e-5, atol=1e-5)
    assert TimeConditioner(H, MAX_LENGTH, units=UNITS).dropout_masks(3, 4) == ()


def test_dropout_acts_in_training_only():
    layer, sequence = make_conditioner(num_layers=1, dropout=0.5)
    plain, _ = make_conditioner(num_layers=1, dropout=0.0)
    plain.set_weights(layer.get_weights())
    evaluation = layer.parallel(sequence, LENGTHS).numpy()
    np.testing.assert_array_equal(evaluation, plain.parallel(sequence, LENGTHS).numpy())
    trained = layer.parallel(sequence, LENGTHS, training=True).numpy()
    # one layer: the training output is the evaluation output times a 0 or 2 mask
    dropped = trained == 0
    assert 0.2 < dropped.mean() < 0.8
    np.testing.assert_allclose(trained[~dropped], 2.0 * evaluation[~dropped], rtol=1e-6)


def test_every_trainable_variable_gets_a_gradient():
    layer, sequence = make_conditioner()
    with tf.GradientTape() as tape:
        loss = tf.reduce_sum(tf.square(layer.parallel(sequence, LENGTHS)))
    variables = layer.trainable_variables
    assert len(variables) == 1 + 2 + 3 * 2  # start, initial-state dense, 2 x FastLSTM
    for var, grad in zip(variables, tape.gradient(loss, variables)):
        assert grad is not None and np.any(tf.convert_to_tensor(grad).numpy() != 0), var.path


def test_mixed_float16_computes_in_float16_close_to_float32():
    layer, sequence = make_conditioner()
    mixed = TimeConditioner(H, MAX_LENGTH, units=UNITS, num_layers=2, dtype="mixed_float16")
    mixed.build()
    mixed.set_weights(layer.get_weights())
    assert all(w.dtype == "float32" for w in mixed.weights)
    expected = numpy_conditioner(layer, sequence, LENGTHS)
    out = mixed.parallel(sequence, LENGTHS)
    assert out.dtype == tf.float16
    np.testing.assert_allclose(out.numpy().astype(np.float64), expected, rtol=2e-2, atol=2e-2)
    stepped = run_steps(mixed, tf.constant(sequence), LENGTHS)
    assert stepped.dtype == tf.float16
    np.testing.assert_allclose(stepped.numpy().astype(np.float64), expected, rtol=2e-2, atol=2e-2)


@pytest.mark.parametrize("kwargs, message", [
    (dict(input_size=0), "input_size must be a positive integer"),
    (dict(max_length=0), "max_length must be a positive integer"),
    (dict(num_layers=0), "num_layers must be a positive integer"),
    (dict(dropout=-0.1), "dropout must be in"),
    (dict(dropout=1.0), "dropout must be in"),
])
def test_constructor_arguments_are_validated(kwargs, message):
    arguments = dict(input_size=H, max_length=MAX_LENGTH) | kwargs
    with pytest.raises(ValueError, match=message):
        TimeConditioner(**arguments)


def test_config_round_trip_keeps_the_options_and_the_outputs():
    layer, sequence = make_conditioner(dropout=0.25, name="time")
    clone = TimeConditioner.from_config(layer.get_config())
    assert (clone.input_size, clone.max_length, clone.units, clone.num_layers, clone.dropout,
            clone.name) == (H, MAX_LENGTH, UNITS, 2, 0.25, "time")
    clone.build()
    clone.set_weights(layer.get_weights())
    np.testing.assert_allclose(clone.parallel(sequence, LENGTHS).numpy(),
                               numpy_conditioner(layer, sequence, LENGTHS), rtol=1e-5, atol=1e-5)


def test_an_empty_sequence_gives_an_empty_output():
    layer, _ = make_conditioner()
    out = layer.parallel(np.zeros((2, 0, H), np.float32), np.zeros(2, np.int32))
    assert out.shape == (2, 0, UNITS)
    assert layer.step_features(np.zeros(2, np.int32), 0).shape == (0, 2, 4 * UNITS)
