"""Helpers shared by the conditional flow containers (AF, coupling, chains)."""

import tensorflow as tf
# `tfb.Invert(b)` returns the private base class `_Invert` when `b` is not a
# CompositeTensor (our conditional layers hold Keras layers), so type checks
# must use the base class.
from tensorflow_probability.python.bijectors.invert import _Invert as InvertBase

__all__ = ["InvertBase", "call_conditioner", "is_conditional"]


def call_conditioner(conditioner, inputs, context):
    """Raw scalar-map parameters from `conditioner`, in the flow's dtype.

    The conditioner may run in a lower compute precision (a Keras mixed
    precision policy); the flow math and log-determinants stay in `inputs.dtype`.
    """
    raw = conditioner(inputs) if context is None else conditioner(inputs, context=context)
    return tf.cast(raw, inputs.dtype)


def is_conditional(bijector):
    """Whether `bijector` takes the `context=` keyword (directly or inside `Invert`)."""
    if isinstance(bijector, InvertBase):
        return is_conditional(bijector.bijector)
    return bool(getattr(bijector, "is_conditional", False))
