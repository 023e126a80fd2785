"""A dense conditioner network with a context input, optionally masked.

    h_0 = x
    h_l = act(h_{l-1} @ (W_l * M_l) + ctx @ V_l + b_l),   l = 1..L
    out = h_L @ (W_o * M_o) + ctx @ V_o + b_o,   reshaped to [..., num_outputs, num_params]

With all-ones masks this is the coupling conditioner of the SCF layers; MADE
(`tf_latentflow.layers.made`) supplies autoregressive masks. The context (for
example an LSTM state over previous time steps, paper section 4.3) enters

  context_layers="all"    every hidden layer and the output layer (V_l for all l), or
  context_layers="first"  the first hidden layer only (V_1; V_l = 0 for l > 1), as the
                          reference code does by concatenating it to the network's input;

masks never apply to it.

Initialisation ("init"):

  "glorot"     Glorot-uniform kernels, the output kernels scaled by `output_scale`
               (a fresh flow starts close to the identity), zero biases;
  "reference"  the reference code's: every kernel and the output bias of a masked
               (MADE) network U(-0.001, 0.001) for hidden layers and
               U(-1/sqrt(fan_in), 1/sqrt(fan_in)) for the output layer with zero
               hidden biases (TextFlow MADE.py, alt_init); every kernel of an unmasked
               (coupling) network U(-0.07, 0.07), zero biases (TextFlow common.py).
"""

import keras
import numpy as np
import tensorflow as tf

__all__ = ["ContextMLP", "CONTEXT_LAYERS", "INITS"]

CONTEXT_LAYERS = ("all", "first")
INITS = ("glorot", "reference")


def _matmul_last_axis(x, kernel):
    """`x [..., I] @ kernel [I, O] -> [..., O]`.

    Not `tf.tensordot`: with an unknown batch size it computes its transpose
    permutation at run time, and inside a `tf.while_loop` (the IAF-in-time
    density) the gradient then needs that permutation as a loop value, which XLA
    refuses ("must be a compile-time constant").
    """
    if x.shape.rank == 2:
        return tf.matmul(x, kernel)
    out = tf.matmul(tf.reshape(x, [-1, kernel.shape[0]]), kernel)
    out = tf.reshape(out, tf.concat([tf.shape(x)[:-1], [kernel.shape[-1]]], 0))
    if x.shape.rank is not None:
        out.set_shape(x.shape[:-1].concatenate([kernel.shape[-1]]))
    return out


@keras.saving.register_keras_serializable(package="tf_latentflow")
class ContextMLP(keras.layers.Layer):
    """Dense network `[..., D_in] (+ context [..., C]) -> [..., num_outputs, num_params]`.

    Args:
      num_outputs: number of output positions (None: same as the input size).
      num_params: outputs per position (e.g. 5 raw NLSq parameters).
      hidden_units: widths of the hidden layers.
      activation: hidden activation (Keras name or callable).
      output_scale: the output kernel is initialised at `output_scale` times a
        Glorot draw, so a fresh flow starts close to the identity map ("glorot" init).
      context_layers: "all" or "first" (module docstring).
      init: "glorot" or "reference" (module docstring).
    """

    def __init__(self, num_params, num_outputs=None, hidden_units=(100, 100), activation="relu",
                 output_scale=1e-2, context_layers="all", init="glorot", **kwargs):
        super().__init__(**kwargs)
        if num_params < 1:
            raise ValueError(f"num_params must be positive; got {num_params}")
        if context_layers not in CONTEXT_LAYERS:
            raise ValueError(f"context_layers must be one of {CONTEXT_LAYERS}; got {context_layers!r}")
        if init not in INITS:
            raise ValueError(f"init must be one of {INITS}; got {init!r}")
        self.context_layers = context_layers
        self.init = init
        if num_outputs is not None and int(num_outputs) < 1:
            raise ValueError(f"num_outputs must be positive; got {num_outputs}")
        if any(int(u) < 1 for u in hidden_units):
            raise ValueError(f"hidden_units must be positive widths; got {tuple(hidden_units)}")
        self.num_params = int(num_params)
        self.num_outputs = None if num_outputs is None else int(num_outputs)
        self.hidden_units = tuple(int(u) for u in hidden_units)
        self.activation = keras.activations.get(activation)
        self.output_scale = float(output_scale)

    def _masks(self, input_size, num_outputs):
        """One [fan_in, fan_out] 0/1 mask per dense kernel, or None for dense layers."""
        return None

    def build(self, inputs_shape, context_shape=None):
        input_size = inputs_shape[-1]
        if input_size is None:
            raise ValueError(f"{self.name}: the last input axis must be known; got {inputs_shape}")
        self.input_size = int(input_size)
        num_outputs = self.num_outputs if self.num_outputs is not None else self.input_size
        self._resolved_outputs = num_outputs
        self.context_size = None if context_shape is None else int(context_shape[-1])
        widths = (self.input_size,) + self.hidden_units + (num_outputs * self.num_params,)
        masks = self._masks(self.input_size, num_outputs)
        self._mask_constants = [] if masks is None else [
            np.asarray(m, dtype=np.float32) for m in masks]
        self.kernels, self.context_kernels, self.biases = [], [], []
        for i, (fan_in, fan_out) in enumerate(zip(widths[:-1], widths[1:])):
            last = i == len(widths) - 2
            kernel_init, bias_init = self._initializers(fan_in, last)
            self.kernels.append(self.add_weight(shape=(fan_in, fan_out), initializer=kernel_init,
                                                name=f"kernel_{i}"))
            if self.context_size is not None and (i == 0 or self.context_layers == "all"):
                # Its own initializer: a Keras 3 initializer instance draws the same numbers
                # on every call, so sharing the kernel's would copy the kernel's draws.
                context_init, _ = self._initializers(fan_in, last)
                self.context_kernels.append(self.add_weight(
                    shape=(self.context_size, fan_out), initializer=context_init,
                    name=f"context_kernel_{i}"))
            self.biases.append(self.add_weight(shape=(fan_out,), initializer=bias_init,
                                               name=f"bias_{i}"))
        self.built = True

    def _initializers(self, fan_in, last):
        """New (kernel, bias) initializers of one dense layer (module docstring, "init"); one
        pair per weight, never shared (a Keras 3 initializer repeats its draws)."""
        if self.init == "glorot":
            glorot = keras.initializers.GlorotUniform(seed=None)
            return (_scaled(glorot, self.output_scale) if last else glorot), "zeros"
        if self._mask_constants:  # MADE (TextFlow MADE.py with alt_init)
            if last:
                bound = 1.0 / float(np.sqrt(fan_in))
                uniform = keras.initializers.RandomUniform(-bound, bound)
                return uniform, keras.initializers.RandomUniform(-bound, bound)
            return keras.initializers.RandomUniform(-1e-3, 1e-3), "zeros"
        return keras.initializers.RandomUniform(-0.07, 0.07), "zeros"  # TextFlow common.py

    def call(self, inputs, context=None):
        if (context is None) != (self.context_size is None):
            raise ValueError(
                f"{self.name} was built {'with' if self.context_size else 'without'} a context "
                f"input and called {'without' if context is None else 'with'} one")
        h = inputs
        if context is not None:
            context = tf.cast(context, h.dtype)
        last = len(self.kernels) - 1
        for i, (kernel, bias) in enumerate(zip(self.kernels, self.biases)):
            kernel = tf.convert_to_tensor(kernel)
            if self._mask_constants:
                kernel = kernel * tf.constant(self._mask_constants[i], dtype=kernel.dtype)
            h = _matmul_last_axis(h, kernel) + tf.convert_to_tensor(bias)
            if context is not None and i < len(self.context_kernels):
                h = h + _matmul_last_axis(context, tf.convert_to_tensor(self.context_kernels[i]))
            if i < last:
                h = self.activation(h)
        new_shape = tf.concat([tf.shape(h)[:-1], [self._resolved_outputs, self.num_params]], 0)
        out = tf.reshape(h, new_shape)
        if inputs.shape.rank is not None:
            out.set_shape(inputs.shape[:-1].concatenate([self._resolved_outputs, self.num_params]))
        return out

    def compute_output_shape(self, inputs_shape, context_shape=None):
        num_outputs = self.num_outputs if self.num_outputs is not None else inputs_shape[-1]
        return tuple(inputs_shape[:-1]) + (num_outputs, self.num_params)

    def get_config(self):
        config = super().get_config()
        config.update(num_params=self.num_params, num_outputs=self.num_outputs,
                      hidden_units=list(self.hidden_units),
                      activation=keras.activations.serialize(self.activation),
                      output_scale=self.output_scale, context_layers=self.context_layers,
                      init=self.init)
        return config


def _scaled(initializer, scale):
    """An initializer returning `scale` times the draws of `initializer`."""

    def init(shape, dtype=None):
        return initializer(shape, dtype=dtype) * scale

    return init
