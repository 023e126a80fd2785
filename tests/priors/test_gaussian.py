"""StandardNormalPrior and its helpers: the masked N(0, I) density, sampling, dtypes, config."""

import keras
import numpy as np
import pytest
import scipy.stats
import tensorflow as tf

from tf_latentflow.priors.gaussian import StandardNormalPrior, standard_normal_log_prob, step_mask

H = 4
LENGTHS = np.array([5, 2, 0, 3], np.int32)  # full, padded, empty, padded; T = 5


def numpy_log_prob(z, lengths):
    """sum_h log N(z_th; 0, 1) at t < T, 0 at padding (scipy's normal density)."""
    valid = np.arange(z.shape[1])[None, :] < np.asarray(lengths)[:, None]
    return np.where(valid, scipy.stats.norm.logpdf(z.astype(np.float64)).sum(-1), 0.0)


def test_step_mask_marks_the_valid_steps():
    mask = step_mask(LENGTHS, 6)
    assert mask.dtype == tf.float32 and mask.shape == (4, 6)
    np.testing.assert_array_equal(mask.numpy(), np.arange(6)[None, :] < LENGTHS[:, None])
    assert step_mask(LENGTHS, 6, tf.bool).dtype == tf.bool


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_standard_normal_log_prob_sums_the_last_axis(dtype):
    eps = np.random.default_rng(0).normal(scale=2.0, size=(3, 5, 7)).astype(dtype)
    got = standard_normal_log_prob(tf.constant(eps))
    assert got.dtype == dtype and got.shape == (3, 5)
    np.testing.assert_allclose(got.numpy(), scipy.stats.norm.logpdf(eps.astype(np.float64)).sum(-1),
                               rtol=1e-6 if dtype == np.float32 else 1e-12)


def test_log_prob_is_the_masked_standard_normal_density():
    prior = StandardNormalPrior(latent_size=H)
    z = np.random.default_rng(1).normal(scale=1.5, size=(4, 5, H)).astype(np.float32)
    lp = prior.log_prob(z, LENGTHS)
    assert lp.dtype == tf.float32 and lp.shape == (4, 5)
    np.testing.assert_allclose(lp.numpy(), numpy_log_prob(z, LENGTHS), rtol=1e-6, atol=1e-6)
    np.testing.assert_array_equal(lp.numpy()[1, 2:], 0.0)
    np.testing.assert_array_equal(lp.numpy()[2], 0.0)
    np.testing.assert_array_equal(prior(z, LENGTHS).numpy(), lp.numpy())  # call = log_prob


def test_log_prob_gradient_is_minus_z_at_valid_steps_and_zero_at_padding():
    prior = StandardNormalPrior(latent_size=H)
    z = tf.constant(np.random.default_rng(2).normal(size=(4, 5, H)).astype(np.float32))
    with tf.GradientTape() as tape:
        tape.watch(z)
        total = tf.reduce_sum(prior.log_prob(z, LENGTHS))
    valid = (np.arange(5)[None, :] < LENGTHS[:, None])[..., None]
    np.testing.assert_allclose(tape.gradient(total, z).numpy(), np.where(valid, -z.numpy(), 0.0),
                               rtol=1e-6, atol=1e-6)


def test_padding_values_never_reach_the_density():
    prior = StandardNormalPrior(latent_size=H)
    z = np.random.default_rng(3).normal(size=(4, 5, H)).astype(np.float32)
    expected = prior.log_prob(z, LENGTHS).numpy()
    garbage = z.copy()
    garbage[1, 2:] = np.nan
    garbage[3, 3:] = np.inf
    np.testing.assert_array_equal(prior.log_prob(garbage, LENGTHS).numpy(), expected)


def test_sample_is_standard_normal_at_valid_steps_and_zero_at_padding():
    prior = StandardNormalPrior(latent_size=H)
    z = prior.sample(LENGTHS, seed=4)
    assert z.dtype == tf.float32 and z.shape == (4, 5, H)
    valid = np.arange(5)[None, :] < LENGTHS[:, None]
    np.testing.assert_array_equal(z.numpy()[~valid], 0.0)
    assert np.all(z.numpy()[valid] != 0.0)
    assert prior.sample(LENGTHS, seed=4, max_steps=7).shape == (4, 7, H)
    # the moments of a large sample: N(0, 1) in every coordinate, uncorrelated
    many = prior.sample(np.array([4000], np.int32), seed=5).numpy().reshape(-1, H)
    assert np.all(np.abs(many.mean(0)) < 0.06)  # 4000 draws: standard error 0.016
    np.testing.assert_allclose(np.cov(many.T), np.eye(H), atol=0.08)
    assert scipy.stats.kstest(many.ravel(), "norm").pvalue > 1e-4


def test_sampling_is_reproducible_per_seed():
    prior = StandardNormalPrior(latent_size=H)
    a = prior.sample(LENGTHS, seed=6).numpy()
    np.testing.assert_array_equal(prior.sample(LENGTHS, seed=6).numpy(), a)
    np.testing.assert_array_equal(prior.sample(LENGTHS, seed=tf.constant([6, 0])).numpy(), a)
    assert not np.allclose(prior.sample(LENGTHS, seed=7).numpy(), a)
    assert not np.allclose(prior.sample(LENGTHS).numpy(), prior.sample(LENGTHS).numpy())


def test_graph_mode_equals_eager():
    prior = StandardNormalPrior(latent_size=H)
    z = np.random.default_rng(8).normal(size=(4, 5, H)).astype(np.float32)
    log_prob = tf.function(prior.log_prob, input_signature=[
        tf.TensorSpec([None, None, H]), tf.TensorSpec([None], tf.int32)])
    np.testing.assert_allclose(log_prob(z, LENGTHS).numpy(), prior.log_prob(z, LENGTHS).numpy(),
                               rtol=1e-6)
    sample = tf.function(lambda n, s: prior.sample(n, seed=s), input_signature=[
        tf.TensorSpec([None], tf.int32), tf.TensorSpec([2], tf.int64)])
    np.testing.assert_array_equal(sample(LENGTHS, tf.constant([9, 0], tf.int64)).numpy(),
                                  prior.sample(LENGTHS, seed=9).numpy())


def test_mixed_precision_keeps_float32_latents():
    prior = StandardNormalPrior(latent_size=H, dtype="mixed_float16")
    z = np.random.default_rng(10).normal(scale=3.0, size=(4, 5, H)).astype(np.float32)
    lp = prior(z, LENGTHS)  # through Keras's __call__, which would autocast to float16
    assert lp.dtype == tf.float32
    np.testing.assert_allclose(lp.numpy(), numpy_log_prob(z, LENGTHS), rtol=1e-6, atol=1e-6)
    assert prior.sample(LENGTHS, seed=0).dtype == tf.float32


def test_config_round_trip():
    prior = StandardNormalPrior(latent_size=7, name="base")
    clone = keras.saving.deserialize_keras_object(keras.saving.serialize_keras_object(prior))
    assert type(clone) is StandardNormalPrior
    assert (clone.latent_size, clone.name) == (7, "base")
    np.testing.assert_array_equal(clone.sample(LENGTHS, seed=1).numpy(),
                                  prior.sample(LENGTHS, seed=1).numpy())
