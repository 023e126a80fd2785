"""AutoregressiveFlow: one-pass density, serial sampling, log-dets, IAF as Invert."""

import numpy as np
import pytest
import tensorflow as tf
import tensorflow_probability as tfp

from flow_testing import log_det_from_autodiff, randomize_weights
from tf_latentflow.bijectors import AutoregressiveFlow, scalar_map_class
from tf_latentflow.layers import MADE

tfb = tfp.bijectors
tfd = tfp.distributions

D, C, B = 4, 3, 8


def make_af(scalar_map, with_context, order="natural", seed=0, dtype=np.float32):
    made = MADE(scalar_map_class(scalar_map).num_unconstrained_params, hidden_units=(16, 16),
                order=order)
    made.build((None, D), (None, C) if with_context else None)
    randomize_weights(made, seed=seed, scale=0.4)
    rng = np.random.default_rng(seed + 100)
    x = rng.normal(size=(B, D)).astype(dtype)
    context = tf.constant(rng.normal(size=(B, C)).astype(dtype)) if with_context else None
    return AutoregressiveFlow(made, scalar_map=scalar_map), x, context


CASES = [(m, c) for m in ("nlsq", "affine") for c in (False, True)]


@pytest.mark.parametrize("scalar_map,with_context", CASES)
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_round_trips(scalar_map, with_context, dtype):
    af, eps, context = make_af(scalar_map, with_context, dtype=dtype)
    z = af.forward(eps, context=context)
    tol = 1e-4 if dtype == np.float32 else 1e-9
    np.testing.assert_allclose(af.inverse(tf.identity(z), context=context).numpy(), eps,
                               rtol=tol, atol=tol)
    eps_again = af.inverse(tf.identity(eps), context=context)
    np.testing.assert_allclose(af.forward(tf.identity(eps_again), context=context).numpy(), eps,
                               rtol=tol, atol=tol)


@pytest.mark.parametrize("scalar_map,with_context", CASES)
def test_log_dets_match_autodiff_and_each_other(scalar_map, with_context):
    af, eps, context = make_af(scalar_map, with_context, dtype=np.float64)
    logdet, _ = log_det_from_autodiff(lambda e: af.forward(e, context=context), eps)
    z, fldj = af.forward_and_log_det(eps, context=context)
    np.testing.assert_allclose(fldj.numpy(), logdet, rtol=1e-8, atol=1e-8)
    np.testing.assert_allclose(
        af.forward_log_det_jacobian(eps, event_ndims=1, context=context).numpy(), logdet,
        rtol=1e-8, atol=1e-8)
    z = tf.identity(z)
    logdet_inv, jac = log_det_from_autodiff(lambda y: af.inverse(y, context=context), z)
    np.testing.assert_allclose(af.inverse_log_det_jacobian(z, event_ndims=1, context=context).numpy(),
                               logdet_inv, rtol=1e-8, atol=1e-8)
    np.testing.assert_allclose(fldj.numpy(), -logdet_inv, rtol=1e-8, atol=1e-8)
    # Density direction is lower triangular in the natural order: eps_i depends on z_<=i.
    assert np.all(jac[:, np.triu_indices(D, 1)[0], np.triu_indices(D, 1)[1]] == 0)


def test_reversed_order_gives_an_upper_triangular_jacobian():
    af, eps, context = make_af("nlsq", True, order="reversed")
    _, jac = log_det_from_autodiff(lambda y: af.inverse(y, context=context), eps)
    rows, cols = np.tril_indices(D, -1)
    assert np.all(jac[:, rows, cols] == 0)
    assert np.all(np.abs(jac[:, cols, rows]).sum(0) > 0)  # and the other side is not empty


def test_iaf_is_invert_of_af_and_samples_with_one_pass():
    af, eps, context = make_af("nlsq", True)
    iaf = tfb.Invert(af)
    np.testing.assert_allclose(iaf.forward(eps, context=context).numpy(),
                               af.inverse(eps, context=context).numpy(), rtol=1e-6)
    dist = tfd.TransformedDistribution(tfd.Sample(tfd.Normal(0.0, 1.0), D), iaf)
    z = dist.sample(B, seed=3, bijector_kwargs={"context": context})
    lp = dist.log_prob(tf.identity(z), bijector_kwargs={"context": context})
    eps_back = af.forward(tf.identity(z), context=context)
    manual = (tfd.Normal(0.0, 1.0).log_prob(eps_back).numpy().sum(-1)
              + af.forward_log_det_jacobian(tf.identity(z), event_ndims=1, context=context).numpy())
    np.testing.assert_allclose(lp.numpy(), manual, rtol=1e-4, atol=1e-4)


def test_serial_forward_under_xla_matches_eager():
    af, eps, context = make_af("nlsq", True)
    compiled = tf.function(lambda e, c: af.forward_and_log_det(e, context=c), jit_compile=True)
    z, fldj = compiled(eps, context)
    z_eager, fldj_eager = af.forward_and_log_det(eps, context=context)
    np.testing.assert_allclose(z.numpy(), z_eager.numpy(), rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(fldj.numpy(), fldj_eager.numpy(), rtol=1e-4, atol=1e-4)
