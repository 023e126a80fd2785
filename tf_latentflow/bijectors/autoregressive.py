"""Autoregressive flow (AF) layer over the last axis, with a MADE conditioner.

Paper section 4.1 (eq. 4-5), in TFP's direction convention (forward maps base
noise eps to the latent z, inverse maps z to eps):

    density (inverse), one pass:     eps_i = g(z_i ; theta_i(z_{<i}, h))
    sampling (forward), D passes:    z_i   = g^{-1}(eps_i ; theta_i(z_{<i}, h))
    log|det d eps / d z| = sum_i log g'(z_i ; theta_i)

where g is the scalar map ("nlsq" or "affine"), theta = MADE(z, context=h).
The cheap formula direction of g serves the density; the cubic inverse of NLSq
serves sampling. An inverse autoregressive flow (IAF) is
`tfb.Invert(AutoregressiveFlow(...))`.
"""

import tensorflow as tf

from tf_latentflow.bijectors.conditioning import ConditionalScalarMapFlow, call_conditioner

__all__ = ["AutoregressiveFlow"]


class AutoregressiveFlow(ConditionalScalarMapFlow):
    """AF layer: `inverse(z, context=h)` is one pass; `forward(eps, context=h)` is serial in D.

    Args:
      conditioner: callable `(z, context=None) -> [..., D, P]` that is
        autoregressive in some order (e.g. `tf_latentflow.layers.MADE`), with
        P the scalar map's `num_unconstrained_params`.
      scalar_map: "nlsq" (default) or "affine".
    """

    def __init__(self, conditioner, scalar_map="nlsq", validate_args=False,
                 name="autoregressive_flow"):
        super().__init__(conditioner, scalar_map, validate_args, dict(locals()), name)

    def _map(self, z, context):
        """The elementwise scalar map g(. ; theta(z, h))."""
        return self._scalar_map_from(call_conditioner(self._conditioner, z, context))

    def _forward(self, x, context=None):
        # Pass k fixes z_i for the dimension(s) of degree k, from z_<i fixed by
        # earlier passes: z^(k) = g^{-1}(eps ; theta(z^(k-1))), z^(0) = 0, so D
        # passes give the exact z. When the conditioner reports its degrees
        # (MADE does), each pass writes only its own dimension and leaves the
        # undetermined ones at 0: the masked-out inputs then never hold the
        # huge values a half-solved map can produce (0 * inf would be NaN).
        static_size = x.shape[-1]
        event_size = static_size if static_size is not None else tf.shape(x)[-1]
        degrees_fn = getattr(self._conditioner, "input_degrees", None)
        degrees = None
        if degrees_fn is not None and static_size is not None:
            degrees = tf.constant(degrees_fn(static_size), dtype=tf.int32)

        def body(step, z):
            z_next = self._map(z, context).inverse(x)
            if degrees is not None:
                z_next = tf.where(tf.equal(degrees, step + 1), z_next, z)
            return step + 1, z_next

        _, z = tf.while_loop(lambda step, _: step < event_size, body,
                             (tf.constant(0), tf.zeros_like(x)))
        return z

    def _inverse(self, y, context=None):
        return self._map(y, context).forward(y)

    def _inverse_log_det_jacobian(self, y, context=None):
        return self.inverse_and_log_det(y, context=context)[1]

    def inverse_and_log_det(self, y, context=None):
        """`(eps, log|det d eps/d z|)` in one conditioner pass."""
        g = self._map(y, context)
        return g.forward(y), tf.reduce_sum(g.forward_log_det_jacobian(y, event_ndims=0), axis=-1)

    def forward_and_log_det(self, x, context=None):
        """`(z, log|det dz/d eps|)`: the serial forward pass, then one density pass."""
        z = self._forward(x, context=context)
        return z, -self.inverse_and_log_det(z, context=context)[1]
