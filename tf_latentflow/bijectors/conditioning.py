"""Helpers shared by the conditional flow containers (AF, coupling, chains)."""

import tensorflow as tf
import tensorflow_probability as tfp
# `tfb.Invert(b)` returns the private base class `_Invert` when `b` is not a
# CompositeTensor (our conditional layers hold Keras layers), so type checks
# must use the base class.
from tensorflow_probability.python.bijectors.invert import _Invert as InvertBase

from tf_latentflow.bijectors.scalar_maps import scalar_map_class

__all__ = ["ConditionalScalarMapFlow", "InvertBase", "RAW_PARAMETER_BOUND", "call_conditioner",
           "is_conditional", "soft_bound"]


# Raw parameters pass through bound * tanh(raw / bound): the identity for |raw| << bound,
# and scales exp(log_b), exp(log_d) of at most e^10 per layer, so a conditioner fed
# extreme inputs (far from the data, or early in training) cannot overflow exp() into
# inf and NaN. (The reference PyTorch flows are reported to go NaN on PTB.)
RAW_PARAMETER_BOUND = 10.0


def call_conditioner(conditioner, inputs, context):
    """Raw scalar-map parameters from `conditioner`, in the flow's dtype, softly bounded.

    The conditioner may run in a lower compute precision (a Keras mixed
    precision policy); the flow math and log-determinants stay in `inputs.dtype`.
    """
    raw = conditioner(inputs) if context is None else conditioner(inputs, context=context)
    return soft_bound(tf.cast(raw, inputs.dtype))


def soft_bound(raw, bound=RAW_PARAMETER_BOUND):
    """bound * tanh(raw / bound): smooth, monotone, |result| < bound."""
    return bound * tf.tanh(raw / bound)


def is_conditional(bijector):
    """Whether `bijector` takes the `context=` keyword (directly or inside `Invert`)."""
    if isinstance(bijector, InvertBase):
        return is_conditional(bijector.bijector)
    return bool(getattr(bijector, "is_conditional", False))


class ConditionalScalarMapFlow(tfp.bijectors.Bijector):
    """Base of the flow layers that apply one scalar map per dimension, its
    parameters computed by a conditioner network (AF, coupling, elementwise).

    Subclasses implement the directions; this class holds the conditioner, the
    scalar-map choice and `_scalar_map(raw)`, the map built from raw outputs.
    """

    is_conditional = True

    def __init__(self, conditioner, scalar_map, validate_args, parameters, name):
        self._conditioner = conditioner
        self._scalar_map = scalar_map
        self._map_cls = scalar_map_class(scalar_map)
        super().__init__(forward_min_event_ndims=1, validate_args=validate_args,
                         parameters=parameters, name=name)

    @property
    def conditioner(self):
        return self._conditioner

    @property
    def scalar_map(self):
        return self._scalar_map

    def _scalar_map_from(self, raw):
        """The elementwise scalar map with (softly bounded) raw parameters `raw` [..., D, P]."""
        return self._map_cls.from_unconstrained(raw, validate_args=self.validate_args)
