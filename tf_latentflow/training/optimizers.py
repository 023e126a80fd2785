"""Adam with TensorFlow's fused update kernel.

Keras's `Adam.update_step` (TensorFlow backend) writes each weight's update as about
ten separate element-wise ops (subtract, multiply, assign_add for m; square, subtract,
multiply, assign_add for v; sqrt, add, multiply, divide, assign_sub for the weight), each
a pass over memory, which adds up with the paper's ~20 M weights. `FusedAdam` makes the same update with one
`ResourceApplyAdam` op per weight (one pass, read g, m, v, w; write m, v, w):

    m_t   = m + (g - m) (1 - beta_1)
    v_t   = v + (g^2 - v) (1 - beta_2)
    w_t   = w - lr sqrt(1 - beta_2^t) / (1 - beta_1^t) * m_t / (sqrt(v_t) + epsilon)

with t = iterations + 1, Kingma & Ba (2015) in the "epsilon hat" form that Keras uses.
The slots are Keras's own (`_momentums`, `_velocities`), so checkpoints are the same as
`keras.optimizers.Adam`'s and load either way; weight decay, gradient clipping, loss
scaling and the distribution strategy's update context are the base class's.
Sparse gradients (`IndexedSlices`) and AMSGrad take Keras's own path. The one numerical
difference: the kernel forms 1 - beta in float32 (1 - 0.999f = 9.99987e-4) where Keras
rounds the float64 difference (1e-3), so the moments differ from Keras's by ~1e-5
relative (`tests/training/test_optimizers.py`).
"""

from __future__ import annotations

import keras
import tensorflow as tf


class FusedAdam(keras.optimizers.Adam):
    """`keras.optimizers.Adam` whose dense update is TensorFlow's `ResourceApplyAdam`."""

    def update_step(self, gradient, variable, learning_rate):
        if self.amsgrad or isinstance(gradient, tf.IndexedSlices):
            return super().update_step(gradient, variable, learning_rate)
        index = self._get_variable_index(variable)
        weight = variable.value if isinstance(variable, keras.Variable) else variable
        m = self._momentums[index].value
        v = self._velocities[index].value
        dtype = weight.dtype
        step = tf.cast(self.iterations + 1, dtype)
        beta_1 = tf.cast(self.beta_1, dtype)
        beta_2 = tf.cast(self.beta_2, dtype)
        tf.raw_ops.ResourceApplyAdam(
            var=weight.handle, m=m.handle, v=v.handle,
            beta1_power=tf.pow(beta_1, step), beta2_power=tf.pow(beta_2, step),
            lr=tf.cast(learning_rate, dtype), beta1=beta_1, beta2=beta_2,
            epsilon=tf.cast(self.epsilon, dtype), grad=tf.cast(gradient, dtype))
