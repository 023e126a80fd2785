"""NLSq: formula, analytic inverse, log-dets, validation and use inside TFP."""

import math

import numpy as np
import pytest
import scipy.optimize
import scipy.stats
import tensorflow as tf
import tensorflow_probability as tfp
from tensorflow.python.ops.distributions import bijector_test_util

from tf_latentflow.bijectors import NLSQ_C_BOUND, NLSq, nlsq_params_from_unconstrained

tfb = tfp.bijectors
tfd = tfp.distributions


def numpy_nlsq(x, a, b, c, d, g):
    return a + b * x + c / (1.0 + (d * x + g) ** 2)


def numpy_slope(x, a, b, c, d, g):
    u = d * x + g
    return b - 2.0 * c * d * u / (1.0 + u ** 2) ** 2


def random_raw(rng, shape, low, high, dtype):
    return rng.uniform(low, high, size=shape + (5,)).astype(dtype)


def numpy_params(raw, alpha=0.95):
    a, log_b, c_raw, log_d, g = np.moveaxis(raw.astype(np.float64), -1, 0)
    b, d = np.exp(log_b), np.exp(log_d)
    return a, b, NLSQ_C_BOUND * alpha * (b / d) * np.tanh(c_raw), d, g


def test_bound_constant_is_the_slope_bound():
    # max_u u / (1 + u^2)^2 = 3 sqrt(3) / 16 at u = 1/sqrt(3); the slope is positive iff
    # |c| d / b < 1 / (2 * 3 sqrt(3) / 16).
    u = np.linspace(-5, 5, 200001)
    peak = np.max(u / (1 + u ** 2) ** 2)
    assert NLSQ_C_BOUND == pytest.approx(1.0 / (2.0 * peak), rel=1e-8)
    assert NLSQ_C_BOUND == pytest.approx(8 * math.sqrt(3) / 9)


def test_from_unconstrained_matches_the_documented_mapping():
    rng = np.random.default_rng(0)
    raw = random_raw(rng, (4, 3), -3, 3, np.float64)
    params = nlsq_params_from_unconstrained(raw, alpha=0.9)
    for name, expected in zip("abcdg", numpy_params(raw, alpha=0.9)):
        np.testing.assert_allclose(params[name].numpy(), expected, rtol=1e-12)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_forward_matches_numpy_formula(dtype):
    rng = np.random.default_rng(1)
    raw = random_raw(rng, (1000,), -3, 3, dtype)
    x = rng.normal(scale=3.0, size=1000).astype(dtype)
    y = NLSq.from_unconstrained(raw).forward(x)
    assert y.dtype == dtype
    np.testing.assert_allclose(y.numpy(), numpy_nlsq(x.astype(np.float64), *numpy_params(raw)),
                               rtol=1e-5 if dtype == np.float32 else 1e-12, atol=1e-5)


def test_round_trip_float64_extreme_parameters_and_inputs():
    # raw parameters up to +-10 (b, d in [e^-10, e^10]) and inputs up to +-1e3.
    rng = np.random.default_rng(2)
    raw = random_raw(rng, (50000,), -10, 10, np.float64)
    x = rng.uniform(-1e3, 1e3, size=50000)
    bij = NLSq.from_unconstrained(raw)
    y = bij.forward(x)
    x_back = bij.inverse(tf.identity(y)).numpy()  # identity defeats the bijector cache
    rel = np.abs(x_back - x) / np.maximum(1.0, np.abs(x))
    assert np.all(np.isfinite(x_back))
    assert rel.max() < 1e-8, rel.max()
    y_back = bij.forward(tf.identity(bij.inverse(tf.identity(y)))).numpy()
    np.testing.assert_allclose(y_back, y.numpy(), rtol=1e-10, atol=1e-10)


def test_round_trip_float32_well_conditioned():
    rng = np.random.default_rng(3)
    raw = random_raw(rng, (50000,), -3, 3, np.float32)
    x = rng.uniform(-100, 100, size=50000).astype(np.float32)
    bij = NLSq.from_unconstrained(raw)
    x_back = bij.inverse(tf.identity(bij.forward(x))).numpy()
    assert x_back.dtype == np.float32
    rel = np.abs(x_back - x) / np.maximum(1.0, np.abs(x))
    assert rel.max() < 1e-4, rel.max()


def test_round_trip_float32_extremes_within_the_maps_own_conditioning():
    # At extreme parameters float32 rounding of y alone moves x by up to
    # eps32 * |terms of y| / f'(x); the solver must add nothing beyond that.
    rng = np.random.default_rng(4)
    raw = random_raw(rng, (50000,), -10, 10, np.float32)
    x = rng.uniform(-1e3, 1e3, size=50000).astype(np.float32)
    bij = NLSq.from_unconstrained(raw)
    y = bij.forward(x)
    x_back = bij.inverse(tf.identity(y)).numpy()
    assert np.all(np.isfinite(x_back)) and np.all(np.isfinite(y.numpy()))
    a, b, c, d, g = numpy_params(raw)
    x64 = x.astype(np.float64)
    scale = np.abs(a) + np.abs(b * x64) + np.abs(c) + np.abs(y.numpy())
    allowed = 1e-4 * np.maximum(1.0, np.abs(x64)) + 8 * np.finfo(np.float32).eps * scale / numpy_slope(
        x64, a, b, c, d, g)
    err = np.abs(x_back - x64)
    assert np.all(err <= allowed), np.max(err / allowed)


def test_inverse_runs_in_float64_for_float32_inputs():
    # A flat, badly scaled map: the float32 cubic would lose most digits here.
    bij = NLSq(a=np.float32(3.0), b=np.float32(1e-3), c=np.float32(1e-3 * 1.4 / 50.0),
               d=np.float32(50.0), g=np.float32(-20.0))
    x = np.linspace(-2.0, 2.0, 2001).astype(np.float32)
    y = bij.forward(x)
    x_back = bij.inverse(tf.identity(y)).numpy()
    # Reference: each float32 y solved in float64 by bracketing, with the float32
    # parameters the bijector actually holds.
    params = [np.float64(np.float32(p)) for p in (3.0, 1e-3, 1e-3 * 1.4 / 50.0, 50.0, -20.0)]
    ref = np.array([scipy.optimize.brentq(lambda t, yy=yy: numpy_nlsq(t, *params) - yy, -10, 10,
                                          xtol=1e-15) for yy in y.numpy().astype(np.float64)])
    # Only the final cast to float32 may separate the two.
    np.testing.assert_allclose(x_back, ref, rtol=2 * np.finfo(np.float32).eps, atol=1e-7)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_log_det_jacobians_match_autodiff(dtype):
    rng = np.random.default_rng(5)
    raw = random_raw(rng, (2000,), -4, 4, dtype)
    bij = NLSq.from_unconstrained(raw)
    x = tf.constant(rng.normal(scale=3.0, size=2000).astype(dtype))
    with tf.GradientTape() as tape:
        tape.watch(x)
        y = bij.forward(x)
    # Elementwise map: the Jacobian is diagonal, so its log-det per element is log dy/dx.
    autodiff = np.log(tape.gradient(y, x).numpy())
    tol = 2e-4 if dtype == np.float32 else 1e-10
    np.testing.assert_allclose(bij.forward_log_det_jacobian(x, event_ndims=0).numpy(), autodiff,
                               rtol=tol, atol=tol)

    y = tf.identity(y)
    with tf.GradientTape() as tape:
        tape.watch(y)
        x_back = bij.inverse(y)  # differentiates through the float64 cubic solver
    autodiff_inv = np.log(tape.gradient(x_back, y).numpy())
    np.testing.assert_allclose(bij.inverse_log_det_jacobian(y, event_ndims=0).numpy(), autodiff_inv,
                               rtol=tol, atol=tol)
    # fldj(x) == -ildj(forward(x)), with the cache defeated.
    np.testing.assert_allclose(
        bij.forward_log_det_jacobian(x, event_ndims=0).numpy(),
        -bij.inverse_log_det_jacobian(tf.identity(bij.forward(x)), event_ndims=0).numpy(),
        rtol=tol, atol=tol)


def test_event_ndims_sums_log_dets():
    rng = np.random.default_rng(6)
    bij = NLSq.from_unconstrained(random_raw(rng, (3, 4), -2, 2, np.float64))
    x = rng.normal(size=(3, 4))
    per_element = bij.forward_log_det_jacobian(x, event_ndims=0).numpy()
    np.testing.assert_allclose(bij.forward_log_det_jacobian(x, event_ndims=1).numpy(),
                               per_element.sum(-1), rtol=1e-12)


def test_validate_args_rejects_invalid_parameters():
    with pytest.raises(tf.errors.InvalidArgumentError, match="`b` must be positive"):
        NLSq(0.0, -1.0, 0.0, 1.0, 0.0, validate_args=True)
    with pytest.raises(tf.errors.InvalidArgumentError, match="`d` must be positive"):
        NLSq(0.0, 1.0, 0.0, 0.0, 0.0, validate_args=True)
    with pytest.raises(tf.errors.InvalidArgumentError, match="invertible"):
        NLSq(0.0, 1.0, NLSQ_C_BOUND * 2.0 / 0.5 * 1.001, 0.5, 0.0, validate_args=True)
    with pytest.raises(tf.errors.InvalidArgumentError, match="invertible"):
        NLSq(0.0, 1.0, -NLSQ_C_BOUND * 1.0001, 1.0, 0.0, validate_args=True)
    # Just inside the bound is accepted, and the map is increasing there.
    bij = NLSq(0.0, 1.0, NLSQ_C_BOUND * 0.999, 1.0, 0.0, validate_args=True)
    x = np.linspace(-3, 3, 10001)
    assert np.all(np.diff(bij.forward(x).numpy()) > 0)
    # Without validate_args the same invalid parameters are accepted silently (TFP convention).
    NLSq(0.0, -1.0, 0.0, 1.0, 0.0)


def test_from_unconstrained_is_always_valid_and_checks_its_input():
    rng = np.random.default_rng(7)
    raw = random_raw(rng, (20000,), -10, 10, np.float32)
    raw[:100, 2] = 1e4  # tanh saturates at 1: c reaches alpha * bound
    bij = NLSq.from_unconstrained(raw, validate_args=True)  # raises if any parameter is invalid
    x = tf.constant(rng.normal(size=20000).astype(np.float32))
    assert np.all(np.isfinite(bij.forward_log_det_jacobian(x, event_ndims=0).numpy()))
    with pytest.raises(ValueError, match="5 entries"):
        NLSq.from_unconstrained(np.zeros((3, 4), np.float32))
    with pytest.raises(ValueError, match="alpha"):
        NLSq.from_unconstrained(np.zeros((3, 5), np.float32), alpha=1.0)


def test_broadcasting_batch_shapes():
    rng = np.random.default_rng(8)
    bij = NLSq.from_unconstrained(random_raw(rng, (3, 1), -2, 2, np.float32))
    assert bij.experimental_batch_shape() == tf.TensorShape([3, 1])
    x = rng.normal(size=(1, 4)).astype(np.float32)
    y = bij.forward(x)
    assert y.shape == (3, 4)
    np.testing.assert_allclose(bij.inverse(tf.identity(y)).numpy(), np.broadcast_to(x, (3, 4)),
                               atol=1e-5)
    assert bij.inverse_log_det_jacobian(tf.identity(y), event_ndims=1).shape == (3,)


@pytest.mark.parametrize("jit_compile", [False, True])
def test_tf_function_and_xla_agree_with_eager(jit_compile):
    rng = np.random.default_rng(9)
    raw = random_raw(rng, (64,), -5, 5, np.float32)
    x = rng.normal(scale=5.0, size=64).astype(np.float32)

    @tf.function(jit_compile=jit_compile)
    def run(raw, x):
        bij = NLSq.from_unconstrained(raw)
        y = bij.forward(x)
        return y, bij.inverse(tf.identity(y)), bij.inverse_log_det_jacobian(y, event_ndims=0)

    y, x_back, ildj = run(raw, x)
    eager = NLSq.from_unconstrained(raw)
    np.testing.assert_allclose(y.numpy(), eager.forward(x).numpy(), rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(x_back.numpy(), x, rtol=1e-4, atol=1e-4)
    np.testing.assert_allclose(ildj.numpy(), eager.inverse_log_det_jacobian(
        eager.forward(x), event_ndims=0).numpy(), rtol=1e-4, atol=1e-4)


def test_tfp_bijector_test_util_checks_in_graph_mode():
    with tf.Graph().as_default(), tf.compat.v1.Session() as sess:
        bij = NLSq(a=0.3, b=1.2, c=0.9, d=0.8, g=-0.4)  # |c| d / b = 0.6 < 1.54
        bijector_test_util.assert_scalar_congruency(bij, lower_x=-4.0, upper_x=4.0, rtol=0.02,
                                                    sess=sess)
        x = np.linspace(-10, 10, 101).astype(np.float32)
        y = np.linspace(-10, 10, 101).astype(np.float32)
        bijector_test_util.assert_bijective_and_finite(bij, x, y, event_ndims=0, rtol=1e-4,
                                                       atol=1e-4, sess=sess)


def test_transformed_distribution_log_prob_matches_scipy_reference():
    a, b, c, d, g = 0.5, 0.8, 0.9, 1.3, 0.2  # |c| d / b = 1.46, close to the bound
    assert abs(c) * d / b < NLSQ_C_BOUND
    dist = tfd.TransformedDistribution(tfd.Normal(np.float64(0.0), np.float64(1.0)),
                                       NLSq(*np.float64([a, b, c, d, g])))
    ys = np.linspace(-4, 4, 41)
    # Reference: invert by bracketing root-finding, then change of variables.
    xs = np.array([scipy.optimize.brentq(lambda t, yy=yy: numpy_nlsq(t, a, b, c, d, g) - yy,
                                         -50, 50, xtol=1e-14) for yy in ys])
    ref = scipy.stats.norm.logpdf(xs) - np.log(numpy_slope(xs, a, b, c, d, g))
    np.testing.assert_allclose(dist.log_prob(ys).numpy(), ref, rtol=1e-9, atol=1e-9)
    # The density integrates to one.
    grid = np.linspace(-30, 30, 200001)
    assert np.trapezoid(np.exp(dist.log_prob(grid).numpy()), grid) == pytest.approx(1.0, abs=1e-6)


def test_chain_and_invert():
    bij = NLSq(a=0.1, b=0.7, c=-0.5, d=1.5, g=0.3)
    chain = tfb.Chain([tfb.Shift(2.0), bij, tfb.Scale(3.0)])
    x = np.linspace(-3, 3, 13).astype(np.float32)
    y = chain.forward(x)
    np.testing.assert_allclose(y.numpy(), bij.forward(3.0 * x).numpy() + 2.0, rtol=1e-6)
    np.testing.assert_allclose(chain.inverse(tf.identity(y)).numpy(), x, atol=1e-5)
    inv = tfb.Invert(bij)
    np.testing.assert_allclose(inv.forward(x).numpy(), bij.inverse(x).numpy(), rtol=1e-6)
    np.testing.assert_allclose(inv.forward_log_det_jacobian(x, event_ndims=0).numpy(),
                               bij.inverse_log_det_jacobian(x, event_ndims=0).numpy(), rtol=1e-5)
    samples = tfd.TransformedDistribution(tfd.Normal(0.0, 1.0), inv).sample(5, seed=1)
    assert samples.shape == (5,) and np.all(np.isfinite(samples.numpy()))


def test_damped_parameterisation_is_the_reference_formula():
    """TextFlow flows.py: log b = 0.4 o1, c = tanh(0.3 o2) exp(log(8 sqrt3/9 - 0.05) + log b - log d),
    log d = 0.4 o3."""
    from tf_latentflow.bijectors.scalar_maps import scalar_map_class

    rng = np.random.default_rng(11)
    raw = random_raw(rng, (6, 4), -4, 4, np.float64)
    damped = scalar_map_class("nlsq-damping")
    assert damped.num_unconstrained_params == 5
    bij = damped.from_unconstrained(raw)
    a, o1, o2, o3, g = np.moveaxis(raw, -1, 0)
    log_b, log_d = 0.4 * o1, 0.4 * o3
    expected = dict(a=a, b=np.exp(log_b), d=np.exp(log_d), g=g,
                    c=np.tanh(0.3 * o2) * np.exp(math.log(8 * math.sqrt(3) / 9 - 0.05) + log_b - log_d))
    for name, value in expected.items():
        np.testing.assert_allclose(getattr(bij, name).numpy(), value, rtol=1e-12)


def test_nlsq_damping_is_invertible_for_any_raw_input():
    from tf_latentflow.bijectors.scalar_maps import scalar_map_class

    rng = np.random.default_rng(12)
    raw = random_raw(rng, (20000,), -10, 10, np.float64)
    raw[:200, 2] = 1e4  # c at its largest: 1 - 0.05 / bound of the bound
    bij = scalar_map_class("nlsq-damping").from_unconstrained(raw, validate_args=True)
    x = rng.uniform(-100, 100, size=20000)
    a, b, c, d, g = (getattr(bij, n).numpy() for n in "abcdg")
    slope = numpy_slope(x, a, b, c, d, g)
    assert np.all(slope > 0)
    x_back = bij.inverse(tf.identity(bij.forward(x))).numpy()
    rel = np.abs(x_back - x) / np.maximum(1.0, np.abs(x))
    assert rel.max() < 1e-8, rel.max()
    with pytest.raises(ValueError, match="damping"):
        nlsq_params_from_unconstrained(raw, damping=(0.4, 0.0, 0.4))
