"""An LSTM layer for small batches on CPU: the input projection hoisted out of the time loop.

    [i, f, g, o]_t = x_t W + h_{t-1} U + b
    c_t = sigmoid(f) * c_{t-1} + sigmoid(i) * tanh(g)
    h_t = sigmoid(o) * tanh(c_t)

The same function and weight layout as `keras.layers.LSTM` (kernel, recurrent
kernel, bias; gate order i, f, g, o; forget-gate bias initialised to 1), but
x_t W is computed for all t in one matrix product before the recurrence, which
then only multiplies by U.

The recurrence has its own gradient (`lstm_recurrence`), as cuDNN's LSTM does:
the backward loop carries only (dh, dc) and emits the gate gradients dz_t, and

    dU = sum_t h_{t-1}^T dz_t = H_prev^T dZ          one [U, T*B] x [T*B, 4U] product

after the loop. Automatic differentiation of the scan instead adds h_{t-1}^T dz_t
into a [U, 4U] accumulator at every step, which at batch 5 moves the whole
matrix through memory T times and made the backward pass ~4x the forward.

On a GPU the recurrence can run in cuDNN instead (`FastLSTM(recurrence=...)`,
`cudnn_lstm_recurrence`). cuDNN's LSTM always multiplies its input by its own
input kernel and adds two biases,

    z_t = x'_t W' + b' + h_{t-1} U + b_U,

so it is given x'_t = projected_t = x_t W + b (+ t_rows), W' = I (a constant
[4U, 4U] identity, not a weight), b' = b_U = 0 and the layer's U: then
z_t = projected_t + h_{t-1} U, the scan's pre-activations. The call goes through
Keras's own TensorFlow backend (`keras.src.backend.tensorflow.rnn.lstm`, the
function behind `keras.layers.LSTM`'s cuDNN path, with its cuDNN parameter
packing); where it declines (no GPU, or inside an XLA compilation, where cuDNN
has no kernel) the same recurrence runs through Keras's generic loop
(`keras.src.backend.tensorflow.rnn.rnn`, a `tf.while_loop` over the LSTM cell,
differentiated automatically), as `keras.layers.LSTM` does. The identity input
kernel costs cuDNN one extra [T B, 4U] x [4U, 4U] product per layer; the generic
loop skips it (x I = x exactly).
"""

import importlib

import keras
import tensorflow as tf

from tf_latentflow.layers.t_features import t_feature_rows, t_feature_rows_at

try:  # True while tracing inside tf.function(jit_compile=True): cuDNN ops have no XLA kernel
    from tensorflow.python.ops.control_flow_util import GraphOrParentsInXlaContext as _in_xla
except ImportError:  # pragma: no cover - private TF API moved
    def _in_xla(graph):
        return False

# the module (its package re-exports the function `rnn` under the same name)
keras_tf_rnn = importlib.import_module("keras.src.backend.tensorflow.rnn")

__all__ = ["FastLSTM", "RECURRENCES", "cudnn_lstm_recurrence", "lstm_forward", "lstm_recurrence"]

RECURRENCES = ("auto", "scan", "cudnn")
CUDNN_DTYPES = (tf.float16, tf.float32)


def gpu_available():
    """Whether TensorFlow sees a GPU (`recurrence="auto"` picks cuDNN then)."""
    return bool(tf.config.list_physical_devices("GPU"))


def in_xla_compilation():
    """Whether the current graph is being compiled by XLA (`tf.function(jit_compile=True)`)."""
    return not tf.executing_eagerly() and bool(_in_xla(tf.compat.v1.get_default_graph()))


def _cell(z, c):
    """One LSTM cell: `(h_t, c_t, gates)` from pre-activations z `[..., 4U]` and c_{t-1};
    gates are (i, f, g, o) after their non-linearities, concatenated."""
    i, f, g, o = tf.split(z, 4, axis=-1)
    i, f, g, o = tf.sigmoid(i), tf.sigmoid(f), tf.tanh(g), tf.sigmoid(o)
    c = f * c + i * g
    return o * tf.tanh(c), c, tf.concat([i, f, g, o], axis=-1)


@tf.custom_gradient
def lstm_recurrence(projected, recurrent, h0, c0):
    """The LSTM recurrence over time-major inputs, with a hand-written gradient.

    Args:
      projected: `[T, B, 4U]`, x_t W + b for every step (gate order i, f, g, o).
      recurrent: `[U, 4U]`, the recurrent kernel.
      h0, c0: `[B, U]` initial state.

    Returns:
      hs `[T, B, U]`, where

          i, f, g, o = sigmoid, sigmoid, tanh, sigmoid of (projected_t + h_{t-1} U)
          c_t = f c_{t-1} + i g,   h_t = o tanh(c_t)

    The gradient (module docstring) runs one loop over t = T-1..0:

          dh  = dhs_t + dz_{t+1} U^T
          dc  = dc_{t+1} f_{t+1} + dh o (1 - tanh(c_t)^2)
          dz_t = [dc g i (1 - i), dc c_{t-1} f (1 - f), dc i (1 - g^2), dh tanh(c_t) o (1 - o)]
    """

    def step(carry, z_t):
        h, c, _ = carry
        return _cell(z_t + tf.matmul(h, recurrent), c)

    steps = tf.shape(projected)[0]
    zero_gates = tf.zeros(tf.shape(projected)[1:], projected.dtype)  # projected[0] fails at T = 0
    hs, cs, gates = tf.scan(step, projected, initializer=(h0, c0, zero_gates))

    def grad(dhs):
        c_prev = tf.concat([c0[tf.newaxis], cs[:-1]], axis=0)[:steps]
        h_prev = tf.concat([h0[tf.newaxis], hs[:-1]], axis=0)[:steps]

        def back(carry, elems):
            dh_next, dc_next, _ = carry
            dh_out, gate, c, c_before = elems
            i, f, g, o = tf.split(gate, 4, axis=-1)
            tanh_c = tf.tanh(c)
            dh = dh_out + dh_next
            dc = dc_next + dh * o * (1 - tanh_c * tanh_c)
            dz = tf.concat([dc * g * i * (1 - i), dc * c_before * f * (1 - f),
                            dc * i * (1 - g * g), dh * tanh_c * o * (1 - o)], axis=-1)
            return tf.matmul(dz, recurrent, transpose_b=True), dc * f, dz

        dhs_prev, dcs_prev, dzs = tf.scan(
            back, (dhs, gates, cs, c_prev),
            initializer=(tf.zeros_like(h0), tf.zeros_like(c0), zero_gates), reverse=True)
        units = tf.shape(recurrent)[0]
        d_recurrent = tf.matmul(tf.reshape(h_prev, [-1, units]), tf.reshape(dzs, [-1, 4 * units]),
                                transpose_a=True)
        # reverse=True stacks each carry at its input's position: index 0 is after t = 0;
        # with T = 0 nothing depends on h0, c0 (the appended zeros).
        dh0 = tf.concat([dhs_prev, tf.zeros_like(h0)[tf.newaxis]], axis=0)[0]
        dc0 = tf.concat([dcs_prev, tf.zeros_like(c0)[tf.newaxis]], axis=0)[0]
        return dzs, d_recurrent, dh0, dc0

    return hs, grad


def lstm_forward(projected, recurrent, h0, c0, num_steps=None):
    """`lstm_recurrence`'s forward pass alone, for inference: a `tf.while_loop` that
    stores only h_t (no cell states or gates for a backward pass) and stops after
    `num_steps` steps.

    Args:
      projected, recurrent, h0, c0: as `lstm_recurrence` (time-major `[T, B, 4U]`).
      num_steps: int scalar (may be a tensor), the steps to compute; default T.
        Clipped to [min(1, T), T].

    Returns:
      hs `[T, B, U]`: `lstm_recurrence`'s outputs at t < num_steps, 0 after (those
      steps are never computed). A sampler whose time axis is padded to a fixed
      length (an XLA bucket) passes the longest sequence length, so that the
      serial loop skips the padding. Differentiable by TensorFlow's loop gradient
      (slowly); training uses `lstm_recurrence`.
    """
    projected = tf.convert_to_tensor(projected)
    steps = tf.shape(projected)[0]
    units = recurrent.shape[0]

    def run():
        # at least one step: the stack fills the unwritten steps with zeros only after a write
        limit = steps if num_steps is None else tf.clip_by_value(
            tf.cast(num_steps, tf.int32), tf.minimum(1, steps), steps)
        out = tf.TensorArray(projected.dtype, size=steps, element_shape=tf.TensorShape([None, units]))

        def body(t, h, c, out):
            h, c, _ = _cell(projected[t] + tf.matmul(h, recurrent), c)
            return t + 1, h, c, out.write(t, h)

        # maximum_iterations bounds the loop for XLA
        _, _, _, out = tf.while_loop(lambda t, *_: t < limit, body, (0, h0, c0, out), maximum_iterations=steps)
        return out.stack()

    def empty():
        return tf.zeros(tf.stack([0, tf.shape(projected)[1], units]), projected.dtype)

    static_steps = projected.shape[0]
    if static_steps is not None:
        return run() if static_steps > 0 else empty()
    return tf.cond(steps > 0, run, empty)


def cudnn_lstm_recurrence(projected, recurrent, h0, c0):
    """The LSTM recurrence over batch-major inputs, in cuDNN where it can run.

    Args:
      projected: `[B, T, 4U]`, x_t W + b for every step (gate order i, f, g, o).
      recurrent: `[U, 4U]`, the recurrent kernel.
      h0, c0: `[B, U]` initial state.

    Returns:
      hs `[B, T, U]`: the function of `lstm_recurrence` (batch-major here, as
      cuDNN and Keras take it). cuDNN gets input `projected`, input kernel I
      `[4U, 4U]`, biases 0 and recurrent kernel U (module docstring); without a
      GPU, or under XLA, Keras's generic loop runs the cell

          z_t = projected_t + h_{t-1} U,   c_t = f c_{t-1} + i g,   h_t = o tanh(c_t)

    and is differentiated automatically. T = 0 gives `[B, 0, U]` without running
    either (Keras's loop reads step 0 eagerly; cuDNN at T = 0 is not relied on).
    """
    projected = tf.convert_to_tensor(projected)
    units = int(recurrent.shape[0])
    dtype = projected.dtype

    def run(projected):
        if not in_xla_compilation():
            try:
                _, hs, _ = keras_tf_rnn.lstm(
                    projected, h0, c0, None, kernel=tf.eye(4 * units, dtype=dtype),
                    recurrent_kernel=recurrent, bias=tf.zeros([4 * units], dtype),
                    activation=tf.tanh, recurrent_activation=tf.sigmoid,
                    return_sequences=True, time_major=False)
                return hs
            except NotImplementedError:  # no GPU: Keras's own fallback below
                pass

        def cell(z_t, states):  # keras.layers.LSTMCell.call (implementation 2), kernel I, bias 0
            h, c = states
            h, c = _cell(z_t + tf.matmul(h, recurrent), c)[:2]
            return h, [h, c]

        _, hs, _ = keras_tf_rnn.rnn(cell, projected, [h0, c0], input_length=projected.shape[1])
        return hs

    def empty():
        return tf.zeros(tf.stack([tf.shape(projected)[0], 0, units]), dtype)

    steps = projected.shape[1]
    if steps is not None:
        return run(projected) if steps > 0 else empty()
    return tf.cond(tf.shape(projected)[1] > 0, lambda: run(projected), empty)


@keras.saving.register_keras_serializable(package="tf_latentflow")
class FastLSTM(keras.layers.Layer):
    """`[B, T, D] -> [B, T, units]` (all steps); `step` advances one step for serial loops.

    recurrence: how `call` runs the time loop over the projected inputs (the
    weights, and so checkpoints, are the same for every setting):
      "scan":  `lstm_recurrence`, a `tf.scan` with the hand-written gradient; the
               fast one on CPU at small batch, and XLA-compilable.
      "cudnn": `cudnn_lstm_recurrence`, cuDNN's LSTM on a GPU (identity input
               kernel, module docstring); elsewhere Keras's generic loop, i.e.
               what `keras.layers.LSTM` computes on a machine without cuDNN.
      "auto":  "cudnn" when `gpu_available()`, the compute dtype is float16 or
               float32 and the call is not being compiled by XLA; else "scan".
               Decided at every call (trace), not stored. So: on a CPU, or
               bfloat16, or under jit_compile, "scan"; on a GPU otherwise cuDNN.
               The real cuDNN kernel has not run in this project's tests (no
               GPU); `python -m tf_latentflow.selfcheck` compares it with the
               scan on a GPU (on a CPU: the branch against a stand-in op).
    """

    def __init__(self, units, recurrence="auto", **kwargs):
        super().__init__(**kwargs)
        if int(units) < 1:
            raise ValueError(f"FastLSTM: units must be a positive integer, got {units}")
        if recurrence not in RECURRENCES:
            raise ValueError(f"FastLSTM: recurrence must be one of {RECURRENCES}, got {recurrence!r}")
        self.units = int(units)
        self.recurrence = recurrence

    def resolved_recurrence(self, dtype=None):
        """The recurrence `call` runs now ("scan" or "cudnn") for inputs of `dtype`
        (default: the compute dtype)."""
        if self.recurrence != "auto":
            return self.recurrence
        dtype = tf.as_dtype(dtype or self.compute_dtype)
        if dtype in CUDNN_DTYPES and gpu_available() and not in_xla_compilation():
            return "cudnn"
        return "scan"

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
        return _cell(z, c)[:2]

    def zero_state(self, batch_size, dtype=None):
        dtype = dtype or self.compute_dtype
        zeros = tf.zeros(tf.stack([batch_size, self.units]), dtype=dtype)
        return [zeros, zeros]

    def call(self, inputs, initial_state=None, t_rows=None):
        """inputs [B, T, D] -> [B, T, units].

        t_rows: optional [B, T, 4 units] added to the input projection: the part of the
        kernel's input rows after the first D, already gathered (`t_feature_rows`), so
        that `call(x, t_rows=self.t_feature_rows(lengths, T, depth))` equals
        `call(concat([x, t_features(lengths, T, depth)], -1))` without the one-hot tensor.
        """
        inputs = tf.convert_to_tensor(inputs)
        projected, recurrent, h0, c0 = self._projected(inputs, initial_state, t_rows)
        if self.resolved_recurrence(inputs.dtype) == "cudnn":
            return cudnn_lstm_recurrence(projected, recurrent, h0, c0)
        hs = lstm_recurrence(tf.transpose(projected, [1, 0, 2]), recurrent, h0, c0)
        return tf.transpose(hs, [1, 0, 2])

    def inference(self, inputs, num_steps=None, initial_state=None, t_rows=None):
        """`call` for inference (sampling): the steps t < num_steps only, 0 after.

        The same outputs as `call` at t < num_steps (default: all T), computed by
        `lstm_forward`, a loop that keeps nothing for a backward pass and skips the
        steps from num_steps on (a sampler's bucket padding). Called directly, not
        through Keras's `__call__`: casts to the compute dtype itself.
        """
        inputs = tf.cast(tf.convert_to_tensor(inputs), self.compute_dtype)
        if not self.built:
            self.build(inputs.shape)
        projected, recurrent, h0, c0 = self._projected(inputs, initial_state, t_rows)
        hs = lstm_forward(tf.transpose(projected, [1, 0, 2]), recurrent, h0, c0, num_steps=num_steps)
        return tf.transpose(hs, [1, 0, 2])

    def _projected(self, inputs, initial_state, t_rows):
        """(x W + b (+ t_rows) `[B, T, 4 units]`, U, h0, c0) in the inputs' dtype."""
        kernel, recurrent, bias = self._weights(inputs.dtype)
        if t_rows is not None:
            kernel = kernel[: inputs.shape[-1]]
        projected = tf.tensordot(inputs, kernel, axes=1) + bias
        if t_rows is not None:
            projected = projected + tf.cast(t_rows, projected.dtype)
        if initial_state is None:
            initial_state = self.zero_state(tf.shape(inputs)[0], inputs.dtype)
        h0, c0 = [tf.cast(s, inputs.dtype) for s in initial_state]
        return projected, recurrent, h0, c0

    def t_feature_rows(self, lengths, steps, depth, dtype=None):
        """[B, steps, 4 units]: the T-features' part of the input projection, for inputs
        whose last 2 * depth columns would be `t_features(lengths, steps, depth)`."""
        kernel = self._weights(dtype or self.compute_dtype)[0]
        return t_feature_rows(kernel[-2 * depth:], lengths, steps, depth)

    def t_feature_rows_at(self, t, lengths, depth, dtype=None):
        """[B, 4 units]: `t_feature_rows(...)[:, t]` for one step t (step-by-step loops)."""
        kernel = self._weights(dtype or self.compute_dtype)[0]
        return t_feature_rows_at(kernel[-2 * depth:], t, lengths, depth)

    def _weights(self, dtype):
        """Kernel, recurrent kernel and bias in `dtype` (the compute dtype under mixed precision)."""
        return [tf.cast(w, dtype) for w in (self.kernel, self.recurrent_kernel, self.bias)]

    def step(self, x_t, state, t_row=None):
        """One step: `(h_t, [h_t, c_t])` from x_t `[B, D]` and state `[h, c]`.

        t_row: optional `[B, 4 units]` (`t_feature_rows_at`), as `t_rows` of `call`.
        Runs outside Keras's `__call__` (inside a `tf.while_loop`), so it casts to
        the compute dtype itself.
        """
        dtype = self.compute_dtype
        kernel, recurrent, bias = self._weights(dtype)
        x_t = tf.cast(x_t, dtype)
        h, c = [tf.cast(s, dtype) for s in state]
        if t_row is not None:
            kernel = kernel[: x_t.shape[-1]]
        z = tf.matmul(x_t, kernel) + tf.matmul(h, recurrent) + bias
        if t_row is not None:
            z = z + tf.cast(t_row, dtype)
        h, c = self._gates(z, c)
        return h, [h, c]

    def compute_output_shape(self, input_shape, initial_state_shape=None):
        return tuple(input_shape[:-1]) + (self.units,)

    def get_config(self):
        config = super().get_config()
        config["units"] = self.units
        config["recurrence"] = self.recurrence
        return config
