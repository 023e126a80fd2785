"""The LSTM over time that conditions each step's flow (paper section 4.3).

For the AF-in-time priors it reads the latents z_<t; for the IAF-in-time prior
the noise eps_<t. At step t its input is the previous vector and the step's
T-features (appendix D):

    s_{-1} = s_start (learned),  input_t = [s_{t-1}, f_t(T)],
    (h_t, state_t) = LSTM(input_t, state_{t-1}),  state_{-1} = tanh(W f_0(T) + b)

so h_t depends on s_<t and T only. `parallel` runs it over a known sequence in
one pass; `initial_state` / `step` run it one step at a time inside a serial
loop, which takes the T-features and the dropout masks of all steps as inputs
(`step_features`, `dropout_masks`), so that a step is a deterministic function
of its inputs (what `serial_scan` needs).
"""

import keras
import tensorflow as tf

from tf_latentflow.layers.t_features import t_feature_rows_at
from tf_latentflow.layers.lstm import FastLSTM

__all__ = ["TimeConditioner"]


@keras.saving.register_keras_serializable(package="tf_latentflow")
class TimeConditioner(keras.layers.Layer):
    """A stacked LSTM over a shifted sequence plus T-features; output size `units`.

    Args:
      input_size: size of each step's vector (H).
      max_length: depth of the T-features (length model's maximum).
      units: LSTM width (paper: 500).
      num_layers: LSTM depth (paper: 2).
      dropout: dropout rate on the output of every LSTM layer in training
        (the reference's `--dlocs prior_rnn`, rate 0.2 by default).
    """

    def __init__(self, input_size, max_length, units=500, num_layers=2, dropout=0.0, **kwargs):
        super().__init__(**kwargs)
        for name, value in (("input_size", input_size), ("max_length", max_length),
                            ("units", units), ("num_layers", num_layers)):
            if int(value) < 1:
                raise ValueError(f"TimeConditioner: {name} must be a positive integer, got {value}")
        if not 0.0 <= float(dropout) < 1.0:
            raise ValueError(f"TimeConditioner: dropout must be in [0, 1), got {dropout}")
        self.input_size = int(input_size)
        self.max_length = int(max_length)
        self.units = int(units)
        self.num_layers = int(num_layers)
        self.dropout = float(dropout)
        policy = self.dtype_policy  # the sublayers compute in this layer's precision
        self.dropouts = [keras.layers.Dropout(self.dropout, name=f"dropout_{i}", dtype=policy)
                         for i in range(self.num_layers)]
        self.lstms = [FastLSTM(self.units, name=f"lstm_{i}", dtype=policy)
                      for i in range(self.num_layers)]
        self.initial_state_net = keras.layers.Dense(2 * self.num_layers * self.units,
                                                    activation="tanh", name="initial_state",
                                                    dtype=policy)

    def build(self, input_shape=None):
        self.start = self.add_weight(shape=(self.input_size,), initializer="zeros", name="start")
        features = 2 * self.max_length
        self.initial_state_net.build((None, features))
        width = self.input_size + features
        for lstm in self.lstms:
            lstm.build((None, None, width))
            width = self.units
        self.built = True

    def initial_state(self, lengths):
        """Per layer `[h, c]`, each `[B, units]`, a learned function of T."""
        # tanh(t_features_at(0) @ W + b) with the features as two rows of W
        net = self.initial_state_net
        kernel = tf.cast(net.kernel, net.compute_dtype)
        flat = tf.tanh(t_feature_rows_at(kernel, 0, lengths, self.max_length)
                       + tf.cast(net.bias, net.compute_dtype))
        parts = tf.split(flat, 2 * self.num_layers, axis=-1)
        return [[parts[2 * i], parts[2 * i + 1]] for i in range(self.num_layers)]

    def start_input(self, batch_size, dtype=tf.float32):
        """s_{-1} broadcast to `[B, input_size]`."""
        return tf.broadcast_to(tf.cast(self.start, dtype), tf.stack([batch_size, self.input_size]))

    def parallel(self, sequence, lengths, training=False):
        """h_t for every t from the known `sequence` `[B, T, input_size]`: `[B, T, units]`."""
        if not self.built:
            self.build()
        batch, steps = tf.shape(sequence)[0], tf.shape(sequence)[1]
        shifted = tf.concat([self.start_input(batch, sequence.dtype)[:, tf.newaxis],
                             sequence[:, :-1]], axis=1)
        h = shifted
        for i, (lstm, dropout, state) in enumerate(zip(self.lstms, self.dropouts,
                                                       self.initial_state(lengths))):
            # the first layer's T-features enter as rows of its kernel (FastLSTM.t_feature_rows)
            rows = lstm.t_feature_rows(lengths, steps, self.max_length) if i == 0 else None
            h = dropout(lstm(h, initial_state=state, t_rows=rows), training=training)
        return h

    def step_features(self, lengths, steps, dtype=tf.float32):
        """The T-features' part of the first LSTM layer's input projection at every step,
        time-major `[steps, B, 4 * units]` (kernel rows, `FastLSTM.t_feature_rows`)."""
        rows = self.lstms[0].t_feature_rows(lengths, steps, self.max_length, dtype=dtype)
        return tf.transpose(rows, [1, 0, 2])

    def dropout_masks(self, batch_size, steps, dtype=tf.float32):
        """Training-mode dropout multipliers for `step`: per layer `[steps, B, units]`,
        0 or 1 / (1 - rate), drawn from each dropout layer's seed generator; `()`
        when the rate is 0."""
        if self.dropout == 0.0:
            return ()
        ones = tf.ones(tf.stack([steps, batch_size, self.units]), dtype)
        return tuple(keras.random.dropout(ones, self.dropout, seed=layer.seed_generator)
                     for layer in self.dropouts)

    def step(self, previous, features, states, masks=()):
        """One step: `(h_t [B, units], new states)` from s_{t-1} `[B, input_size]`, the
        step's slice of `step_features` `[B, 4 * units]` and the layers' `[h, c]` states.

        masks: the step's slice of `dropout_masks` in training, `()` otherwise.
        """
        h = previous
        new_states = []
        for i, (lstm, state) in enumerate(zip(self.lstms, states)):
            h, state = lstm.step(h, state, t_row=features if i == 0 else None)
            new_states.append(list(state))
            if masks:
                h = h * tf.cast(masks[i], h.dtype)
        return h, new_states

    def call(self, sequence, lengths, training=False):
        return self.parallel(sequence, lengths, training=training)

    def get_config(self):
        config = super().get_config()
        config.update(input_size=self.input_size, max_length=self.max_length, units=self.units,
                      num_layers=self.num_layers, dropout=self.dropout)
        return config
