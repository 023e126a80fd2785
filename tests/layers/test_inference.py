"""InferenceNetwork q(z | x): the BiLSTM against an independent NumPy BiLSTM, padding never
reaching valid steps (the backward direction!), the Gaussian's samples and densities, seeds,
mixed precision and configuration."""

import keras
import numpy as np
import pytest
import tensorflow as tf

from tf_latentflow.layers.inference import InferenceNetwork, StackedBiLSTM, SymbolEmbedding

H, MAX_LENGTH, UNITS = 3, 7, 6


def tiny(text=True, seed=0, scale=0.4, **kwargs):
    keras.utils.set_random_seed(seed)
    net = InferenceNetwork(H, MAX_LENGTH, vocab_size=5 if text else None, num_notes=None if text else 4,
                           embedding_size=UNITS, hidden_units=UNITS, **kwargs)
    net.build()
    rng = np.random.default_rng(seed)
    for w in net.trainable_weights:  # far from the initial values, so every path matters
        w.assign(rng.normal(scale=scale, size=w.shape).astype(np.float32))
    return net


def random_x(rng, text, batch, steps):
    if text:
        return rng.integers(0, 5, size=(batch, steps)).astype(np.int32)
    return (rng.uniform(size=(batch, steps, 4)) < 0.4).astype(np.float32)


# -- an independent float64 NumPy BiLSTM -----------------------------------------------------

def _sigmoid(a):
    return 1.0 / (1.0 + np.exp(-a))


def numpy_lstm(lstm, inputs):
    """Outputs [T, units] of a Keras LSTM layer run over inputs [T, F] from zero state."""
    kernel, recurrent, bias = (w.numpy().astype(np.float64) for w in lstm.weights)
    units = recurrent.shape[0]
    h, c, out = np.zeros(units), np.zeros(units), []
    for v in inputs:
        gi, gf, gc, go = np.split(v @ kernel + h @ recurrent + bias, 4)  # Keras order: i, f, c, o
        c = _sigmoid(gf) * c + _sigmoid(gi) * np.tanh(gc)
        h = _sigmoid(go) * np.tanh(c)
        out.append(h)
    return np.array(out).reshape(len(inputs), units)


def numpy_bilstm(stack, inputs):
    """(f, b) of a StackedBiLSTM over one unpadded sequence [T, F]: b is a real reverse pass."""
    h = inputs.astype(np.float64)
    for fwd, bwd in zip(stack.forward_layers, stack.backward_layers):
        f = numpy_lstm(fwd, h)
        b = numpy_lstm(bwd, h[::-1])[::-1]
        h = np.concatenate([f, b], axis=-1)
    return f, b


def test_stacked_bilstm_matches_numpy_and_ignores_padding():
    keras.utils.set_random_seed(1)
    stack = StackedBiLSTM(5, num_layers=2)
    stack.build((None, None, 3))
    rng = np.random.default_rng(1)
    for w in stack.weights:
        w.assign(rng.normal(scale=0.6, size=w.shape).astype(np.float32))
    lengths = np.array([6, 2, 4, 1], np.int32)
    x = rng.normal(size=(4, 6, 3)).astype(np.float32)
    x_garbage = x.copy()
    for i, n in enumerate(lengths):
        x_garbage[i, n:] = rng.normal(scale=10.0, size=x[i, n:].shape)  # padding full of garbage
    f, b = stack(x_garbage, tf.constant(lengths))
    assert f.shape == b.shape == (4, 6, 5)
    for i, n in enumerate(lengths):
        ref_f, ref_b = numpy_bilstm(stack, x[i, :n])
        np.testing.assert_allclose(f.numpy()[i, :n], ref_f, rtol=1e-4, atol=1e-5)
        np.testing.assert_allclose(b.numpy()[i, :n], ref_b, rtol=1e-4, atol=1e-5)
        assert np.all(f.numpy()[i, n:] == 0) and np.all(b.numpy()[i, n:] == 0)
    # A whole-sequence reversal (tf.reverse, as a Bidirectional layer without masks does)
    # would feed the padding into the backward direction first: that must differ.
    naive = np.array(tf.reverse(stack.backward_layers[0](tf.reverse(x_garbage, [1])), [1]))
    own = np.array(tf.reverse_sequence(stack.backward_layers[0](tf.reverse_sequence(
        x_garbage, lengths, 1, 0)), lengths, 1, 0))
    assert np.abs(naive[1, :2] - own[1, :2]).max() > 1e-3


@pytest.mark.parametrize("text", [True, False], ids=["text", "music"])
def test_padding_never_reaches_valid_steps(text):
    net = tiny(text)
    rng = np.random.default_rng(2)
    lengths = np.array([3, 5, 1], np.int32)
    x = random_x(rng, text, 3, 5)
    mu, sigma = net(x, lengths)
    assert mu.shape == sigma.shape == (3, 5, H) and mu.dtype == sigma.dtype == tf.float32
    # Other values at padding, and padding to a longer T, change nothing at valid steps.
    longer = np.concatenate([random_x(rng, text, 3, 4), random_x(rng, text, 3, 4)], axis=1)[:, :9]
    for i, n in enumerate(lengths):
        longer[i, :n] = x[i, :n]
    mu2, sigma2 = net(longer, lengths)
    # ... and each sequence alone (batch 1, no padding) gives the same parameters.
    for i, n in enumerate(lengths):
        mu1, sigma1 = net(x[i:i + 1, :n], lengths[i:i + 1])
        for m, s in ((mu, sigma), (mu2, sigma2)):
            np.testing.assert_allclose(m.numpy()[i, :n], mu1.numpy()[0], rtol=1e-5, atol=1e-6)
            np.testing.assert_allclose(s.numpy()[i, :n], sigma1.numpy()[0], rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("text", [True, False], ids=["text", "music"])
def test_both_directions_and_the_length_are_read(text):
    net = tiny(text)
    rng = np.random.default_rng(3)
    x = random_x(rng, text, 1, 5)
    lengths = np.array([5], np.int32)
    mu = net(x, lengths)[0].numpy()[0]
    last, first = x.copy(), x.copy()
    last[0, 4] = (x[0, 4] + 1) % 5 if text else 1.0 - x[0, 4]
    first[0, 0] = (x[0, 0] + 1) % 5 if text else 1.0 - x[0, 0]
    assert np.abs(net(last, lengths)[0].numpy()[0, 0] - mu[0]).max() > 1e-4  # backward direction
    assert np.abs(net(first, lengths)[0].numpy()[0, 4] - mu[4]).max() > 1e-4  # forward direction
    # The same prefix under another T gives other parameters (T-features).
    padded = np.concatenate([x, x], axis=1)
    assert np.abs(net(padded, np.array([6], np.int32))[0].numpy()[0, 0] - mu[0]).max() > 1e-4


def test_samples_are_reparameterised_gaussians_with_exact_log_densities():
    net = tiny(True)
    rng = np.random.default_rng(4)
    lengths = np.array([4, 2], np.int32)
    x = random_x(rng, True, 2, 4)
    mu, sigma = (t.numpy().astype(np.float64) for t in net(x, lengths))
    z, log_q = net.sample_and_log_prob(x, lengths, num_samples=4000, seed=7)
    assert z.shape == (4000, 2, 4, H) and log_q.shape == (4000, 2, 4)
    assert z.dtype == log_q.dtype == tf.float32
    z, log_q = z.numpy().astype(np.float64), log_q.numpy()
    valid = np.arange(4)[None, :] < lengths[:, None]
    assert np.all(z[:, ~valid] == 0) and np.all(log_q[:, ~valid] == 0)
    # Independent density: N(z; mu, sigma^2) summed over H.
    expected = np.sum(-0.5 * np.log(2 * np.pi) - np.log(sigma) - 0.5 * ((z - mu) / sigma) ** 2, axis=-1)
    np.testing.assert_allclose(log_q[:, valid], expected[:, valid], rtol=1e-4, atol=1e-4)
    # Moments: mean mu and standard deviation sigma (4000 samples: ~1.6% relative error).
    np.testing.assert_allclose(z.mean(0)[valid], mu[valid], atol=0.06 * sigma[valid].max())
    np.testing.assert_allclose(z.std(0)[valid] / sigma[valid], 1.0, atol=0.06)


def test_seeds_and_gradients():
    net = tiny(False)
    x = random_x(np.random.default_rng(5), False, 2, 3)
    lengths = np.array([3, 2], np.int32)
    a = net.sample_and_log_prob(x, lengths, 2, seed=11)[0]
    b = net.sample_and_log_prob(x, lengths, 2, seed=tf.constant([11, 0]))[0]
    c = net.sample_and_log_prob(x, lengths, 2, seed=12)[0]
    np.testing.assert_array_equal(a.numpy(), b.numpy())
    assert np.abs(a.numpy() - c.numpy()).max() > 1e-3
    compiled = tf.function(lambda x, n: net.sample_and_log_prob(x, n, 2, seed=11))
    np.testing.assert_allclose(compiled(x, lengths)[0].numpy(), a.numpy(), rtol=1e-5, atol=1e-6)
    # Reparameterised: a loss of z alone reaches every weight.
    with tf.GradientTape() as tape:
        z, log_q = net.sample_and_log_prob(x, lengths, 2, seed=11)
        loss = tf.reduce_sum(tf.square(z - 1.0)) - tf.reduce_sum(log_q)
    grads = tape.gradient(loss, net.trainable_weights)
    for w, g in zip(net.trainable_weights, grads):
        assert g is not None and np.abs(g.numpy()).max() > 0, w.path


def test_symbol_embedding_for_text_and_music():
    emb = SymbolEmbedding(4, 3, is_text=False)
    emb.build()
    matrix = emb.embeddings.numpy()
    frames = np.array([[[1, 0, 1, 0], [0, 0, 0, 0]]], np.float32)
    np.testing.assert_allclose(emb(frames).numpy()[0], [matrix[0] + matrix[2], np.zeros(3)], atol=1e-6)
    h = np.ones((2, 3), np.float32)
    np.testing.assert_allclose(emb.attend(h).numpy(), h @ matrix.T, rtol=1e-6)
    text = SymbolEmbedding(4, 3, is_text=True)
    text.build()
    np.testing.assert_array_equal(text(np.array([[3, 1]])).numpy()[0], text.embeddings.numpy()[[3, 1]])


def test_mixed_bfloat16_is_close_to_float32():
    x = random_x(np.random.default_rng(6), True, 2, 5)
    lengths = np.array([5, 3], np.int32)
    reference = tiny(True, scale=0.3)
    expected = reference.sample_and_log_prob(x, lengths, 3, seed=1)
    try:
        keras.mixed_precision.set_global_policy("mixed_bfloat16")
        mixed = tiny(True, scale=0.3)
        assert mixed.bilstm.forward_layers[0].compute_dtype == "bfloat16"
        mixed.set_weights(reference.get_weights())
        got = mixed.sample_and_log_prob(x, lengths, 3, seed=1)
    finally:
        keras.mixed_precision.set_global_policy("float32")
    for g, e in zip(got, expected):
        assert g.dtype == tf.float32 and np.all(np.isfinite(g.numpy()))
        np.testing.assert_allclose(g.numpy(), e.numpy(), rtol=0.05, atol=0.05)


def test_config_round_trip_and_argument_errors():
    net = tiny(False, dropout=0.1)
    clone = InferenceNetwork.from_config(net.get_config())
    clone.build()
    clone.set_weights(net.get_weights())
    x = random_x(np.random.default_rng(7), False, 1, 3)
    np.testing.assert_allclose(clone(x, [3])[0].numpy(), net(x, [3])[0].numpy(), rtol=1e-6)
    assert clone.dropout == 0.1 and clone.num_notes == 4 and clone.vocab_size is None
    with pytest.raises(ValueError, match="exactly one"):
        InferenceNetwork(H, MAX_LENGTH, vocab_size=3, num_notes=4)
    with pytest.raises(ValueError, match="max_length"):
        InferenceNetwork(H, None, vocab_size=3)


def test_log_variance_is_bounded_smoothly_and_untouched_inside():
    from tf_latentflow.layers.inference import LOG_VAR_BOUND, bound_log_var

    inside = np.linspace(-10, 10, 201).astype(np.float32)
    np.testing.assert_allclose(bound_log_var(inside).numpy(), inside, atol=1e-5)
    extreme = tf.constant([-1e6, -1e3, -60.0, 60.0, 1e3, 1e6], tf.float32)
    with tf.GradientTape() as tape:
        tape.watch(extreme)
        bounded = bound_log_var(extreme)
    values = bounded.numpy()
    assert np.all(np.abs(values) <= LOG_VAR_BOUND) and np.all(np.diff(values) >= 0)
    assert np.all(np.isfinite(tape.gradient(bounded, extreme).numpy()))
    # an inference network whose log-variance head is driven far out still samples finite z
    net = tiny(True)
    net.head.bias.assign(np.concatenate([np.zeros(H), np.full(H, 1e4)]).astype(np.float32))
    x = random_x(np.random.default_rng(6), True, 2, 4)
    z, log_q = net.sample_and_log_prob(x, np.array([4, 3], np.int32), num_samples=3, seed=1)
    assert np.all(np.isfinite(z.numpy())) and np.all(np.isfinite(log_q.numpy()))
