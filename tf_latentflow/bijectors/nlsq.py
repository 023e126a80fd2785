"""The non-linear squared (NLSq) scalar map of Ziegler & Rush (2019), section 4.2.

    y = f(x) = a + b*x + c / (1 + (d*x + g)**2)

With b > 0, d > 0 and |c| < (8*sqrt(3)/9) * b / d the map is strictly
increasing on the whole real line (paper eq. 7 and appendix C), so it is a
bijection R -> R. Its inverse is the unique real root of a cubic, solved here in
closed form in float64 (appendix C) and polished by one Newton step.
"""

import math

import tensorflow as tf
import tensorflow_probability as tfp
from tensorflow_probability.python.internal import dtype_util, parameter_properties, tensor_util

__all__ = ["NLSq", "NLSQ_C_BOUND", "REFERENCE_ALPHA", "REFERENCE_DAMPING",
           "nlsq_params_from_unconstrained"]

tfb = tfp.bijectors

# f'(x) = b - 2*c*d*u / (1 + u**2)**2 with u = d*x + g. The factor u / (1 + u**2)**2
# peaks at u = 1/sqrt(3) with value 3*sqrt(3)/16, so f' > 0 for every x iff
# |c| * d / b < 1 / (2 * 3*sqrt(3)/16) = 8*sqrt(3)/9 ~= 1.5396.
NLSQ_C_BOUND = 8.0 * math.sqrt(3.0) / 9.0


# The reference code's parameterisation (TextFlow flows.py, NLSq.get_pseudo_params): the raw
# outputs for log b, c and log d are damped by 0.4, 0.3 and 0.4, and |c| may come within
# 0.05 (in units of b / d) of the invertibility bound.
REFERENCE_ALPHA = 1.0 - 0.05 / NLSQ_C_BOUND
REFERENCE_DAMPING = (0.4, 0.3, 0.4)


def nlsq_params_from_unconstrained(raw, alpha=0.95, damping=(1.0, 1.0, 1.0)):
    """Maps raw network outputs to valid NLSq parameters.

    raw[..., 0:5] = (a, o_b, o_c, o_d, g), damping = (s_b, s_c, s_d) ->
        b = exp(s_b o_b), d = exp(s_d o_d),
        c = (8*sqrt(3)/9) * alpha * (b / d) * tanh(s_c o_c),
    so |c| <= alpha * (8*sqrt(3)/9) * b / d < bound for any real raw when
    0 < alpha < 1 (paper eq. 7, appendix C). damping (1, 1, 1) and alpha 0.95 are
    this project's first choice; (0.4, 0.3, 0.4) with alpha = 1 - 0.05 / bound are
    the reference code's (REFERENCE_DAMPING, REFERENCE_ALPHA, the "nlsq-damping" map).

    Args:
      raw: float tensor whose last axis has exactly 5 entries.
      alpha: float in (0, 1); how close to the invertibility bound c may get.
      damping: three positive factors applied to the raw log b, c and log d.

    Returns:
      dict with tensors a, b, c, d, g, each of shape raw.shape[:-1].
    """
    if not 0.0 < alpha < 1.0:
        raise ValueError(f"alpha must lie in (0, 1) for the map to stay invertible; got {alpha}")
    if len(damping) != 3 or not all(s > 0 for s in damping):
        raise ValueError(f"damping must be three positive factors (log b, c, log d); got {damping}")
    raw = tf.convert_to_tensor(raw)
    if raw.shape.rank is not None and raw.shape[-1] is not None and raw.shape[-1] != 5:
        raise ValueError(
            f"NLSq.from_unconstrained expects a last axis of 5 entries (a, log_b, c_raw, log_d, g); "
            f"got shape {raw.shape}")
    a, log_b, c_raw, log_d, g = tf.unstack(raw, num=5, axis=-1)
    s_b, s_c, s_d = (float(s) for s in damping)
    if (s_b, s_c, s_d) != (1.0, 1.0, 1.0):
        log_b, c_raw, log_d = s_b * log_b, s_c * c_raw, s_d * log_d
    # b / d computed as exp(log_b - log_d): finite even when b and d are both extreme.
    c = NLSQ_C_BOUND * alpha * tf.exp(log_b - log_d) * tf.tanh(c_raw)
    return dict(a=a, b=tf.exp(log_b), c=c, d=tf.exp(log_d), g=g)


class NLSq(tfb.AutoCompositeTensorBijector):
    """Elementwise `y = a + b*x + c / (1 + (d*x + g)**2)` (paper eq. 7).

    Invertible when `b > 0`, `d > 0` and `|c| < (8*sqrt(3)/9) * b / d`.
    `NLSq.from_unconstrained(raw)` builds parameters that always satisfy this.

    The forward direction is the cheap closed formula. The inverse solves a
    cubic in float64 whatever the input dtype (see `_inverse`), so containers
    that evaluate densities often should use the forward formula for it.

    Example:
      >>> nlsq = NLSq(a=0., b=1., c=0.5, d=1., g=0.)
      >>> dist = tfd.TransformedDistribution(tfd.Normal(0., 1.), nlsq)
      >>> dist.log_prob(0.3)
    """

    num_unconstrained_params = 5

    def __init__(self, a, b, c, d, g, validate_args=False, name="nlsq"):
        parameters = dict(locals())
        with tf.name_scope(name) as name:
            dtype = dtype_util.common_dtype([a, b, c, d, g], dtype_hint=tf.float32)
            convert = tensor_util.convert_nonref_to_tensor
            self._a = convert(a, dtype=dtype, name="a")
            self._b = convert(b, dtype=dtype, name="b")
            self._c = convert(c, dtype=dtype, name="c")
            self._d = convert(d, dtype=dtype, name="d")
            self._g = convert(g, dtype=dtype, name="g")
            super().__init__(
                forward_min_event_ndims=0,
                validate_args=validate_args,
                parameters=parameters,
                dtype=dtype,
                name=name)

    @classmethod
    def from_unconstrained(cls, raw, alpha=0.95, damping=(1.0, 1.0, 1.0), **kwargs):
        """A valid NLSq from a raw tensor `[..., 5] = (a, log_b, c_raw, log_d, g)`.

        See `nlsq_params_from_unconstrained` for the mapping. Extra keyword
        arguments (`validate_args`, `name`) go to the constructor.
        """
        return cls(**nlsq_params_from_unconstrained(raw, alpha=alpha, damping=damping), **kwargs)

    @classmethod
    def _parameter_properties(cls, dtype):
        positive = lambda: tfb.Softplus(low=dtype_util.eps(dtype))  # noqa: E731
        return dict(
            a=parameter_properties.ParameterProperties(),
            b=parameter_properties.ParameterProperties(default_constraining_bijector_fn=positive),
            c=parameter_properties.ParameterProperties(
                default_constraining_bijector_fn=parameter_properties.BIJECTOR_NOT_IMPLEMENTED),
            d=parameter_properties.ParameterProperties(default_constraining_bijector_fn=positive),
            g=parameter_properties.ParameterProperties())

    @property
    def a(self):
        """Shift `a` in `y = a + b*x + c / (1 + (d*x + g)**2)`."""
        return self._a

    @property
    def b(self):
        """Linear slope `b > 0`."""
        return self._b

    @property
    def c(self):
        """Height of the bump, `|c| < (8*sqrt(3)/9) * b / d`."""
        return self._c

    @property
    def d(self):
        """Inverse width of the bump, `d > 0`."""
        return self._d

    @property
    def g(self):
        """Offset of the bump centre (the bump sits at `x = -g / d`)."""
        return self._g

    @classmethod
    def _is_increasing(cls):
        return True

    def _params(self, dtype):
        return [tf.cast(tf.convert_to_tensor(p), dtype) for p in (self._a, self._b, self._c, self._d, self._g)]

    def _forward(self, x):
        # y = a + b*x + c / (1 + (d*x + g)^2)
        a, b, c, d, g = self._params(x.dtype)
        u = d * x + g
        return a + b * x + c / (1.0 + tf.square(u))

    def _forward_log_det_jacobian(self, x):
        # dy/dx = b - 2*c*d*u / (1 + u^2)^2,  u = d*x + g
        #       = b * (1 - 2*(c*d/b) * u / (1 + u^2)^2)  > 0 under the bound.
        _, b, c, d, g = self._params(x.dtype)
        return _log_slope(x, b, c, d, g)

    def _inverse(self, y):
        return tf.cast(_solve_cubic_f64(y, *self._params(tf.float64)), y.dtype)

    def _inverse_log_det_jacobian(self, y):
        # dx/dy = 1 / f'(x) at x = f^{-1}(y); evaluated in float64 like the inverse.
        a, b, c, d, g = self._params(tf.float64)
        x = _solve_cubic_f64(y, a, b, c, d, g)
        return tf.cast(-_log_slope(x, b, c, d, g), y.dtype)

    def _parameter_control_dependencies(self, is_init):
        if not self.validate_args:
            return []
        assertions = []
        refs = [tensor_util.is_ref(p) for p in (self._b, self._c, self._d)]
        if is_init != any(refs):
            b = tf.convert_to_tensor(self._b)
            c = tf.convert_to_tensor(self._c)
            d = tf.convert_to_tensor(self._d)
            assertions += [
                tf.debugging.assert_positive(b, message="NLSq: argument `b` must be positive."),
                tf.debugging.assert_positive(d, message="NLSq: argument `d` must be positive."),
                tf.debugging.assert_less(
                    tf.abs(c) * d, NLSQ_C_BOUND * b,
                    message="NLSq: argument `c` must satisfy |c| < (8*sqrt(3)/9) * b / d "
                            "for the map to be invertible."),
            ]
        return assertions


def _log_slope(x, b, c, d, g):
    """log f'(x) = log b + log1p(-2 (c d / b) u / (1 + u^2)^2), u = d x + g.

    u / (1 + u^2)^2 is evaluated as (u / (1 + u^2)) * (1 / (1 + u^2)), which goes
    to 0 instead of inf / inf = NaN when u^2 overflows.
    """
    u = d * x + g
    inv = 1.0 / (1.0 + tf.square(u))
    return tf.math.log(b) + tf.math.log1p(-2.0 * (c * d / b) * (u * inv) * inv)


def _solve_cubic_f64(y, a, b, c, d, g):
    """Real root x of a + b*x + c / (1 + (d*x + g)^2) = y, in float64.

    Derivation (paper appendix C). Substitute u = d*x + g, beta = b/d, k = y - a:
        beta*(u - g)*(1 + u^2) + c = k*(1 + u^2)
        u^3 + A*u^2 + u + C = 0,   A = -(g + k/beta),  C = (c - k)/beta - g.
    Depress with u = t - A/3:  t^3 + p*t + q = 0,
        p = 1 - A^2/3,   q = 2*A^3/27 - A/3 + C.
    The map is increasing, so there is exactly one real root (4p^3 + 27q^2 >= 0):
        p > 0:  t = -2 sqrt(p/3) sinh(asinh(3q/(2p) * sqrt(3/p)) / 3)
        p < 0:  t = -2 sign(q) sqrt(-p/3) cosh(acosh(-3|q|/(2p) * sqrt(-3/p)) / 3)
        p ~ 0:  t = -cbrt(q)
    (the hyperbolic forms avoid the cancellation of Cardano's formula). Then
    x = (u - g) / d, and one Newton step on f(x) - y polishes the last bits.
    """
    y = tf.cast(y, tf.float64)
    k = y - a
    beta = b / d
    big_a = -(g + k / beta)
    big_c = (c - k) / beta - g
    p = 1.0 - tf.square(big_a) / 3.0
    q = 2.0 * big_a ** 3 / 27.0 - big_a / 3.0 + big_c

    abs_q = tf.abs(q)
    nonzero_q = abs_q > 0.0
    # cbrt(q), with the q == 0 case kept out of pow's infinite derivative.
    cbrt_q = tf.where(
        nonzero_q, tf.sign(q) * tf.pow(tf.where(nonzero_q, abs_q, tf.ones_like(q)), 1.0 / 3.0),
        tf.zeros_like(q))
    near_zero = tf.abs(p) <= 1e-12 * (1.0 + tf.square(tf.stop_gradient(tf.abs(cbrt_q))))
    positive = (p > 0.0) & ~near_zero
    negative = (p < 0.0) & ~near_zero
    # Safe operands so that the branch not taken never produces inf/nan (and
    # hence never poisons gradients through tf.where).
    p_pos = tf.where(positive, p, tf.ones_like(p))
    p_neg = tf.where(negative, p, -tf.ones_like(p))
    t_pos = -2.0 * tf.sqrt(p_pos / 3.0) * tf.sinh(
        tf.asinh(1.5 * q / p_pos * tf.sqrt(3.0 / p_pos)) / 3.0)
    acosh_arg = tf.maximum(-1.5 * abs_q / p_neg * tf.sqrt(-3.0 / p_neg), 1.0)
    t_neg = -2.0 * tf.sign(q) * tf.sqrt(-p_neg / 3.0) * tf.cosh(tf.acosh(acosh_arg) / 3.0)
    t = tf.where(positive, t_pos, tf.where(negative, t_neg, -cbrt_q))

    u = t - big_a / 3.0
    x = (u - g) / d
    # One Newton step: x <- x - (f(x) - y) / f'(x); f' > 0 under the bound.
    u = d * x + g
    one_plus_u2 = 1.0 + tf.square(u)
    residual = a + b * x + c / one_plus_u2 - y
    slope = b - 2.0 * c * d * u / tf.square(one_plus_u2)
    return x - residual / slope
