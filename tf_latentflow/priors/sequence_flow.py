"""Flow priors over latent sequences z_1:T (paper section 4.3).

Base noise eps_t ~ N(0, I_H) for t < T. Within step t a multilayer flow
f_t = HiddenFlowStack (AF, SCF or elementwise), conditioned on a context c_t,
maps eps_t to z_t. The prior's variants differ in what c_t reads:

  time="af"    c_t = LSTM(z_<t, T)    z_t = f(eps_t; c_t)
      density  one LSTM pass over z, then eps_t = f^{-1}(z_t; c_t) for all t at once
      sampling serial over t (tf.while_loop): c_t needs z_<t
  time="iaf"   c_t = LSTM(eps_<t, T)  z_t = f(eps_t; c_t)
      sampling one LSTM pass over the known eps, then z_t for all t at once
      density  serial over t: c_t needs eps_<t = f^{-1}(z_<t; c_<t)
  time="none"  c_t = T-features of step t (the paper's "AF only" row): both parallel

The IAF in time is the inverse of an AF in time (an AF over eps with the
within-step flow inverted), written out here as which sequence the LSTM reads.
Within a step the formula direction of the scalar map serves the density and
its inverse serves sampling, for every variant.

    log p(z_1:T | T) = sum_{t<T} [ log N(eps_t; 0, I) + log|det d eps_t / d z_t| ]

`log_prob` returns the per-step terms `[B, T]` (0 at padding steps t >= T).
"""

import keras
import tensorflow as tf

from tf_latentflow.layers.t_features import t_features
from tf_latentflow.layers.hidden_flow import HiddenFlowStack
from tf_latentflow.priors.gaussian import standard_normal_log_prob, step_mask
from tf_latentflow.priors.serial_scan import serial_loop, serial_scan
from tf_latentflow.priors.time_conditioner import TimeConditioner
from tf_latentflow.seeds import SAMPLING_ALG, as_stateless_seed

__all__ = ["SequenceFlowPrior", "TIME_FLOWS"]

TIME_FLOWS = ("af", "iaf", "none")


@keras.saving.register_keras_serializable(package="tf_latentflow")
class SequenceFlowPrior(keras.layers.Layer):
    """A normalizing-flow prior over `[B, T, H]` latent sequences, conditioned on T.

    Args:
      latent_size: H (paper: 50).
      max_length: depth of the T-features (the length model's maximum length).
      time: "af", "iaf" or "none" (see the module docstring).
      hidden: within-step flow, "af", "scf" or "elementwise".
      scalar_map: "nlsq" (default) or "affine".
      lstm_units, lstm_layers: the LSTM over time (paper: 2 x 500).
      num_flow_layers: layers of the within-step flow (paper: 5).
      flow_hidden_units: conditioner widths (paper: MADE 2 x 100).
      lstm_dropout: dropout on the time LSTM's outputs in training (reference: 0.2).
      flow_context_layers, flow_init: the conditioners' context routing ("all" or
        "first") and initialisation ("glorot" or "reference"), see `layers.ContextMLP`.
    """

    def __init__(self, latent_size=50, max_length=None, time="af", hidden="af", scalar_map="nlsq",
                 lstm_units=500, lstm_layers=2, num_flow_layers=5, flow_hidden_units=(100, 100),
                 lstm_dropout=0.0, flow_context_layers="all", flow_init="glorot", **kwargs):
        kwargs.setdefault("autocast", False)  # flow math keeps the caller's dtype (float32)
        super().__init__(**kwargs)
        if max_length is None:
            raise ValueError("max_length (the T-feature depth) is required")
        if time not in TIME_FLOWS:
            raise ValueError(f"time must be one of {TIME_FLOWS}; got {time!r}")
        self.latent_size = int(latent_size)
        self.max_length = int(max_length)
        self.time = time
        self.hidden = hidden
        self.scalar_map = scalar_map
        self.lstm_units = int(lstm_units)
        self.lstm_layers = int(lstm_layers)
        self.num_flow_layers = int(num_flow_layers)
        self.flow_hidden_units = tuple(int(u) for u in flow_hidden_units)
        self.lstm_dropout = float(lstm_dropout)
        self.flow_context_layers = flow_context_layers
        self.flow_init = flow_init
        if time == "none":
            self.conditioner = None
            context_size = 2 * self.max_length
        else:
            self.conditioner = TimeConditioner(self.latent_size, self.max_length,
                                               units=self.lstm_units, num_layers=self.lstm_layers,
                                               dropout=self.lstm_dropout, name="time_lstm",
                                               dtype=self.dtype_policy)
            context_size = self.lstm_units
        self.flow = HiddenFlowStack(self.latent_size, kind=hidden, num_layers=self.num_flow_layers,
                                    hidden_units=self.flow_hidden_units, scalar_map=scalar_map,
                                    context_size=context_size, context_layers=flow_context_layers,
                                    init=flow_init, name="hidden_flow", dtype=self.dtype_policy)

    def build(self, input_shape=None):
        if self.conditioner is not None and not self.conditioner.built:
            self.conditioner.build()
        self.flow.build()
        self.built = True

    # -- the two ways of running the flow over time ---------------------------------------

    def _apply_flow(self, direction, x, context):
        """Within-step flow on every step at once: `[B, T, H]`, `[B, T, C]` -> y, log-det `[B, T]`."""
        shape = tf.shape(x)
        flat_x = tf.reshape(x, [-1, self.latent_size])
        flat_c = tf.reshape(context, tf.stack([-1, tf.shape(context)[-1]]))
        bijector = self.flow.bijector
        fn = bijector.forward_and_log_det if direction == "forward" else bijector.inverse_and_log_det
        y, log_det = fn(flat_x, context=flat_c)
        return tf.reshape(y, shape), tf.reshape(log_det, shape[:2])

    def _parallel(self, direction, x, lengths, training=False):
        """Contexts from the known `x` itself (shifted), then the flow for all t in one pass.

        The time LSTM runs over every step, padding included, in sampling too: with it
        stopped after the longest length (a loop with a data-dependent trip count, as
        in `_serial`), XLA's algebraic simplifier took time exponential in the number
        of within-step flow layers that follow it, and never finished with the paper's 5.
        """
        if self.conditioner is None:
            context = t_features(lengths, tf.shape(x)[1], self.max_length, dtype=x.dtype)
        else:
            context = self.conditioner.parallel(x, lengths, training=training)
        return self._apply_flow(direction, x, context)

    def _serial(self, direction, y, lengths, training=False, skip_padding=False):
        """Output x built step by step: c_t from x_<t, then x_t = flow(y_t; c_t).

        In training the density (IAF in time) runs through `serial_scan`, whose
        gradient needs no per-step weight accumulators; everything else (evaluation,
        sampling) through a plain `tf.while_loop`, which stores nothing for a
        backward pass (and is still differentiable, by TensorFlow, only slower).
        Both run the same `step`, with the T-features and (in training) the
        dropout masks of all steps drawn before the loop. skip_padding (sampling, not
        training): the loop stops after the longest length.
        """
        batch, steps = tf.shape(y)[0], tf.shape(y)[1]
        bijector = self.flow.bijector
        fn = bijector.forward_and_log_det if direction == "forward" else bijector.inverse_and_log_det
        conditioner = self.conditioner

        def step(carry, elems):
            previous, states = carry
            y_t, features_t, masks_t = elems
            context, states = conditioner.step(previous, features_t, states, masks=masks_t)
            x_t, log_det_t = fn(y_t, context=context)
            return (x_t, states), (x_t, log_det_t)

        carry = (conditioner.start_input(batch, y.dtype), conditioner.initial_state(lengths))
        elems = (tf.transpose(y, [1, 0, 2]), conditioner.step_features(lengths, steps, y.dtype),
                 conditioner.dropout_masks(batch, steps, y.dtype) if training else ())
        spec = (tf.TensorSpec([None, self.latent_size], y.dtype), tf.TensorSpec([None], y.dtype))
        if training:
            outputs, log_dets = serial_scan(step, carry, elems, spec)
        else:
            longest = tf.reduce_max(lengths) if skip_padding else None
            outputs, log_dets = serial_loop(step, carry, elems, spec, num_steps=longest)
        return tf.transpose(outputs, [1, 0, 2]), tf.transpose(log_dets)

    # -- public interface ------------------------------------------------------------------

    def log_prob(self, z, lengths, training=False):
        """Per-step log p(z_t | z_<t, T), float32 `[B, T]`, 0 at padding steps."""
        if not self.built:
            self.build()
        z = tf.convert_to_tensor(z)
        lengths = tf.cast(lengths, tf.int32)
        valid = step_mask(lengths, tf.shape(z)[1], tf.bool)
        z = tf.where(valid[..., tf.newaxis], z, tf.zeros_like(z))  # padding never reaches the math
        if self.time == "iaf":
            eps, log_det = self._serial("inverse", z, lengths, training=training)
        else:
            eps, log_det = self._parallel("inverse", z, lengths, training=training)
        return tf.where(valid, standard_normal_log_prob(eps) + log_det, tf.zeros_like(log_det))

    def sample(self, lengths, seed=None, max_steps=None):
        """z `[B, T, H]` drawn from the prior for each length (0 at padding steps).

        `max_steps` fixes T (default: the longest length); `seed` is an int or a
        stateless `[2]` seed.
        """
        return self.sample_with_noise(lengths, seed=seed, max_steps=max_steps)[0]

    def sample_with_noise(self, lengths, seed=None, max_steps=None):
        """`(z, eps)`: a prior sample and the base noise it was computed from."""
        if not self.built:
            self.build()
        lengths = tf.cast(lengths, tf.int32)
        steps = tf.reduce_max(lengths) if max_steps is None else tf.cast(max_steps, tf.int32)
        eps = tf.random.stateless_normal(
            tf.stack([tf.shape(lengths)[0], steps, self.latent_size]), seed=as_stateless_seed(seed),
            alg=SAMPLING_ALG)
        valid = step_mask(lengths, steps, tf.bool)[..., tf.newaxis]
        eps = tf.where(valid, eps, tf.zeros_like(eps))
        z = self.transform(eps, lengths, skip_padding=True)
        return tf.where(valid, z, tf.zeros_like(z)), eps

    def transform(self, eps, lengths, skip_padding=False):
        """z = f(eps; T): the prior's flow applied to given base noise `[B, T, H]`.

        Serial over t for time="af", one pass otherwise. skip_padding: the serial loop
        (time="af") stops after the longest length, as the sampler runs it: the same z
        at every step t < T, other values at the steps that are padding in every row
        (meaningless either way); no effect on the one-pass flows (see `_parallel`).
        """
        if not self.built:
            self.build()
        eps = tf.convert_to_tensor(eps)
        lengths = tf.cast(lengths, tf.int32)
        if self.time == "af":
            return self._serial("forward", eps, lengths, skip_padding=skip_padding)[0]
        return self._parallel("forward", eps, lengths)[0]

    def call(self, z, lengths, training=False):
        return self.log_prob(z, lengths, training=training)

    def get_config(self):
        config = super().get_config()
        config.update(latent_size=self.latent_size, max_length=self.max_length, time=self.time,
                      hidden=self.hidden, scalar_map=self.scalar_map, lstm_units=self.lstm_units,
                      lstm_layers=self.lstm_layers, num_flow_layers=self.num_flow_layers,
                      flow_hidden_units=list(self.flow_hidden_units), lstm_dropout=self.lstm_dropout,
                      flow_context_layers=self.flow_context_layers, flow_init=self.flow_init)
        return config
