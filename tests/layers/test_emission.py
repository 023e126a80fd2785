"""Emission p(x | z, T): the output layer against a NumPy recomputation (shifted BiLSTM states,
weight tying), likelihoods against TFP, no access to padding, non-autoregressive dependence
on the whole of z, sampling frequencies, seeds, mixed precision and configuration."""

import keras
import numpy as np
import pytest
import tensorflow as tf
import tensorflow_probability as tfp

from tf_latentflow.layers.t_features import t_features
from tf_latentflow.layers.emission import Emission
from tf_latentflow.layers.inference import SymbolEmbedding

H, MAX_LENGTH, UNITS, V, NOTES = 3, 7, 6, 5, 4


def tiny(text=True, tied=True, seed=0, scale=0.4, **kwargs):
    keras.utils.set_random_seed(seed)
    size = V if text else NOTES
    embedding = SymbolEmbedding(size, UNITS, is_text=text) if tied else None
    emission = Emission(H, MAX_LENGTH, vocab_size=V if text else None, num_notes=None if text else NOTES,
                        hidden_units=UNITS, projection_size=UNITS, tied_embedding=embedding, **kwargs)
    emission.build()
    rng = np.random.default_rng(seed)
    for w in emission.trainable_weights:
        w.assign(rng.normal(scale=scale, size=w.shape).astype(np.float32))
    return emission


def random_x(rng, text, batch, steps):
    if text:
        return rng.integers(0, V, size=(batch, steps)).astype(np.int32)
    return (rng.uniform(size=(batch, steps, NOTES)) < 0.4).astype(np.float32)


@pytest.mark.parametrize("tied", [True, False], ids=["tied", "untied"])
def test_logits_are_the_projection_of_z_and_the_shifted_bilstm_states(tied):
    emission = tiny(True, tied=tied)
    rng = np.random.default_rng(1)
    lengths = np.array([4, 2], np.int32)
    z = rng.normal(size=(2, 4, H)).astype(np.float32)
    logits = emission.logits(z, lengths).numpy()
    inputs = tf.concat([z, t_features(lengths, 4, MAX_LENGTH)], axis=-1)
    f, b = (t.numpy() for t in emission.bilstm(inputs, lengths))  # tested in test_inference
    w_p, b_p = (w.numpy() for w in emission.projection.weights)
    for i, n in enumerate(lengths):
        for t in range(n):
            f_prev = f[i, t - 1] if t > 0 else np.zeros(UNITS)
            b_next = b[i, t + 1] if t + 1 < n else np.zeros(UNITS)
            p = np.concatenate([z[i, t], f_prev, b_next]) @ w_p + b_p
            if tied:
                expected = p @ emission.tied_embedding.embeddings.numpy().T + emission.output_bias.numpy()
            else:
                expected = p @ emission.output_layer.kernel.numpy() + emission.output_layer.bias.numpy()
            np.testing.assert_allclose(logits[i, t], expected, rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("text", [True, False], ids=["text", "music"])
@pytest.mark.parametrize("lengths", [[3], [5, 1, 3]], ids=["batch1", "mixed"])
def test_log_prob_matches_tfp_and_is_zero_at_padding(text, lengths):
    emission = tiny(text)
    rng = np.random.default_rng(2)
    lengths = np.array(lengths, np.int32)
    steps = int(lengths.max())
    z = rng.normal(size=(len(lengths), steps, H)).astype(np.float32)
    x = random_x(rng, text, len(lengths), steps)
    got = emission.log_prob(x, z, lengths)
    assert got.shape == (len(lengths), steps) and got.dtype == tf.float32
    logits = emission.logits(z, lengths)
    if text:
        expected = tfp.distributions.Categorical(logits=logits).log_prob(x)
    else:
        expected = tf.reduce_sum(tfp.distributions.Bernoulli(logits=logits).log_prob(x), -1)
    valid = np.arange(steps)[None] < lengths[:, None]
    np.testing.assert_allclose(got.numpy()[valid], expected.numpy()[valid], rtol=1e-5, atol=1e-5)
    assert np.all(got.numpy()[~valid] == 0) and np.all(got.numpy()[valid] < 0)


@pytest.mark.parametrize("text", [True, False], ids=["text", "music"])
def test_padding_of_z_and_x_is_never_read(text):
    emission = tiny(text)
    rng = np.random.default_rng(3)
    lengths = np.array([2, 5, 3], np.int32)
    z = rng.normal(size=(3, 5, H)).astype(np.float32)
    x = random_x(rng, text, 3, 5)
    base = emission.log_prob(x, z, lengths).numpy()
    z2 = np.concatenate([z, rng.normal(size=(3, 3, H))], axis=1).astype(np.float32)
    x2 = np.concatenate([x, random_x(rng, text, 3, 3)], axis=1)
    for i, n in enumerate(lengths):
        z2[i, n:] = rng.normal(scale=10.0, size=z2[i, n:].shape)
        x2[i, n:] = random_x(rng, text, 1, 8 - n)[0]
    longer = emission.log_prob(x2, z2, lengths).numpy()
    np.testing.assert_allclose(longer[:, :5], base, rtol=1e-5, atol=1e-6)
    assert np.all(longer[:, 5:] == 0)
    for i, n in enumerate(lengths):  # each sequence alone
        alone = emission.log_prob(x[i:i + 1, :n], z[i:i + 1, :n], lengths[i:i + 1]).numpy()[0]
        np.testing.assert_allclose(base[i, :n], alone, rtol=1e-5, atol=1e-6)


def test_every_step_depends_on_every_latent_and_on_t():
    emission = tiny(True)
    rng = np.random.default_rng(4)
    lengths = np.array([5], np.int32)
    z = rng.normal(size=(1, 5, H)).astype(np.float32)
    base = emission.logits(z, lengths).numpy()[0]
    for s in range(5):  # not autoregressive: z_s reaches steps before and after s
        moved = z.copy()
        moved[0, s] += 1.0
        change = np.abs(emission.logits(moved, lengths).numpy()[0] - base).max(axis=-1)
        assert np.all(change > 1e-5), (s, change)
    longer = np.concatenate([z, z], axis=1)
    other_t = emission.logits(longer, np.array([6], np.int32)).numpy()[0]
    assert np.abs(other_t[0] - base[0]).max() > 1e-4


@pytest.mark.parametrize("text", [True, False], ids=["text", "music"])
def test_sample_frequencies_match_the_probabilities(text):
    emission = tiny(text, scale=0.3)
    n = 4000
    z = np.repeat(np.random.default_rng(5).normal(size=(1, 3, H)).astype(np.float32), n, axis=0)
    lengths = np.full([n], 2, np.int32)  # step 2 is padding
    x = emission.sample(z, lengths, seed=3)
    assert x.dtype == tf.int32 and x.shape == ((n, 3) if text else (n, 3, NOTES))
    x = x.numpy()
    assert np.all(x[:, 2] == 0)
    logits = emission.logits(z[:1], lengths[:1]).numpy()[0, :2]
    if text:
        probs = tf.nn.softmax(logits).numpy()
        freq = np.stack([np.bincount(x[:, t], minlength=V) / n for t in range(2)])
    else:
        probs = tf.sigmoid(logits).numpy()
        freq = x[:, :2].mean(axis=0)
    np.testing.assert_allclose(freq, probs, atol=4 * np.sqrt(0.25 / n))
    np.testing.assert_array_equal(emission.sample(z, lengths, seed=3).numpy(), x)
    assert np.any(emission.sample(z, lengths, seed=4).numpy() != x)


def test_tied_output_layer_is_the_shared_embedding_and_receives_gradient():
    emission = tiny(True, tied=True)
    assert emission.output_layer is None
    names = [w.path for w in emission.trainable_weights]
    assert sum("embeddings" in p for p in names) == 1
    rng = np.random.default_rng(6)
    z = rng.normal(size=(2, 3, H)).astype(np.float32)
    x = random_x(rng, True, 2, 3)
    with tf.GradientTape() as tape:
        loss = -tf.reduce_sum(emission.log_prob(x, z, np.array([3, 2], np.int32)))
    grads = tape.gradient(loss, emission.trainable_weights)
    for w, g in zip(emission.trainable_weights, grads):
        assert g is not None and np.abs(g.numpy()).max() > 0, w.path
    with pytest.raises(ValueError, match="tied embedding"):
        Emission(H, MAX_LENGTH, vocab_size=V, hidden_units=UNITS, projection_size=UNITS + 1,
                 tied_embedding=SymbolEmbedding(V, UNITS, is_text=True))


def test_mixed_bfloat16_is_close_to_float32():
    rng = np.random.default_rng(7)
    z = rng.normal(size=(2, 5, H)).astype(np.float32)
    x = random_x(rng, False, 2, 5)
    lengths = np.array([5, 3], np.int32)
    reference = tiny(False, scale=0.3)
    expected = reference.log_prob(x, z, lengths).numpy()
    try:
        keras.mixed_precision.set_global_policy("mixed_bfloat16")
        mixed = tiny(False, scale=0.3)
        assert mixed.bilstm.compute_dtype == "bfloat16"
        mixed.set_weights(reference.get_weights())
        got = mixed.log_prob(x, z, lengths)
    finally:
        keras.mixed_precision.set_global_policy("float32")
    assert got.dtype == tf.float32 and np.all(np.isfinite(got.numpy()))
    np.testing.assert_allclose(got.numpy(), expected, rtol=0.03, atol=0.05)


def test_config_round_trip_and_graph_mode():
    emission = tiny(False, tied=False, dropout=0.2)
    clone = Emission.from_config(emission.get_config())
    clone.build()
    clone.set_weights(emission.get_weights())
    z = np.random.default_rng(8).normal(size=(1, 3, H)).astype(np.float32)
    np.testing.assert_allclose(clone.logits(z, [3]).numpy(), emission.logits(z, [3]).numpy(), rtol=1e-6)
    assert clone.dropout == 0.2 and clone.num_notes == NOTES
    sample = tf.function(lambda z, n: emission.sample(z, n, seed=1))
    np.testing.assert_array_equal(sample(z, tf.constant([3])).numpy(), emission.sample(z, [3], seed=1).numpy())
    # Dropout is active only in training.
    train = emission.logits(z, [3], training=True).numpy()
    assert np.abs(train - emission.logits(z, [3]).numpy()).max() > 1e-4
