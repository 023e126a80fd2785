"""Split coupling flow (SCF) layer over the last axis (paper section 4.1, eq. 6).

Split the event into a conditioning part c (passed through) and a transformed
part t. In TFP's direction convention:

    density (inverse):   eps_c = z_c,   eps_t = g(z_t ; theta(z_c, h))
    sampling (forward):  z_c = eps_c,   z_t   = g^{-1}(eps_t ; theta(eps_c, h))
    log|det d eps / d z| = sum_{i in t} log g'(z_i ; theta_i)

Both directions take one conditioner pass. `num_masked` follows TFP's RealNVP:
num_masked > 0 passes the first num_masked dimensions through; num_masked < 0
passes the last |num_masked| through.
"""

import tensorflow as tf

from tf_latentflow.bijectors.conditioning import ConditionalScalarMapFlow, call_conditioner

__all__ = ["Coupling"]


class Coupling(ConditionalScalarMapFlow):
    """Coupling layer; both directions in one pass.

    Args:
      conditioner: callable `(x_c, context=None) -> [..., D_t, P]` (e.g.
        `tf_latentflow.layers.ContextMLP(P, num_outputs=D_t)`).
      num_masked: size of the pass-through part; negative counts from the end.
      scalar_map: "nlsq" (default) or "affine".
    """

    def __init__(self, conditioner, num_masked, scalar_map="nlsq", validate_args=False,
                 name="coupling"):
        parameters = dict(locals())
        if num_masked == 0:
            raise ValueError("num_masked must be non-zero: a coupling layer needs a conditioning part")
        self._num_masked = int(num_masked)
        super().__init__(conditioner, scalar_map, validate_args, parameters, name)

    @property
    def num_masked(self):
        return self._num_masked

    def _split(self, x):
        """(pass-through part, transformed part)."""
        k = self._num_masked
        return (x[..., :k], x[..., k:]) if k > 0 else (x[..., k:], x[..., :k])

    def _merge(self, kept, moved):
        return tf.concat([kept, moved] if self._num_masked > 0 else [moved, kept], axis=-1)

    def _map(self, kept, context):
        return self._scalar_map_from(call_conditioner(self._conditioner, kept, context))

    def forward_and_log_det(self, x, context=None):
        """`(z, log|det dz/d eps|)` in one conditioner pass."""
        kept, moved = self._split(x)
        g = self._map(kept, context)
        z_moved = g.inverse(moved)
        fldj = -tf.reduce_sum(g.forward_log_det_jacobian(z_moved, event_ndims=0), axis=-1)
        return self._merge(kept, z_moved), fldj

    def inverse_and_log_det(self, y, context=None):
        """`(eps, log|det d eps/d z|)` in one conditioner pass."""
        kept, moved = self._split(y)
        g = self._map(kept, context)
        ildj = tf.reduce_sum(g.forward_log_det_jacobian(moved, event_ndims=0), axis=-1)
        return self._merge(kept, g.forward(moved)), ildj

    def _forward(self, x, context=None):
        return self.forward_and_log_det(x, context=context)[0]

    def _forward_log_det_jacobian(self, x, context=None):
        return self.forward_and_log_det(x, context=context)[1]

    def _inverse(self, y, context=None):
        return self.inverse_and_log_det(y, context=context)[0]

    def _inverse_log_det_jacobian(self, y, context=None):
        return self.inverse_and_log_det(y, context=context)[1]
