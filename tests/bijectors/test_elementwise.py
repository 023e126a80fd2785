"""ContextElementwise: per-dimension scalar maps whose parameters depend on the context only."""

import numpy as np
import pytest
import tensorflow as tf

from flow_testing import log_det_from_autodiff, randomize_weights
from tf_latentflow.bijectors import NLSQ_C_BOUND, ContextElementwise, scalar_map_class
from tf_latentflow.layers import ContextMLP

D, C, B = 4, 3, 6


def make_elementwise(scalar_map, seed=0, dtype=np.float64, policy=None):
    """A ContextElementwise over a small randomised ContextMLP; the context is its input."""
    net = ContextMLP(scalar_map_class(scalar_map).num_unconstrained_params, num_outputs=D,
                     hidden_units=(16,), dtype=policy)
    net.build((None, C))
    randomize_weights(net, seed=seed, scale=0.5)
    rng = np.random.default_rng(seed + 1)
    x = rng.normal(size=(B, D)).astype(dtype)
    context = tf.constant(rng.normal(size=(B, C)).astype(dtype))
    return ContextElementwise(net, scalar_map=scalar_map), x, context


def numpy_density_map(scalar_map, raw, z):
    """eps = g(z; theta(h)) from the module docstring, in NumPy float64: raw conditioner
    outputs [B, D, P] -> 10 tanh(raw / 10) -> the scalar map's documented parameters."""
    raw = 10.0 * np.tanh(np.asarray(raw, np.float64) / 10.0)
    z = np.asarray(z, np.float64)
    if scalar_map == "affine":
        shift, log_scale = np.moveaxis(raw, -1, 0)
        return shift + np.exp(log_scale) * z, log_scale
    a, log_b, c_raw, log_d, g = np.moveaxis(raw, -1, 0)
    b, d = np.exp(log_b), np.exp(log_d)
    c = NLSQ_C_BOUND * 0.95 * (b / d) * np.tanh(c_raw)
    u = d * z + g
    return a + b * z + c / (1.0 + u ** 2), np.log(b - 2.0 * c * d * u / (1.0 + u ** 2) ** 2)


@pytest.mark.parametrize("scalar_map", ["nlsq", "affine"])
def test_density_direction_is_the_documented_scalar_map_of_the_context(scalar_map):
    bij, z, context = make_elementwise(scalar_map)
    raw = bij.conditioner(context).numpy()
    expected, log_slopes = numpy_density_map(scalar_map, raw, z)
    eps, log_det = bij.inverse_and_log_det(z, context=context)
    np.testing.assert_allclose(eps.numpy(), expected, rtol=1e-6, atol=1e-6)
    np.testing.assert_allclose(log_det.numpy(), log_slopes.sum(-1), rtol=1e-6, atol=1e-6)
    np.testing.assert_allclose(bij.inverse(z, context=context).numpy(), expected, rtol=1e-6,
                               atol=1e-6)


def test_the_conditioner_sees_the_context_only():
    seen = []
    raw = np.random.default_rng(2).normal(size=(B, D, 5))

    def conditioner(inputs):
        seen.append(inputs)
        return tf.constant(raw, inputs.dtype)

    bij = ContextElementwise(conditioner)
    z = np.random.default_rng(3).normal(size=(B, D))
    context = tf.constant(np.random.default_rng(4).normal(size=(B, C)))
    eps = bij.inverse(z, context=context)
    assert len(seen) == 1 and seen[0] is context
    np.testing.assert_allclose(eps.numpy(), numpy_density_map("nlsq", raw, z)[0], rtol=1e-10)
    with pytest.raises(ValueError, match="needs a context"):
        bij.inverse(z)
    with pytest.raises(ValueError, match="needs a context"):
        bij.forward(z)


@pytest.mark.parametrize("scalar_map", ["nlsq", "affine", "nlsq-damping"])
@pytest.mark.parametrize("dtype, tol", [(np.float64, 1e-9), (np.float32, 1e-4)])
def test_round_trips_both_ways(scalar_map, dtype, tol):
    bij, x, context = make_elementwise(scalar_map, seed=5, dtype=dtype)
    x = 3.0 * x  # well into the non-linear part of the maps
    z = bij.forward(x, context=context)
    assert z.dtype == dtype and not np.allclose(z.numpy(), x)
    # tf.identity: otherwise the bijector cache answers the inverse without computing it
    np.testing.assert_allclose(bij.inverse(tf.identity(z), context=context).numpy(), x,
                               rtol=tol, atol=tol)
    eps = bij.inverse(x, context=context)
    np.testing.assert_allclose(bij.forward(tf.identity(eps), context=context).numpy(), x,
                               rtol=tol, atol=tol)


@pytest.mark.parametrize("scalar_map", ["nlsq", "affine"])
def test_log_dets_match_autodiff_and_the_jacobian_is_diagonal(scalar_map):
    bij, x, context = make_elementwise(scalar_map, seed=6)
    x = 2.0 * x
    z, fldj = bij.forward_and_log_det(x, context=context)
    logdet, jac = log_det_from_autodiff(lambda e: bij.forward(e, context=context), x)
    np.testing.assert_allclose(fldj.numpy(), logdet, rtol=1e-8, atol=1e-8)
    assert np.all(np.abs(logdet) > 1e-3)  # not a trivial identity
    # dimensions are independent given the context: only the diagonal is non-zero
    diagonal = np.einsum("bii->bi", jac)
    np.testing.assert_array_equal(jac - diagonal[:, :, None] * np.eye(D), 0.0)
    assert np.all(diagonal > 0)  # increasing maps

    z = tf.identity(z)
    eps, ildj = bij.inverse_and_log_det(z, context=context)
    logdet_inv, _ = log_det_from_autodiff(lambda y: bij.inverse(y, context=context), z)
    np.testing.assert_allclose(ildj.numpy(), logdet_inv, rtol=1e-8, atol=1e-8)
    np.testing.assert_allclose(ildj.numpy(), -fldj.numpy(), rtol=1e-8, atol=1e-8)
    # TFP's public log-det methods (the forward one derived from the inverse's) agree
    np.testing.assert_allclose(
        bij.forward_log_det_jacobian(tf.identity(eps), event_ndims=1, context=context).numpy(),
        logdet, rtol=1e-8, atol=1e-8)
    np.testing.assert_allclose(
        bij.inverse_log_det_jacobian(tf.identity(z), event_ndims=1, context=context).numpy(),
        logdet_inv, rtol=1e-8, atol=1e-8)


def test_the_context_moves_the_map_and_rows_are_independent():
    bij, x, context = make_elementwise("nlsq", seed=7)
    z = bij.forward(x, context=context).numpy()
    other = context.numpy().copy()
    other[2] += 1.0
    moved = bij.forward(x, context=other).numpy()
    np.testing.assert_array_equal(np.delete(moved, 2, axis=0), np.delete(z, 2, axis=0))
    assert np.all(moved[2] != z[2])


def test_extra_batch_axes_equal_the_flattened_batch():
    bij, x, context = make_elementwise("nlsq", seed=8)
    x3, c3 = x.reshape(2, 3, D), tf.reshape(context, (2, 3, C))
    z3, fldj3 = bij.forward_and_log_det(x3, context=c3)
    z, fldj = bij.forward_and_log_det(x, context=context)
    assert z3.shape == (2, 3, D) and fldj3.shape == (2, 3)
    np.testing.assert_allclose(z3.numpy().reshape(B, D), z.numpy(), rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(fldj3.numpy().reshape(B), fldj.numpy(), rtol=1e-12, atol=1e-12)


def test_extreme_conditioner_outputs_stay_finite_and_invertible():
    # Raw outputs of +-1e4 would overflow exp(); the soft bound caps them at +-10.
    raw = np.random.default_rng(9).choice([-1e4, 1e4], size=(B, D, 5))
    bij = ContextElementwise(lambda context: tf.constant(raw, context.dtype))
    x = np.random.default_rng(10).uniform(-50.0, 50.0, size=(B, D))
    context = tf.zeros((B, C), tf.float64)
    eps, ildj = bij.inverse_and_log_det(x, context=context)
    expected, log_slopes = numpy_density_map("nlsq", raw, x)
    assert np.all(np.isfinite(expected)) and np.all(np.isfinite(log_slopes))
    np.testing.assert_allclose(eps.numpy(), expected, rtol=1e-9)
    np.testing.assert_allclose(ildj.numpy(), log_slopes.sum(-1), rtol=1e-9)
    back = bij.forward(tf.identity(eps), context=context).numpy()
    np.testing.assert_allclose(back, x, rtol=1e-6, atol=1e-6)


def test_tf_function_matches_eager():
    bij, x, context = make_elementwise("nlsq", seed=11)
    signature = [tf.TensorSpec([None, D], tf.float64), tf.TensorSpec([None, C], tf.float64)]
    forward = tf.function(lambda x, c: bij.forward_and_log_det(x, context=c),
                          input_signature=signature)
    inverse = tf.function(lambda y, c: bij.inverse_and_log_det(y, context=c),
                          input_signature=signature)
    for got, want in zip(forward(x, context), bij.forward_and_log_det(x, context=context)):
        np.testing.assert_allclose(got.numpy(), want.numpy(), rtol=1e-12, atol=1e-12)
    for got, want in zip(inverse(x, context), bij.inverse_and_log_det(x, context=context)):
        np.testing.assert_allclose(got.numpy(), want.numpy(), rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("direction", ["forward", "inverse"])
def test_gradients_reach_every_conditioner_weight_and_the_context(direction):
    bij, x, context = make_elementwise("nlsq", seed=12, dtype=np.float32)
    fn = bij.forward_and_log_det if direction == "forward" else bij.inverse_and_log_det
    variables = bij.conditioner.trainable_variables
    with tf.GradientTape() as tape:
        tape.watch(context)
        y, log_det = fn(x, context=context)
        loss = tf.reduce_sum(tf.square(y)) + tf.reduce_sum(log_det)
    grads = tape.gradient(loss, variables + [context])
    for name, grad in zip([v.path for v in variables] + ["context"], grads):
        assert grad is not None and np.any(tf.convert_to_tensor(grad).numpy() != 0), name


def test_a_mixed_precision_conditioner_keeps_the_flow_in_float32():
    bij32, x, context = make_elementwise("nlsq", seed=13, dtype=np.float32)
    bij16, _, _ = make_elementwise("nlsq", seed=13, dtype=np.float32, policy="mixed_float16")
    assert bij16.conditioner.compute_dtype == "float16"
    assert bij16.conditioner(context).dtype == tf.float16
    for fn in ("forward_and_log_det", "inverse_and_log_det"):
        y16, ld16 = getattr(bij16, fn)(x, context=context)
        y32, ld32 = getattr(bij32, fn)(x, context=context)
        assert y16.dtype == tf.float32 and ld16.dtype == tf.float32
        np.testing.assert_allclose(y16.numpy(), y32.numpy(), rtol=2e-2, atol=2e-2)
        np.testing.assert_allclose(ld16.numpy(), ld32.numpy(), rtol=2e-2, atol=2e-2)


def test_properties_and_unknown_scalar_map():
    net = ContextMLP(2, num_outputs=D, hidden_units=(4,))
    bij = ContextElementwise(net, scalar_map="affine", name="ew")
    assert bij.conditioner is net and bij.scalar_map == "affine" and bij.name == "ew"
    assert bij.is_conditional and bij.forward_min_event_ndims == 1
    assert bij.parameters["scalar_map"] == "affine"
    with pytest.raises(ValueError, match="unknown scalar map"):
        ContextElementwise(net, scalar_map="spline")
