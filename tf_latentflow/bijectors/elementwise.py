"""A context-conditioned elementwise map: the paper's "- AF hidden" ablation (table 2).

Each dimension of the step gets its own scalar map whose parameters depend on
the context h only, so the dimensions within a step are independent given h:

    density (inverse):   eps_i = g(z_i ; theta_i(h))
    sampling (forward):  z_i   = g^{-1}(eps_i ; theta_i(h))

Both directions are one pass.
"""

import tensorflow as tf

from tf_latentflow.bijectors.conditioning import ConditionalScalarMapFlow, soft_bound

__all__ = ["ContextElementwise"]


class ContextElementwise(ConditionalScalarMapFlow):
    """Elementwise scalar maps with parameters `conditioner(context)` of shape `[..., D, P]`."""

    def __init__(self, conditioner, scalar_map="nlsq", validate_args=False,
                 name="context_elementwise"):
        super().__init__(conditioner, scalar_map, validate_args, dict(locals()), name)

    def _map(self, x, context):
        if context is None:
            raise ValueError(f"{self.name} needs a context= input")
        return self._scalar_map_from(soft_bound(tf.cast(self._conditioner(context), x.dtype)))

    def forward_and_log_det(self, x, context=None):
        g = self._map(x, context)
        z = g.inverse(x)
        return z, -tf.reduce_sum(g.forward_log_det_jacobian(z, event_ndims=0), axis=-1)

    def inverse_and_log_det(self, y, context=None):
        g = self._map(y, context)
        return g.forward(y), tf.reduce_sum(g.forward_log_det_jacobian(y, event_ndims=0), axis=-1)

    def _forward(self, x, context=None):
        return self.forward_and_log_det(x, context=context)[0]

    def _inverse(self, y, context=None):
        return self.inverse_and_log_det(y, context=context)[0]

    def _inverse_log_det_jacobian(self, y, context=None):
        return self.inverse_and_log_det(y, context=context)[1]
