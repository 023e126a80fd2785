"""A context-conditioned elementwise map: the paper's "- AF hidden" ablation (table 4).

Each dimension of the step gets its own scalar map whose parameters depend on
the context h only, so the dimensions within a step are independent given h:

    density (inverse):   eps_i = g(z_i ; theta_i(h))
    sampling (forward):  z_i   = g^{-1}(eps_i ; theta_i(h))

Both directions are one pass.
"""

import tensorflow as tf
import tensorflow_probability as tfp

from tf_latentflow.bijectors.conditioning import soft_bound
from tf_latentflow.bijectors.scalar_maps import scalar_map_class

__all__ = ["ContextElementwise"]

tfb = tfp.bijectors


class ContextElementwise(tfb.Bijector):
    """Elementwise scalar maps with parameters `conditioner(context)` of shape `[..., D, P]`."""

    is_conditional = True

    def __init__(self, conditioner, scalar_map="nlsq", validate_args=False,
                 name="context_elementwise"):
        parameters = dict(locals())
        self._conditioner = conditioner
        self._scalar_map = scalar_map
        self._map_cls = scalar_map_class(scalar_map)
        super().__init__(forward_min_event_ndims=1, validate_args=validate_args,
                         parameters=parameters, name=name)

    @property
    def conditioner(self):
        return self._conditioner

    def _map(self, x, context):
        if context is None:
            raise ValueError(f"{self.name} needs a context= input")
        raw = soft_bound(tf.cast(self._conditioner(context), x.dtype))
        return self._map_cls.from_unconstrained(raw, validate_args=self.validate_args)

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
