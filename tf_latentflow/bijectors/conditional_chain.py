"""A chain of flow layers that all receive the same conditioning input.

TFP's `Chain` routes keyword arguments by member name; the flow stacks of this
project condition every layer on one context tensor (paper section 4.3: the
LSTM state at step t). `ConditionalChain` passes `context=` to each member that
takes it and nothing to the others (e.g. `Permute`).

Order follows `tfb.Chain`: `ConditionalChain([b0, b1, b2]).forward(x)` is
`b0.forward(b1.forward(b2.forward(x)))`, so `inverse` (the density direction)
applies b0 first.
"""

import tensorflow as tf
import tensorflow_probability as tfp

from tf_latentflow.bijectors.conditioning import InvertBase, is_conditional

__all__ = ["ConditionalChain"]

tfb = tfp.bijectors


def _forward_and_log_det(bijector, x, kwargs):
    if hasattr(bijector, "forward_and_log_det"):
        return bijector.forward_and_log_det(x, **kwargs)
    if isinstance(bijector, InvertBase) and hasattr(bijector.bijector, "inverse_and_log_det"):
        return bijector.bijector.inverse_and_log_det(x, **kwargs)
    y = bijector.forward(x, **kwargs)
    return y, bijector.forward_log_det_jacobian(x, event_ndims=1, **kwargs)


def _inverse_and_log_det(bijector, y, kwargs):
    if hasattr(bijector, "inverse_and_log_det"):
        return bijector.inverse_and_log_det(y, **kwargs)
    if isinstance(bijector, InvertBase) and hasattr(bijector.bijector, "forward_and_log_det"):
        return bijector.bijector.forward_and_log_det(y, **kwargs)
    x = bijector.inverse(y, **kwargs)
    return x, bijector.inverse_log_det_jacobian(y, event_ndims=1, **kwargs)


class ConditionalChain(tfb.Bijector):
    """Composition of event-rank-1 bijectors sharing the `context=` keyword."""

    is_conditional = True

    def __init__(self, bijectors, validate_args=False, name="conditional_chain"):
        parameters = dict(locals())
        self._bijectors = list(bijectors)
        if not self._bijectors:
            raise ValueError("ConditionalChain needs at least one bijector")
        super().__init__(forward_min_event_ndims=1, validate_args=validate_args,
                         parameters=parameters, name=name)

    @property
    def bijectors(self):
        return list(self._bijectors)

    def _kwargs(self, bijector, context):
        return {"context": context} if is_conditional(bijector) and context is not None else {}

    def forward_and_log_det(self, x, context=None):
        """`(z, log|det dz/d eps|)`, each member evaluated once."""
        total = tf.zeros([], dtype=x.dtype)
        for bijector in reversed(self._bijectors):
            x, ldj = _forward_and_log_det(bijector, x, self._kwargs(bijector, context))
            total = total + ldj
        return x, total

    def inverse_and_log_det(self, y, context=None):
        """`(eps, log|det d eps/d z|)`, each member evaluated once."""
        total = tf.zeros([], dtype=y.dtype)
        for bijector in self._bijectors:
            y, ldj = _inverse_and_log_det(bijector, y, self._kwargs(bijector, context))
            total = total + ldj
        return y, total

    def _forward(self, x, context=None):
        for bijector in reversed(self._bijectors):
            x = bijector.forward(x, **self._kwargs(bijector, context))
        return x

    def _inverse(self, y, context=None):
        for bijector in self._bijectors:
            y = bijector.inverse(y, **self._kwargs(bijector, context))
        return y

    def _inverse_log_det_jacobian(self, y, context=None):
        return self.inverse_and_log_det(y, context=context)[1]
