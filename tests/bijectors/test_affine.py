"""Affine scalar map: round trips, log-dets, parameterisation."""

import numpy as np
import pytest
import tensorflow as tf

from tf_latentflow.bijectors import Affine, scalar_map_class, NLSq


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_round_trip_and_log_det(dtype):
    rng = np.random.default_rng(0)
    # Extreme parameters in float64; well-conditioned ones in float32, where a
    # tiny scale under a large shift already loses x in the rounding of y.
    limit = 10.0 if dtype == np.float64 else 3.0
    raw = rng.uniform(-limit, limit, size=(1000, 2)).astype(dtype)
    x = tf.constant(rng.uniform(-1e3, 1e3, size=1000).astype(dtype))
    bij = Affine.from_unconstrained(raw)
    with tf.GradientTape() as tape:
        tape.watch(x)
        y = bij.forward(x)
    np.testing.assert_allclose(y.numpy(), raw[:, 0] + np.exp(raw[:, 1].astype(np.float64)) * x.numpy(),
                               rtol=1e-5)
    x_back = bij.inverse(tf.identity(y)).numpy()
    rel = np.abs(x_back - x.numpy()) / np.maximum(1.0, np.abs(x.numpy()))
    assert rel.max() < (1e-4 if dtype == np.float32 else 1e-10)
    np.testing.assert_allclose(bij.forward_log_det_jacobian(x, event_ndims=0).numpy(),
                               np.log(tape.gradient(y, x).numpy()), rtol=1e-4, atol=1e-4)
    np.testing.assert_allclose(bij.inverse_log_det_jacobian(tf.identity(y), event_ndims=0).numpy(),
                               -raw[:, 1], rtol=1e-6)


def test_from_unconstrained_shape_check():
    with pytest.raises(ValueError, match="2 entries"):
        Affine.from_unconstrained(np.zeros((3, 5), np.float32))


def test_scalar_map_registry():
    assert scalar_map_class("nlsq") is NLSq and scalar_map_class("affine") is Affine
    assert (NLSq.num_unconstrained_params, Affine.num_unconstrained_params) == (5, 2)
    with pytest.raises(ValueError, match="unknown scalar map 'spline'"):
        scalar_map_class("spline")


def test_zero_raw_parameters_give_the_identity_for_both_maps():
    x = np.linspace(-3, 3, 7).astype(np.float32)
    for name in ("nlsq", "affine"):
        cls = scalar_map_class(name)
        bij = cls.from_unconstrained(np.zeros((7, cls.num_unconstrained_params), np.float32))
        np.testing.assert_allclose(bij.forward(x).numpy(), x, atol=1e-7)
