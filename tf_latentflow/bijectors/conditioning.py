"""Helpers shared by the conditional flow containers (AF, coupling, chains)."""

import tensorflow as tf
import tensorflow_probability as tfp

__all__ = ["call_conditioner", "is_conditional"]

tfb = tfp.bijectors


def call_conditioner(conditioner, inputs, context):
    """Raw scalar-map parameters from `conditioner`, in the flow's dtype.

    The conditioner may run in a lower compute precision (a Keras mixed
    precision policy); the flow math and log-determinants stay in `inputs.dtype`.
    """
    raw = conditioner(inputs) if context is None else conditioner(inputs, context=context)
    return tf.cast(raw, inputs.dtype)


def is_conditional(bijector):
    """Whether `bijector` takes the `context=` keyword (directly or inside `Invert`)."""
    if isinstance(bijector, tfb.Invert):
        return is_conditional(bijector.bijector)
    return bool(getattr(bijector, "is_conditional", False))
