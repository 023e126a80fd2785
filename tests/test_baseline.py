"""LSTMBaseline: exact NLL against a NumPy LSTM and brute-force normalisation, padding,
T-conditioning, sampling (determinism, tf.function, agreement with the NLL), training,
mixed precision and serialisation."""

import itertools
import math

import keras
import numpy as np
import pytest
import tensorflow as tf

from tf_latentflow.baseline import LSTMBaseline


def tiny(max_length=4, *, text=True, size=3, units=16, dropout=0.0, seed=0, weight_scale=0.5, **kwargs):
    """A small model with random (far from initial) weights and a non-uniform p(T)."""
    keras.utils.set_random_seed(seed)
    model = LSTMBaseline(max_length, vocab_size=size if text else None, num_notes=None if text else size,
                         embedding_size=units, hidden_units=units, dropout=dropout, **kwargs)
    rng = np.random.default_rng(seed)
    for w in model.trainable_weights:
        w.assign(rng.normal(scale=weight_scale, size=w.shape).astype(np.float32))
    probs = rng.uniform(0.5, 1.5, size=max_length + 1)
    model.length_model.probs.assign((probs / probs.sum()).astype(np.float32))
    return model


def sigmoid(a):
    return 1.0 / (1.0 + np.exp(-a))


def numpy_log_prob(model, x, length):
    """log p(x | T) of one sequence (x[:length] used) by an independent float64 NumPy LSTM."""
    W = {w.path.split("/", 1)[1]: w.numpy().astype(np.float64) for w in model.weights}
    emb, depth, units = W["embeddings"], model.max_length, model.hidden_units
    hs = [np.zeros(units) for _ in range(model.num_layers)]
    cs = [np.zeros(units) for _ in range(model.num_layers)]
    prev, total = W["start"], 0.0
    for t in range(length):
        inp = np.concatenate([prev, np.eye(depth)[t], np.eye(depth)[length - 1 - t]])
        for i in range(model.num_layers):
            p = f"lstm_{i}/"
            z = inp @ W[p + "kernel"] + hs[i] @ W[p + "recurrent_kernel"] + W[p + "bias"]
            gi, gf, gc, go = np.split(z, 4)  # Keras gate order: input, forget, cell, output
            cs[i] = sigmoid(gf) * cs[i] + sigmoid(gi) * np.tanh(gc)
            hs[i] = sigmoid(go) * np.tanh(cs[i])
            inp = hs[i]
        logits = (inp @ W["projection/kernel"] + W["projection/bias"]) @ emb.T + W["output_bias"]
        if model.is_text:
            total += logits[x[t]] - np.log(np.sum(np.exp(logits)))
            prev = emb[x[t]]
        else:
            total += np.sum(x[t] * logits - np.logaddexp(0.0, logits))
            prev = x[t].astype(np.float64) @ emb
    return total


def random_batch(rng, model, lengths, steps):
    lengths = np.asarray(lengths, np.int32)
    if model.is_text:
        x = rng.integers(0, model.vocab_size, size=(len(lengths), steps)).astype(np.int32)
    else:
        x = (rng.uniform(size=(len(lengths), steps, model.num_notes)) < 0.4).astype(np.float32)
    return x, lengths


@pytest.mark.parametrize("text", [True, False], ids=["text", "music"])
@pytest.mark.parametrize("lengths", [[3], [5, 1, 3, 0]], ids=["batch1", "mixed"])
def test_nll_matches_independent_numpy_lstm(text, lengths):
    model = tiny(6, text=text, size=5)
    x, lengths = random_batch(np.random.default_rng(1), model, lengths, steps=5)
    expected = np.array([numpy_log_prob(model, xi, int(li)) for xi, li in zip(x, lengths)])
    log_p_T = np.log(model.length_model.probs.numpy().astype(np.float64))[lengths]
    got = model.nll(x, lengths, include_length=False)
    assert got.dtype == tf.float32 and got.shape == (len(lengths),)
    np.testing.assert_allclose(got.numpy(), -expected, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(model.nll(x, lengths).numpy(), -expected - log_p_T, rtol=1e-5, atol=1e-5)
    steps = model.log_prob_steps(x, lengths).numpy()
    np.testing.assert_allclose(steps.sum(axis=1), expected, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("text", [True, False], ids=["text", "music"])
def test_probabilities_of_all_sequences_sum_to_one(text):
    # Text: vocabulary 2, T <= 3 (1 + 2 + 4 + 8 sequences); music: 2 notes, T <= 2 (1 + 4 + 16).
    max_length = 3 if text else 2
    model = tiny(max_length, text=text, size=2, weight_scale=1.0)
    symbols = [0, 1] if text else [np.array(v, np.float32) for v in itertools.product([0, 1], repeat=2)]
    total_joint = 0.0
    for length in range(max_length + 1):
        seqs = list(itertools.product(symbols, repeat=length))
        x = np.zeros((len(seqs), max_length) + (() if text else (2,)), np.float32 if not text else np.int32)
        for i, s in enumerate(seqs):
            if length:
                x[i, :length] = np.stack(s)
        lengths = np.full(len(seqs), length, np.int32)
        p_given_T = np.exp(-model.nll(x, lengths, include_length=False).numpy().astype(np.float64))
        assert p_given_T.sum() == pytest.approx(1.0, abs=1e-5)
        assert np.all(p_given_T > 0)
        total_joint += np.exp(-model.nll(x, lengths).numpy().astype(np.float64)).sum()
    assert total_joint == pytest.approx(1.0, abs=1e-5)


@pytest.mark.parametrize("text", [True, False], ids=["text", "music"])
def test_padding_steps_contribute_nothing(text):
    model = tiny(8, text=text, size=4)
    rng = np.random.default_rng(2)
    x, lengths = random_batch(rng, model, [2, 6, 0, 4], steps=6)
    ref = model.nll(x, lengths).numpy()
    ref_steps = model.log_prob_steps(x, lengths).numpy()
    assert np.all(ref_steps[np.arange(6)[None, :] >= lengths[:, None]] == 0.0)
    # Arbitrary padded values (out-of-range ids for text, NaN for music) change nothing.
    x2 = x.copy()
    pad = np.arange(6)[None, :] >= lengths[:, None]
    if text:
        x2[pad] = rng.integers(0, 10_000, size=pad.sum())
    else:
        x2[pad] = np.nan
    np.testing.assert_array_equal(model.nll(x2, lengths).numpy(), ref)
    # Extra padding columns, and scoring each row on its own, give the same numbers.
    wider = np.concatenate([x, x[:, :3]], axis=1)
    np.testing.assert_allclose(model.nll(wider, lengths).numpy(), ref, rtol=1e-6, atol=1e-6)
    for i, length in enumerate(lengths):
        alone = model.nll(x[i:i + 1, :max(length, 1)], lengths[i:i + 1]).numpy()
        np.testing.assert_allclose(alone, ref[i:i + 1], rtol=1e-5, atol=1e-6)
    # A valid value is not ignored.
    x3 = x.copy()
    x3[1, 5] = (x3[1, 5] + 1) % model.vocab_size if text else 1.0 - x3[1, 5]
    assert model.nll(x3, lengths).numpy()[1] != ref[1]


def test_every_step_is_conditioned_on_the_length():
    model = tiny(6, text=True, size=4)
    x = np.array([[1, 2, 3, 0, 1, 2]] * 3, np.int32)
    logits = model.logits(x, np.array([2, 4, 6])).numpy()
    assert not np.allclose(logits[0, 0], logits[1, 0])  # the first symbol already sees T
    assert not np.allclose(logits[1, 1], logits[2, 1])


def test_lengths_beyond_the_conditioning_depth_raise():
    model = tiny(4, text=True, size=3)
    with pytest.raises(tf.errors.InvalidArgumentError):
        model.nll(np.zeros((1, 5), np.int32), [5])
    with pytest.raises(tf.errors.InvalidArgumentError):
        model.nll(np.zeros((1, 3), np.int32), [4])  # length longer than x
    with pytest.raises(ValueError):
        LSTMBaseline(4, vocab_size=3, num_notes=88)
    with pytest.raises(ValueError):
        LSTMBaseline(4)


@pytest.mark.parametrize("text", [True, False], ids=["text", "music"])
def test_sample_shapes_determinism_and_padding(text):
    model = tiny(7, text=text, size=5)
    probs = np.zeros(8, np.float32)
    probs[[0, 3, 7]] = [0.2, 0.4, 0.4]
    model.length_model.probs.assign(probs)
    x, lengths = model.sample(64, seed=[1, 2])
    event = () if text else (5,)
    assert x.dtype == tf.int32 and lengths.dtype == tf.int32
    assert x.shape == (64, int(np.max(lengths))) + event
    assert set(np.unique(lengths.numpy())) <= {0, 3, 7} and len(set(lengths.numpy())) > 1
    x_np = x.numpy()
    assert x_np.min() >= 0 and x_np.max() < (5 if text else 2) and x_np.max() > 0
    pad = np.arange(x.shape[1])[None, :] >= lengths.numpy()[:, None]
    assert np.all(x_np[pad] == 0)
    x2, lengths2 = model.sample(64, seed=[1, 2])
    np.testing.assert_array_equal(x2.numpy(), x_np)
    np.testing.assert_array_equal(lengths2.numpy(), lengths.numpy())
    x3, _ = model.sample(64, lengths=lengths, seed=[1, 3])
    assert not np.array_equal(x3.numpy(), x_np)
    # Given lengths (a scalar broadcasts), a fixed output length, batch size 1.
    x4, l4 = model.sample(1, lengths=3, seed=5, max_length=7)
    assert x4.shape == (1, 7) + event and l4.numpy().tolist() == [3]
    with pytest.raises(tf.errors.InvalidArgumentError):
        model.sample(2, lengths=[3, 6], seed=5, max_length=4)


def test_sample_inside_tf_function_matches_eager():
    model = tiny(6, text=False, size=4)

    @tf.function(input_signature=[tf.TensorSpec([], tf.int32), tf.TensorSpec([2], tf.int64)])
    def draw(n, seed):
        return model.sample(n, seed=seed, max_length=6)

    x, lengths = draw(tf.constant(5), tf.constant([7, 8], tf.int64))
    assert x.shape == (5, 6, 4)
    x_eager, lengths_eager = model.sample(5, seed=[7, 8], max_length=6)
    np.testing.assert_array_equal(x.numpy(), x_eager.numpy())
    np.testing.assert_array_equal(lengths.numpy(), lengths_eager.numpy())
    x1, _ = draw(tf.constant(1), tf.constant([7, 8], tf.int64))
    assert x1.shape == (1, 6, 4)


@pytest.mark.parametrize("text", [True, False], ids=["text", "music"])
def test_sample_frequencies_match_nll(text):
    # With T = 2 the support is small (3^2 texts, 4^2 two-note rolls): the sampler's
    # empirical frequencies must agree with exp(-nll) within binomial noise.
    model = tiny(2, text=text, size=3 if text else 2, weight_scale=0.3)
    n = 20_000
    x, _ = tf.function(lambda: model.sample(n, lengths=2, seed=[11, 12]))()
    x = x.numpy().reshape(n, -1)
    if text:
        support = np.array(list(itertools.product(range(3), repeat=2)), np.int32)
    else:
        support = np.array(list(itertools.product([0, 1], repeat=4)), np.float32).reshape(-1, 2, 2)
    p = np.exp(-model.nll(support, np.full(len(support), 2), include_length=False).numpy().astype(np.float64))
    assert p.sum() == pytest.approx(1.0, abs=1e-5) and p.min() > 0.005  # a spread-out test case
    freq = np.array([np.mean(np.all(x == row.reshape(-1), axis=1)) for row in support])
    sigma = np.sqrt(p * (1 - p) / n)
    assert np.all(np.abs(freq - p) < 5 * sigma), (freq, p)


@pytest.mark.parametrize("text", [True, False], ids=["text", "music"])
def test_near_deterministic_sampler_follows_the_parallel_logits(text):
    # Scaling the output layer by 1e3 makes sampling an argmax (text) / sign test (music);
    # the sampled sequences must then equal greedy decoding through `logits`, which sees
    # x_<t by teacher forcing. This checks the shift, the T-features at each step and the
    # feedback of sampled symbols in the serial loop against the parallel pass.
    model = tiny(6, text=text, size=5, weight_scale=0.5)
    for w in (model.projection.kernel, model.projection.bias):
        w.assign(w * 1e3)
    lengths = np.array([6, 1, 4, 0, 5, 6], np.int32)
    x, _ = model.sample(len(lengths), lengths=lengths, seed=[3, 4], max_length=6)
    greedy = np.zeros(x.shape, np.int32)
    for t in range(6):
        logits = model.logits(greedy, lengths).numpy()[:, t]
        greedy[:, t] = np.argmax(logits, -1) if text else (logits > 0)
    greedy[np.arange(6)[None, :] >= lengths[:, None]] = 0
    np.testing.assert_array_equal(x.numpy(), greedy)
    assert len(np.unique(greedy[0])) > 1  # not a trivially constant sequence


@pytest.mark.parametrize("text", [True, False], ids=["text", "music"])
def test_training_reduces_nll_and_reaches_every_variable(text):
    model = tiny(8, text=text, size=4, dropout=0.1, weight_scale=0.1)
    rng = np.random.default_rng(3)
    lengths = rng.integers(3, 9, size=16).astype(np.int32)
    if text:  # a deterministic pattern: x_t = t mod 4
        x = np.tile(np.arange(8) % 4, (16, 1)).astype(np.int32)
    else:  # note t mod 4 on, plus note 0 always on
        x = np.zeros((16, 8, 4), np.float32)
        x[:, np.arange(8), np.arange(8) % 4] = 1.0
        x[:, :, 0] = 1.0
    opt = keras.optimizers.Adam(1e-2)

    @tf.function
    def step():
        with tf.GradientTape() as tape:
            loss = tf.reduce_mean(model.nll(x, lengths, training=True))
        grads = tape.gradient(loss, model.trainable_variables)
        opt.apply_gradients(zip(grads, model.trainable_variables))
        return loss, grads

    before = float(tf.reduce_mean(model.nll(x, lengths, include_length=False)))
    _, grads = step()
    for var, g in zip(model.trainable_variables, grads):
        assert g is not None and float(tf.reduce_max(tf.abs(g))) > 0.0, var.path
    assert "length_model/probs" not in [v.path for v in model.trainable_variables]
    for _ in range(200):
        step()
    after = float(tf.reduce_mean(model.nll(x, lengths, include_length=False)))
    assert after < 0.2 * before, (before, after)


def test_dropout_only_in_training():
    model = tiny(5, text=True, size=4, dropout=0.5)
    x, lengths = random_batch(np.random.default_rng(4), model, [5, 3], steps=5)
    a, b = model.nll(x, lengths).numpy(), model.nll(x, lengths).numpy()
    np.testing.assert_array_equal(a, b)
    assert not np.allclose(model.nll(x, lengths, training=True).numpy(), a)


@pytest.mark.parametrize("text", [True, False], ids=["text", "music"])
def test_mixed_bfloat16_forward_is_close_to_float32(text):
    reference = tiny(6, text=text, size=5, weight_scale=0.3)
    x, lengths = random_batch(np.random.default_rng(5), reference, [6, 2, 4], steps=6)
    expected = reference.nll(x, lengths).numpy()
    try:
        keras.mixed_precision.set_global_policy("mixed_bfloat16")
        model = LSTMBaseline(6, vocab_size=5 if text else None, num_notes=None if text else 5,
                             embedding_size=16, hidden_units=16, dropout=0.0)
        model.set_weights(reference.get_weights())
        assert model.compute_dtype == "bfloat16"
        assert model.lstm_layers[0].compute_dtype == "bfloat16"
        assert model.logits(x, lengths).dtype == tf.float32
        got = model.nll(x, lengths).numpy()
        samples, _ = model.sample(3, seed=1)
        assert samples.dtype == tf.int32
    finally:
        keras.mixed_precision.set_global_policy("float32")
    assert got.dtype == np.float32 and np.all(np.isfinite(got))
    np.testing.assert_allclose(got, expected, rtol=3e-2, atol=0.05)
    assert not np.array_equal(got, expected)  # bfloat16 did run


def test_config_and_keras_save_round_trip(tmp_path):
    model = tiny(5, text=False, size=3)
    x, lengths = random_batch(np.random.default_rng(6), model, [5, 2], steps=5)
    expected = model.nll(x, lengths).numpy()
    config = model.get_config()
    assert config["num_notes"] == 3 and config["vocab_size"] is None and config["max_length"] == 5
    clone = LSTMBaseline.from_config(config)
    clone.set_weights(model.get_weights())
    np.testing.assert_allclose(clone.nll(x, lengths).numpy(), expected, rtol=1e-6)
    path = tmp_path / "baseline.keras"
    model.save(path)
    loaded = keras.models.load_model(path)
    assert isinstance(loaded, LSTMBaseline)
    np.testing.assert_allclose(loaded.nll(x, lengths).numpy(), expected, rtol=1e-6)
    np.testing.assert_array_equal(loaded.length_model.probs.numpy(), model.length_model.probs.numpy())


def test_paper_defaults():
    model = LSTMBaseline(10, vocab_size=50)
    assert (model.num_layers, model.hidden_units, model.embedding_size) == (2, 500, 500)
    assert model.dropout == pytest.approx(0.1) and model.tie_weights
    assert model.embeddings.shape == (50, 500)
    assert model.lstm_layers[0].kernel.shape == (500 + 20, 4 * 500)
    assert math.isclose(float(np.sum(model.length_model.probs.numpy())), 1.0, rel_tol=1e-6)


def test_export_archive_round_trip(tmp_path):
    # The exporter's path: trace sample and nll into a SavedModel and reload it.
    model = tiny(6, text=True, size=5)
    archive = keras.export.ExportArchive()
    archive.track(model)
    archive.add_endpoint("sample", lambda n, seed: model.sample(n, seed=seed, max_length=6),
                         input_signature=[tf.TensorSpec([], tf.int32), tf.TensorSpec([2], tf.int64)])
    archive.add_endpoint("nll", lambda x, lengths: model.nll(x, lengths),
                         input_signature=[tf.TensorSpec([None, None], tf.int32),
                                          tf.TensorSpec([None], tf.int32)])
    archive.write_out(str(tmp_path / "export"), verbose=False)
    restored = tf.saved_model.load(str(tmp_path / "export"))
    for n in (1, 4):
        x, lengths = restored.sample(tf.constant(n), tf.constant([5, 6], tf.int64))
        x_mem, lengths_mem = model.sample(n, seed=[5, 6], max_length=6)
        np.testing.assert_array_equal(x.numpy(), x_mem.numpy())
        np.testing.assert_array_equal(lengths.numpy(), lengths_mem.numpy())
        np.testing.assert_allclose(restored.nll(x, lengths).numpy(), model.nll(x, lengths).numpy(),
                                   rtol=1e-6)
