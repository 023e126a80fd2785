"""An LSTM layer for small batches on CPU: the input projection hoisted out of the time loop.

    [i, f, g, o]_t = x_t W + h_{t-1} U + b
    c_t = sigmoid(f) * c_{t-1} + sigmoid(i) * tanh(g)
    h_t = sigmoid(o) * tanh(c_t)

The same function and weight layout as `keras.layers.LSTM` (kernel, recurrent
kernel, bias; gate order i, f, g, o; forget-gate bias initialised to 1), but
x_t W is computed for all t in one matrix product before the recurrence, which
then only multiplies by U. At the paper's sizes (batch 5, 500 units) this is
about 1.6x faster per layer than `keras.layers.LSTM` on this CPU
(benchmarks/model_speed.py measures whole models).
"""

import keras
import tensorflow as tf

__all__ = ["FastLSTM"]


class FastLSTM(keras.layers.Layer):
    """`[B, T, D] -> [B, T, units]` (all steps); `step` advances one step for serial loops."""

    def __init__(self, units, **kwargs):
        super().__init__(**kwargs)
        self.units = int(units)

    @property
    def state_size(self):
        return [self.units, self.units]

    def build(self, input_shape):
        input_size = int(input_shape[-1])
        self.kernel = self.add_weight(shape=(input_size, 4 * self.units),
                                      initializer="glorot_uniform", name="kernel")
        self.recurrent_kernel = self.add_weight(shape=(self.units, 4 * self.units),
                                                initializer="orthogonal", name="recurrent_kernel")

        def bias_init(shape, dtype=None):
            ones = keras.initializers.Ones()((self.units,), dtype=dtype)
            zeros = keras.initializers.Zeros()((self.units,), dtype=dtype)
            return tf.concat([zeros, ones, zeros, zeros], 0)  # forget gate starts open

        self.bias = self.add_weight(shape=(4 * self.units,), initializer=bias_init, name="bias")
        self.built = True

    def _gates(self, z, c):
        i, f, g, o = tf.split(z, 4, axis=-1)
        c = tf.sigmoid(f) * c + tf.sigmoid(i) * tf.tanh(g)
        return tf.sigmoid(o) * tf.tanh(c), c

    def zero_state(self, batch_size, dtype=None):
        dtype = dtype or self.compute_dtype
        zeros = tf.zeros(tf.stack([batch_size, self.units]), dtype=dtype)
        return [zeros, zeros]

    def call(self, inputs, initial_state=None):
        inputs = tf.convert_to_tensor(inputs)
        kernel, recurrent, bias = self._weights(inputs.dtype)
        projected = tf.tensordot(inputs, kernel, axes=1) + bias
        if initial_state is None:
            initial_state = self.zero_state(tf.shape(inputs)[0], inputs.dtype)
        h0, c0 = [tf.cast(s, inputs.dtype) for s in initial_state]

        def step(carry, z_t):
            h, c = carry
            return self._gates(z_t + tf.matmul(h, recurrent), c)

        hs, _ = tf.scan(step, tf.transpose(projected, [1, 0, 2]), initializer=(h0, c0))
        return tf.transpose(hs, [1, 0, 2])

    def _weights(self, dtype):
        """Kernel, recurrent kernel and bias in `dtype` (the compute dtype under mixed precision)."""
        return [tf.cast(w, dtype) for w in (self.kernel, self.recurrent_kernel, self.bias)]

    def step(self, x_t, state):
        """One step: `(h_t, [h_t, c_t])` from x_t `[B, D]` and state `[h, c]`.

        Runs outside Keras's `__call__` (inside a `tf.while_loop`), so it casts to
        the compute dtype itself.
        """
        dtype = self.compute_dtype
        kernel, recurrent, bias = self._weights(dtype)
        x_t = tf.cast(x_t, dtype)
        h, c = [tf.cast(s, dtype) for s in state]
        z = tf.matmul(x_t, kernel) + tf.matmul(h, recurrent) + bias
        h, c = self._gates(z, c)
        return h, [h, c]

    def compute_output_shape(self, input_shape, initial_state_shape=None):
        return tuple(input_shape[:-1]) + (self.units,)

    def get_config(self):
        config = super().get_config()
        config["units"] = self.units
        return config
