"""The affine scalar map: the paper's "- NLSq" ablation (table 2), the "-affine" priors.

    y = f(x) = shift + exp(log_scale) * x

It is the NLSq map with c = 0 (paper eq. 7), parameterised the same way from
raw network outputs, so every flow container can take either map.
"""

import tensorflow as tf
import tensorflow_probability as tfp
from tensorflow_probability.python.internal import dtype_util, parameter_properties, tensor_util

__all__ = ["Affine"]

tfb = tfp.bijectors


class Affine(tfb.AutoCompositeTensorBijector):
    """Elementwise `y = shift + exp(log_scale) * x`, invertible for any real parameters."""

    num_unconstrained_params = 2

    def __init__(self, shift, log_scale, validate_args=False, name="affine"):
        parameters = dict(locals())
        with tf.name_scope(name) as name:
            dtype = dtype_util.common_dtype([shift, log_scale], dtype_hint=tf.float32)
            convert = tensor_util.convert_nonref_to_tensor
            self._shift = convert(shift, dtype=dtype, name="shift")
            self._log_scale = convert(log_scale, dtype=dtype, name="log_scale")
            super().__init__(
                forward_min_event_ndims=0,
                is_constant_jacobian=True,
                validate_args=validate_args,
                parameters=parameters,
                dtype=dtype,
                name=name)

    @classmethod
    def from_unconstrained(cls, raw, **kwargs):
        """An affine map from a raw tensor `[..., 2] = (shift, log_scale)`."""
        raw = tf.convert_to_tensor(raw)
        if raw.shape.rank is not None and raw.shape[-1] is not None and raw.shape[-1] != 2:
            raise ValueError(
                f"Affine.from_unconstrained expects a last axis of 2 entries (shift, log_scale); "
                f"got shape {raw.shape}")
        shift, log_scale = tf.unstack(raw, num=2, axis=-1)
        return cls(shift=shift, log_scale=log_scale, **kwargs)

    @classmethod
    def _parameter_properties(cls, dtype):
        return dict(
            shift=parameter_properties.ParameterProperties(),
            log_scale=parameter_properties.ParameterProperties())

    @property
    def shift(self):
        """`shift` in `y = shift + exp(log_scale) * x`."""
        return self._shift

    @property
    def log_scale(self):
        """`log_scale` in `y = shift + exp(log_scale) * x`."""
        return self._log_scale

    @classmethod
    def _is_increasing(cls):
        return True

    def _forward(self, x):
        return self._shift + tf.exp(self._log_scale) * x

    def _inverse(self, y):
        # x = (y - shift) * exp(-log_scale)
        return (y - self._shift) * tf.exp(-self._log_scale)

    def _forward_log_det_jacobian(self, x):
        # dy/dx = exp(log_scale); broadcast against x so the shape is x's batch shape.
        return tf.broadcast_to(self._log_scale, tf.broadcast_dynamic_shape(
            tf.shape(x), tf.shape(self._log_scale)))

    def _inverse_log_det_jacobian(self, y):
        return -self._forward_log_det_jacobian(y)
