"""LatentFlowVAE: the ELBO and the importance-sampled NLL against their definitions and against
log p(x) by numerical integration, the IWAE ordering, padding, shapes for every prior, sampling,
training (loss decreases, every variable gets a gradient), mixed precision and configuration."""

import math

import keras
import numpy as np
import pytest
import tensorflow as tf
from scipy.special import logsumexp

from tf_latentflow import evaluation
from tf_latentflow.model import LatentFlowVAE

PRIORS = ["standard-normal", "af-af", "af-scf", "iaf-scf", "af-only"]
H, MAX_LENGTH, V, NOTES = 3, 6, 5, 4


def tiny(prior="standard-normal", text=True, seed=0, scale=0.4, latent_size=H, max_length=MAX_LENGTH,
         scales=None, **kwargs):
    """A small model with random weights (far from initial values) and a non-uniform p(T).

    scales: optional {sub-layer attribute: weight scale}, e.g. {"inference": 0.1}.
    """
    keras.utils.set_random_seed(seed)
    model = LatentFlowVAE(max_length, vocab_size=V if text else None, num_notes=None if text else NOTES,
                          prior=prior, latent_size=latent_size, embedding_size=6, hidden_units=6,
                          prior_lstm_units=6, num_flow_layers=2, flow_hidden_units=(6,), **kwargs)
    rng = np.random.default_rng(seed)
    scales = scales or {}
    for name, part in (("inference", model.inference), ("emission", model.emission), ("prior", model.prior)):
        for w in part.trainable_weights:
            w.assign(rng.normal(scale=scales.get(name, scale), size=w.shape).astype(np.float32))
    probs = rng.uniform(0.5, 1.5, size=max_length + 1)
    model.length_model.probs.assign((probs / probs.sum()).astype(np.float32))
    return model


def random_x(rng, text, lengths, steps):
    lengths = np.asarray(lengths, np.int32)
    if text:
        x = rng.integers(0, V, size=(len(lengths), steps)).astype(np.int32)
    else:
        x = (rng.uniform(size=(len(lengths), steps, NOTES)) < 0.4).astype(np.float32)
    return x, lengths


def log_p_length(model, lengths):
    return np.log(model.length_model.probs.numpy().astype(np.float64))[lengths]


# -- definitions -------------------------------------------------------------------------------

SHAPE_CASES = ([("standard-normal", text, lengths) for text in (True, False) for lengths in ([4], [5, 1, 3])]
               + [(prior, False, [5, 1, 3]) for prior in PRIORS[1:]] + [("af-af", True, [4])])


@pytest.mark.parametrize("prior,text,lengths", SHAPE_CASES)
def test_shapes_dtypes_and_the_identities_between_the_outputs(prior, text, lengths):
    model = tiny(prior, text)
    x, lengths = random_x(np.random.default_rng(1), text, lengths, max(lengths))
    elbo = model.elbo(x, lengths, num_samples=3, kl_weight=0.25, seed=5)
    nll = model.nll(x, lengths, num_samples=4, seed=5)
    for out in (elbo, nll):
        for name, value in out.items():
            assert value.shape == (len(lengths),) and value.dtype == tf.float32, name
            assert np.all(np.isfinite(value.numpy())), name
    e = {k: v.numpy().astype(np.float64) for k, v in elbo.items()}
    np.testing.assert_allclose(e["log_p_length"], log_p_length(model, lengths), rtol=1e-6)
    np.testing.assert_allclose(e["elbo"], e["reconstruction"] - e["kl"] + e["log_p_length"], rtol=1e-5)
    np.testing.assert_allclose(e["loss"], -e["reconstruction"] + 0.25 * e["kl"] - e["log_p_length"],
                               rtol=1e-5)
    n = {k: v.numpy().astype(np.float64) for k, v in nll.items()}
    np.testing.assert_allclose(n["neg_elbo"], -n["reconstruction"] + n["kl"] - n["log_p_length"], rtol=1e-5)
    assert np.all(n["nll"] <= n["neg_elbo"] + 1e-4)  # Jensen, on the same samples
    assert np.all(e["reconstruction"] < 0)


def test_elbo_terms_are_the_sampled_densities():
    """Recompute the K-sample terms from the parts: q's samples, the prior, the emission."""
    model = tiny("standard-normal", False)
    x, lengths = random_x(np.random.default_rng(2), False, [4, 2], 4)
    k = 3
    z, log_q = model.inference.sample_and_log_prob(x, lengths, k, seed=9)
    log_px = np.stack([model.emission.log_prob(x, z[i], lengths).numpy().sum(-1) for i in range(k)])
    zz = z.numpy().astype(np.float64)
    valid = (np.arange(4)[None] < lengths[:, None])[None, ..., None]
    log_pz = np.sum(valid * (-0.5 * zz ** 2 - 0.5 * math.log(2 * math.pi)), axis=(2, 3))  # N(0, I)
    kl = (log_q.numpy().sum(-1) - log_pz).mean(0)
    elbo = model.elbo(x, lengths, num_samples=k, seed=9)
    np.testing.assert_allclose(elbo["reconstruction"].numpy(), log_px.mean(0), rtol=1e-5)
    np.testing.assert_allclose(elbo["kl"].numpy(), kl, rtol=1e-4, atol=1e-4)
    log_w = log_px + log_pz - log_q.numpy().sum(-1)
    expected = -(logsumexp(log_w, axis=0) - math.log(k)) - log_p_length(model, lengths)
    np.testing.assert_allclose(model.nll(x, lengths, num_samples=k, seed=9)["nll"].numpy(), expected,
                               rtol=1e-5)
    # One sample: the estimate is the one-sample negative ELBO.
    one = model.nll(x, lengths, num_samples=1, seed=9)
    np.testing.assert_allclose(one["nll"].numpy(), -model.elbo(x, lengths, 1, seed=9)["elbo"].numpy(),
                               rtol=1e-5)


@pytest.mark.parametrize("prior,latent_size,steps", [("standard-normal", 1, 2), ("af-af", 1, 2),
                                                     ("af-scf", 2, 1), ("af-only", 2, 1)])
def test_importance_sampled_nll_agrees_with_numerical_integration(prior, latent_size, steps):
    """log p(x | T) = log int p(x | z, T) p(z | T) dz on a grid over the 2-D latent space.

    q is made broad (sigma ~ 2) so that 3000 importance samples are accurate to ~0.01 nats.
    """
    model = tiny(prior, False, latent_size=latent_size, max_length=3, scale=0.5,
                 scales={"inference": 0.1, "prior": 0.2})
    model.inference.head.bias.assign(np.repeat([0.0, math.log(4.0)], latent_size).astype(np.float32))
    x = np.array([[[1, 0, 1, 0], [0, 1, 1, 0]][:steps]], np.float32)
    lengths = np.array([steps], np.int32)
    grid = np.linspace(-9, 9, 181).astype(np.float32)
    dz = float(grid[1] - grid[0])
    z = np.stack(np.meshgrid(grid, grid, indexing="ij"), -1).reshape(-1, steps, latent_size)
    n_lengths = np.full([len(z)], steps, np.int32)
    log_pz = model.prior.log_prob(z, n_lengths).numpy().sum(-1).astype(np.float64)
    log_px_z = model.emission.log_prob(np.repeat(x, len(z), 0), z, n_lengths).numpy().sum(-1)
    assert abs(np.exp(logsumexp(log_pz)) * dz ** 2 - 1.0) < 5e-3  # the grid holds the prior's mass
    exact = -(logsumexp(log_px_z.astype(np.float64) + log_pz) + 2 * math.log(dz))
    exact -= log_p_length(model, lengths)[0]
    out = model.nll(x, lengths, num_samples=3000, seed=1, chunk_size=1000)
    assert abs(out["nll"].numpy()[0] - exact) < 0.03, (out["nll"].numpy()[0], exact)
    assert out["neg_elbo"].numpy()[0] > exact - 0.02  # the ELBO is a lower bound on log p(x)
    assert out["neg_elbo"].numpy()[0] - exact > 0.05  # ... and not a tight one here: IS matters


def test_more_samples_do_not_loosen_the_bound_on_average():
    model = tiny("af-scf", True, scale=0.6)
    x, lengths = random_x(np.random.default_rng(3), True, [6, 5, 4, 6, 3, 5, 2, 6], 6)
    nll = tf.function(lambda seed, k: model.nll(x, lengths, num_samples=k, seed=seed)["nll"])
    means = {}
    for k in (1, 8, 64):
        values = np.stack([nll(tf.constant([s, 7]), k).numpy() for s in range(6)])  # [seeds, B]
        means[k] = values.mean()
    neg_elbo = model.nll(x, lengths, num_samples=64, seed=0)
    assert np.all(neg_elbo["nll"].numpy() <= neg_elbo["neg_elbo"].numpy() + 1e-4)
    assert means[1] > means[8] + 0.05 and means[8] > means[64] + 0.02, means


@pytest.mark.parametrize("text", [True, False], ids=["text", "music"])
def test_padding_contributes_nothing(text):
    model = tiny("af-scf", text)
    rng = np.random.default_rng(4)
    x, lengths = random_x(rng, text, [2, 5, 3], 5)
    other, _ = random_x(rng, text, [2, 5, 3], 5)
    for i, n in enumerate(lengths):
        other[i, :n] = x[i, :n]
    assert np.any(other != x)
    for fn in (lambda x: model.elbo(x, lengths, num_samples=2, seed=3),
               lambda x: model.nll(x, lengths, num_samples=4, seed=3, chunk_size=2)):
        a, b = fn(x), fn(other)
        for name in a:
            np.testing.assert_allclose(a[name].numpy(), b[name].numpy(), rtol=1e-6, atol=1e-6)
    # Padded to a longer T, the extra steps hold z = 0 and add nothing to any term.
    longer = np.concatenate([x, x], axis=1)
    z_long, log_q_long = model.inference.sample_and_log_prob(longer, lengths, 1, seed=1)
    assert np.all(z_long.numpy()[:, :, 5:] == 0) and np.all(log_q_long.numpy()[:, :, 5:] == 0)
    steps = model.log_weight_terms(longer, lengths, 2, seed=3)
    assert all(np.all(np.isfinite(v.numpy())) for v in steps.values())


def test_nll_chunks_and_graph_mode():
    model = tiny("standard-normal", True)
    x, lengths = random_x(np.random.default_rng(5), True, [4, 3], 4)
    eager = model.nll(x, lengths, num_samples=10, seed=2, chunk_size=4)["nll"].numpy()
    graph = tf.function(lambda x, n: model.nll(x, n, num_samples=10, seed=2, chunk_size=4)["nll"])
    np.testing.assert_allclose(graph(x, lengths).numpy(), eager, rtol=1e-5)
    # Chunks only change which noise is drawn: the estimates agree closely with many samples.
    whole = model.nll(x, lengths, num_samples=2000, seed=2)["nll"].numpy()
    chunked = model.nll(x, lengths, num_samples=2000, seed=2, chunk_size=700)["nll"].numpy()
    np.testing.assert_allclose(chunked, whole, atol=0.05)
    assert np.any(chunked != whole)



@pytest.mark.parametrize("prior", ["standard-normal", "af-scf", "iaf-scf"])
@pytest.mark.parametrize("jit_compile", [False, True], ids=["graph", "xla"])
def test_the_nll_chunks_share_one_encoder_pass(prior, jit_compile, monkeypatch):
    """`nll` draws its chunks from one encoder pass (`log_weight_terms(posterior=...)`):
    on a batch padded beyond its longest sequence that must give the log-weights of a
    fresh encoder pass per call, and the NLL must be built from them."""
    model = tiny(prior, text=False)
    x, lengths = random_x(np.random.default_rng(7), False, [2, 4, 1], MAX_LENGTH)
    x[:, 4:] = 1.0  # steps past the longest length: padding that must never be read
    seed = tf.constant([3, 4], tf.int64)

    def both(x, lengths):
        posterior = model.inference.gaussian_parameters(x, lengths)
        fast = model.log_weight_terms(x, lengths, 3, seed=seed, posterior=posterior)
        slow = model.log_weight_terms(x, lengths, 3, seed=seed)
        return fast, slow

    fast, slow = tf.function(both, jit_compile=jit_compile)(x, lengths)
    for name in slow:
        np.testing.assert_allclose(fast[name].numpy(), slow[name].numpy(), rtol=1e-5, atol=1e-5,
                                   err_msg=name)
    # one encoder pass per call, however many chunks
    calls, encode = [], model.inference.gaussian_parameters
    monkeypatch.setattr(model.inference, "gaussian_parameters",
                        lambda *a, **k: (calls.append(1), encode(*a, **k))[1])
    model.nll(x, lengths, num_samples=6, seed=seed, chunk_size=2)
    assert len(calls) == 1
    monkeypatch.undo()
    # and the NLL itself is built from those log-weights (one chunk: the same seed)
    terms = model.log_weight_terms(x, lengths, 5, seed=seed)
    log_w = (terms["log_px_z"] + terms["log_pz"] - terms["log_qz"]).numpy().astype(np.float64)
    expected = -(logsumexp(log_w, axis=0) - math.log(5)) - log_p_length(model, lengths)
    np.testing.assert_allclose(model.nll(x, lengths, num_samples=5, seed=seed)["nll"].numpy(), expected,
                               rtol=1e-5, atol=1e-4)


# -- sampling ---------------------------------------------------------------------------------

@pytest.mark.parametrize("prior,text", [("standard-normal", True), ("af-af", False), ("iaf-scf", True)])
def test_sample_shapes_lengths_and_seeds(prior, text):
    model = tiny(prior, text)
    x, lengths = model.sample(5, seed=3)
    assert x.dtype == lengths.dtype == tf.int32 and lengths.shape == (5,)
    steps = max(int(lengths.numpy().max()), 1)
    assert x.shape == ((5, steps) if text else (5, steps, NOTES))
    valid = np.arange(steps)[None] < lengths.numpy()[:, None]
    assert np.all(x.numpy()[~valid] == 0)
    assert x.numpy().min() >= 0 and x.numpy().max() < (V if text else 2)
    again = model.sample(5, seed=3)
    np.testing.assert_array_equal(again[0].numpy(), x.numpy())
    fixed, fixed_lengths = model.sample(4, lengths=3, seed=4, max_length=6)
    assert fixed.shape[:2] == (4, 6) and np.all(fixed_lengths.numpy() == 3)
    assert np.all(fixed.numpy()[:, 3:] == 0)
    assert np.any(model.sample(4, lengths=3, seed=5, max_length=6)[0].numpy() != fixed.numpy())
    compiled = tf.function(lambda seed: model.sample(4, lengths=3, seed=seed, max_length=6))
    np.testing.assert_array_equal(compiled(tf.constant([4, 0]))[0].numpy(), fixed.numpy())


def test_sampled_lengths_follow_p_of_t():
    model = tiny("standard-normal", True)
    probs = np.array([0, 0, 0.7, 0, 0.3, 0, 0], np.float32)
    model.length_model.probs.assign(probs)
    _, lengths = model.sample(400, seed=1)
    counts = np.bincount(lengths.numpy(), minlength=7) / 400
    np.testing.assert_allclose(counts, probs, atol=0.08)


# -- training ---------------------------------------------------------------------------------

@pytest.mark.parametrize("prior", PRIORS + ["af-af-affine", "af-af-af-hidden"])
def test_every_trainable_variable_receives_a_gradient(prior):
    model = tiny(prior, prior != "af-only", scale=0.3)
    x, lengths = random_x(np.random.default_rng(6), model.is_text, [4, 2], 4)
    with tf.GradientTape() as tape:
        loss = tf.reduce_mean(model.elbo(x, lengths, num_samples=2, kl_weight=0.5, seed=1)["loss"])
    variables = model.trainable_variables
    names = [v.path for v in variables]
    assert len(names) == len(set(names))
    assert any("prior" in n for n in names) == (prior != "standard-normal")
    assert sum("embeddings" in n for n in names) == 1  # tied: one matrix for input and output
    for v, g in zip(variables, tape.gradient(loss, variables)):
        assert g is not None and np.abs(tf.convert_to_tensor(g).numpy()).max() > 0, v.path
    assert not any(v is model.length_model.probs for v in variables)


@pytest.mark.slow  # the default suite's 10-minute budget
def test_training_on_a_tiny_dataset_reduces_the_loss():
    """Music-like sequences with a deterministic rotating note: learnable through z and T."""
    keras.utils.set_random_seed(0)
    model = LatentFlowVAE(MAX_LENGTH, num_notes=NOTES, prior="af-scf", latent_size=2, embedding_size=8,
                          hidden_units=8, prior_lstm_units=8, num_flow_layers=2, flow_hidden_units=(8,))
    rng = np.random.default_rng(0)
    lengths = rng.integers(3, MAX_LENGTH + 1, size=16).astype(np.int32)
    offsets = rng.integers(0, NOTES, size=16)
    x = np.zeros((16, MAX_LENGTH, NOTES), np.float32)
    for i, (n, o) in enumerate(zip(lengths, offsets)):
        x[i, np.arange(n), (o + np.arange(n)) % NOTES] = 1.0
    optimizer = keras.optimizers.Adam(0.03)

    @tf.function
    def step(x, lengths, seed):
        with tf.GradientTape() as tape:
            out = model.elbo(x, lengths, num_samples=1, kl_weight=1.0, seed=seed, training=True)
            loss = tf.reduce_mean(evaluation.per_step(out["loss"], lengths))
        grads = tape.gradient(loss, model.trainable_variables)
        grads, _ = tf.clip_by_global_norm(grads, 5.0)
        optimizer.apply_gradients(zip(grads, model.trainable_variables))
        return loss

    losses = [float(step(x, lengths, tf.constant([i, 0]))) for i in range(300)]
    first, last = np.mean(losses[:10]), np.mean(losses[-20:])
    assert np.isfinite(losses).all()
    # From ~2.4 nats per step (random) to ~1.8 (the per-note frequencies, 1.9 over T + 1).
    assert last < 0.8 * first, (first, last)
    # The importance-sampled NLL of the trained model is on the trained scale too.
    nll = model.nll(x, lengths, num_samples=20, seed=1)["nll"]
    assert float(evaluation.nats_per_step(nll, lengths)) < 0.8 * first


# -- precision, configuration -----------------------------------------------------------------

@pytest.mark.parametrize("policy", ["mixed_bfloat16", "mixed_float16"])
@pytest.mark.parametrize("prior", ["standard-normal", "af-scf", "iaf-scf"])
def test_mixed_precision_forward_pass_is_close_to_float32(prior, policy):
    # mixed_float16 is the GPU policy; float16 kernels also run on this CPU, so both
    # policies are checked here.
    reference = tiny(prior, False, scale=0.3)
    x, lengths = random_x(np.random.default_rng(7), False, [5, 3], 5)
    expected = reference.elbo(x, lengths, num_samples=2, seed=4)
    try:
        keras.mixed_precision.set_global_policy(policy)
        mixed = tiny(prior, False, scale=0.3)
        assert mixed.inference.bilstm.compute_dtype == policy.split("_")[1]
        mixed.set_weights(reference.get_weights())
        got = mixed.elbo(x, lengths, num_samples=2, seed=4)
        got_nll = mixed.nll(x, lengths, num_samples=4, seed=4)["nll"]
    finally:
        keras.mixed_precision.set_global_policy("float32")
    for name in ("reconstruction", "loss"):
        assert got[name].dtype == tf.float32 and np.all(np.isfinite(got[name].numpy()))
        np.testing.assert_allclose(got[name].numpy(), expected[name].numpy(), rtol=0.02)
    # The KL is a difference of two log-densities summed over T * H dimensions, so the
    # conditioners' rounding adds up: bfloat16 keeps 8 significand bits, and which CPU
    # kernels run (oneDNN picks them by ISA: AVX2 vs AVX-512) moves it by ~2% (seen: 9.26
    # vs 9.43 on an AVX2-only machine); float16 stays within 0.1.
    kl_tolerance = dict(rtol=0.05, atol=0.1) if policy == "mixed_bfloat16" else dict(atol=0.1)
    np.testing.assert_allclose(got["kl"].numpy(), expected["kl"].numpy(), **kl_tolerance)
    assert got_nll.dtype == tf.float32 and np.all(np.isfinite(got_nll.numpy()))


def test_config_round_trip_and_argument_errors():
    model = tiny("af-scf", False, inference_dropout=0.1, tie_weights=False)
    config = model.get_config()
    assert config["prior"] == "af-scf" and config["num_notes"] == NOTES and not config["tie_weights"]
    clone = LatentFlowVAE.from_config(config)
    clone.set_weights(model.get_weights())
    x, lengths = random_x(np.random.default_rng(8), False, [3], 3)
    np.testing.assert_allclose(clone.elbo(x, lengths, 2, seed=1)["loss"].numpy(),
                               model.elbo(x, lengths, 2, seed=1)["loss"].numpy(), rtol=1e-5)
    assert model.emission.output_layer is not None
    out = model({"x": x, "lengths": lengths, "mask": np.ones((1, 3), np.float32)})
    assert out["loss"].shape == (1,)
    with pytest.raises(ValueError, match="exactly one"):
        LatentFlowVAE(4, vocab_size=3, num_notes=4)
    with pytest.raises(ValueError, match="num_samples"):
        model.elbo(x, lengths, num_samples=0)


@pytest.mark.parametrize("prior", ["af-af", "iaf-scf"])
def test_the_models_policy_reaches_every_sublayer_without_the_global_one(prior):
    """dtype="mixed_float16" with Keras's global policy at float32: every LSTM, dense and
    conditioner layer (the prior's too) computes in float16, the flow containers and the
    Gaussian head keep float32 inputs, and the global policy is untouched."""
    assert keras.mixed_precision.global_policy().name == "float32"
    model = tiny(prior, False, dtype="mixed_float16")
    kinds = (keras.layers.Dense,) + tuple(
        type(layer) for layer in model._flatten_layers() if type(layer).__name__ in (
            "FastLSTM", "ContextMLP", "MADE"))
    leaves = [layer for layer in model._flatten_layers() if isinstance(layer, kinds)]
    assert any(type(layer).__name__ in ("MADE", "ContextMLP") for layer in leaves)
    float32_by_design = {"head"}  # the Gaussian's parameters (layers.inference)
    for layer in leaves:
        expected = "float32" if layer.name in float32_by_design else "mixed_float16"
        assert layer.dtype_policy.name == expected, layer.path if hasattr(layer, "path") else layer.name
    assert keras.mixed_precision.global_policy().name == "float32"
    x, lengths = random_x(np.random.default_rng(3), False, [4, 2], 4)
    out = model.elbo(x, lengths, num_samples=2, seed=1)
    assert out["loss"].dtype == tf.float32 and np.all(np.isfinite(out["loss"].numpy()))


def _ops_of(concrete):
    """Every op type in a traced function, including its loops' and conditions' bodies."""
    graph_def = concrete.graph.as_graph_def()
    ops = [node.op for node in graph_def.node]
    for function in graph_def.library.function:
        ops += [node.op for node in function.node_def]
    return ops


@pytest.mark.parametrize("prior", ["af-af", "af-scf", "iaf-scf", "standard-normal"])
def test_no_one_hot_t_features_are_built_in_training_or_sampling(prior):
    """The T-features enter every LSTM as rows of its kernel (two gathers per step), never
    as a [B, T, 2 x T_max] one-hot tensor: no OneHot op in the ELBO (with its gradients)
    or the sampler."""
    model = tiny(prior, False)
    x, lengths = random_x(np.random.default_rng(5), False, [4, 2], 4)

    @tf.function
    def train(x, lengths):
        with tf.GradientTape() as tape:
            loss = tf.reduce_sum(model.elbo(x, lengths, num_samples=1, seed=1, training=True)["loss"])
        return tape.gradient(loss, model.trainable_variables)

    sample = tf.function(lambda lengths: model.sample(2, lengths=lengths, seed=3))
    for concrete in (train.get_concrete_function(tf.constant(x), tf.constant(lengths)),
                     sample.get_concrete_function(tf.constant([4, 2]))):
        assert "OneHot" not in _ops_of(concrete)


def test_no_one_hot_t_features_in_the_lstm_baseline():
    from tf_latentflow.baseline import LSTMBaseline

    model = LSTMBaseline(MAX_LENGTH, num_notes=NOTES, embedding_size=6, hidden_units=6)
    x, lengths = random_x(np.random.default_rng(6), False, [4, 2], 4)
    nll = tf.function(lambda x, lengths: model.nll(x, lengths))
    sample = tf.function(lambda lengths: model.sample(2, lengths=lengths, seed=3))
    for concrete in (nll.get_concrete_function(tf.constant(x), tf.constant(lengths)),
                     sample.get_concrete_function(tf.constant([4, 2]))):
        assert "OneHot" not in _ops_of(concrete)
