"""Helpers shared by the conditional flow containers (AF, coupling, chains)."""

import tensorflow as tf
# `tfb.Invert(b)` returns the private base class `_Invert` when `b` is not a
# CompositeTensor (our conditional layers hold Keras layers), so type checks
# must use the base class.
from tensorflow_probability.python.bijectors.invert import _Invert as InvertBase

__all__ = ["InvertBase", "RAW_PARAMETER_BOUND", "call_conditioner", "is_conditional", "soft_bound"]


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
