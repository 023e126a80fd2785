"""The interface both models implement (tf_latentflow.sequence_model): same members, same
return structures, values consistent with each model's own methods."""

import numpy as np
import pytest
import tensorflow as tf

from tf_latentflow.baseline import LSTMBaseline
from tf_latentflow.layers import LengthModel
from tf_latentflow.model import LatentFlowVAE
from tf_latentflow.sequence_model import SequenceModel

SIZES = dict(embedding_size=8, hidden_units=8)


def models():
    lm = lambda: LengthModel.from_lengths([3, 4, 6], smoothing=True, name="length_model")  # noqa: E731
    vae = LatentFlowVAE(max_length=7, num_notes=88, prior="af-scf", latent_size=4, prior_lstm_units=8,
                        num_flow_layers=2, flow_hidden_units=(8,), length_model=lm(), **SIZES)
    return {"vae": vae, "lstm": LSTMBaseline(max_length=7, num_notes=88, length_model=lm(), **SIZES)}


@pytest.fixture(scope="module")
def built():
    tf.random.set_seed(0)
    return models()


def batch():
    x = tf.constant((np.random.default_rng(1).random((3, 6, 88)) < 0.2).astype(np.float32))
    return x, tf.constant([6, 4, 1])


@pytest.mark.parametrize("kind", ["vae", "lstm"])
def test_same_members_and_structures(built, kind):
    model = built[kind]
    assert isinstance(model, SequenceModel)
    x, lengths = batch()
    loss = model.loss_terms(x, lengths, kl_weight=0.5, num_samples=2, seed=3)
    nll = model.nll_terms(x, lengths, num_samples=4, seed=3, chunk_size=2)
    assert set(loss) == {"loss", "kl"} and set(nll) == {"nll", "reconstruction", "kl"}
    for value in list(loss.values()) + list(nll.values()):
        assert value.shape == (3,) and value.dtype == tf.float32
        assert np.all(np.isfinite(value.numpy()))
    # nll = reconstruction + KL-ish terms - log p(T) >= -log p(T) for a discrete x
    assert np.all(nll["reconstruction"].numpy() > 0)
    sampled, sampled_lengths = model.sample(2, lengths=3, seed=5)
    assert sampled.shape[:2] == (2, 3) and sampled_lengths.numpy().tolist() == [3, 3]


def test_the_baseline_is_exact(built):
    model = built["lstm"]
    x, lengths = batch()
    assert model.exact_likelihood
    log_px_t = tf.reduce_sum(model.log_prob_steps(x, lengths), axis=1).numpy()  # independent sum
    terms = model.nll_terms(x, lengths, num_samples=50, seed=0)
    np.testing.assert_allclose(terms["reconstruction"].numpy(), -log_px_t, rtol=1e-6)
    np.testing.assert_allclose(terms["nll"].numpy(),
                               -log_px_t - model.length_model.log_prob(lengths).numpy(), rtol=1e-6)
    np.testing.assert_array_equal(terms["kl"].numpy(), 0.0)
    # num_samples and seed do not apply
    np.testing.assert_array_equal(model.nll_terms(x, lengths, num_samples=1, seed=9)["nll"].numpy(),
                                  terms["nll"].numpy())
    np.testing.assert_allclose(model.loss_terms(x, lengths, kl_weight=0.3)["loss"].numpy(), terms["nll"].numpy(),
                               rtol=1e-6)


def test_the_vae_terms_are_its_elbo_and_importance_sampled_nll(built):
    model = built["vae"]
    x, lengths = batch()
    assert not model.exact_likelihood
    full = model.nll(x, lengths, num_samples=4, seed=7, chunk_size=2)
    terms = model.nll_terms(x, lengths, num_samples=4, seed=7, chunk_size=2)
    np.testing.assert_array_equal(terms["nll"].numpy(), full["nll"].numpy())
    np.testing.assert_array_equal(terms["reconstruction"].numpy(), -full["reconstruction"].numpy())
    np.testing.assert_array_equal(terms["kl"].numpy(), full["kl"].numpy())
    # the KL weight scales only the KL: loss(1) - loss(0) = kl on the same samples
    at_one = model.loss_terms(x, lengths, kl_weight=1.0, num_samples=2, seed=3)
    at_zero = model.loss_terms(x, lengths, kl_weight=0.0, num_samples=2, seed=3)
    np.testing.assert_allclose(at_one["loss"].numpy() - at_zero["loss"].numpy(), at_one["kl"].numpy(),
                               rtol=1e-5, atol=1e-4)
    elbo = model.elbo(x, lengths, num_samples=2, seed=3)["elbo"].numpy()
    np.testing.assert_allclose(at_one["loss"].numpy(), -elbo, rtol=1e-6)
