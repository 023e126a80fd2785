"""The inference network q(z | x) of the latent flow VAE (Ziegler & Rush 2019, section 4.1, eq. 5).

    q(z_1:T | x) = prod_{t<T} N(z_t; mu_t, diag(sigma_t^2))

    e_t           = [ E(x_t) ; F(t, T) ]                    (input layer ++ T-features, appendix D)
    (f_t, b_t)    = BiLSTM_2(e_0..e_{T-1})                   (2 layers, 500 units per direction)
    [mu_t ; l_t]  = W [f_t ; b_t] + c,    sigma_t = exp(l_t / 2)   (l_t = log sigma_t^2)

    z_t = mu_t + sigma_t * eps_t,  eps_t ~ N(0, I_H)           (reparameterised)
    log q(z_t | x) = -1/2 sum_h [ log(2 pi) + l_t,h + eps_t,h^2 ]

E(x) is a lookup in an embedding matrix E [V, D] for text (token ids) and the
product x E for music (a 0/1 vector of 88 notes, so E(x) sums the rows of the
active notes). `SymbolEmbedding` holds E; the emission model may reuse it as its
(transposed) output layer (weight tying, section 5.1).

Padding. A batch pads sequences to a common length; nothing at a padding step
t >= T may reach a valid step. The forward direction of an LSTM is causal, so
padding at the end is harmless to it; the backward direction is not. Here the
backward LSTM runs forward over each sequence reversed *within its own length*
(`tf.reverse_sequence`), so it starts at x_{T-1} and never reads padding. This
is what the reference obtains with `pack_padded_sequence`.

Relation to the reference (harvardnlp/TextFlow, `discreteflow_model.py`,
`InferenceBlock` and `DFModel.evaluate_x`): same structure (embedding 500,
bidirectional 2 x 500 LSTM over embedding ++ T-features, one linear layer to the
mean and log-variance with U(-0.07, 0.07) weights and zero bias, U(-0.07, 0.07)
embeddings). Dropout of rate `dropout` sits where the reference's dropout
locations 'embedding' and 'rnn_x' put it (on E(x), between the LSTM layers and
on the BiLSTM output); the reference's default locations (`--dlocs prior_rnn`)
use none of them, hence the default 0.

Mixed precision: the LSTMs and the embedding run in the layer's compute dtype;
mu, log sigma^2, z and log q are float32.
"""

from __future__ import annotations

import math

import keras
import tensorflow as tf
from keras import ops

from tf_latentflow.layers.lstm import FastLSTM
from tf_latentflow.layers.sequence_space import SequenceSpace
from tf_latentflow.seeds import as_stateless_seed

__all__ = ["INIT_RANGE", "LOG_VAR_BOUND", "SymbolEmbedding", "StackedBiLSTM", "InferenceNetwork",
           "bound_log_var", "diagonal_normal_log_prob"]

INIT_RANGE = 0.07  # reference: `reset_parameters` of DFModel, InferenceBlock and FeedForwardNet
_LOG_2PI = math.log(2.0 * math.pi)


def _uniform():
    return keras.initializers.RandomUniform(-INIT_RANGE, INIT_RANGE)


# log sigma^2 is kept inside (-LOG_VAR_BOUND, LOG_VAR_BOUND) by a smooth two-sided clamp,
# so sigma = exp(log_var / 2) lies in (e^-15, e^15) and cannot overflow (or make z and
# log q infinite) however far the network's output runs.
LOG_VAR_BOUND = 30.0


def bound_log_var(log_var, bound=LOG_VAR_BOUND):
    """Smooth clamp of l to (-bound, bound): hi - softplus(hi - (lo + softplus(l - lo))).

    The identity up to about e^-(bound - |l|) for |l| well inside the bound (1e-9 at
    |l| = 10), so weights trained before the clamp existed give the same posterior.
    """
    lower = -bound + tf.nn.softplus(log_var + bound)
    return bound - tf.nn.softplus(bound - lower)


def diagonal_normal_log_prob(eps, log_var):
    """sum_h log N(mu_h + sigma_h eps_h; mu_h, sigma_h^2) = -1/2 sum_h [log 2pi + log_var_h + eps_h^2].

    Written with the standardised eps = (z - mu) / sigma, as is exact for
    reparameterised samples (and equal to it as a function of mu and sigma).
    """
    return -0.5 * tf.reduce_sum(_LOG_2PI + log_var + tf.square(eps), axis=-1)


@keras.saving.register_keras_serializable(package="tf_latentflow")
class SymbolEmbedding(keras.layers.Layer):
    """E [num_symbols, size]: input embedding, and optionally the tied output layer.

    `call(x)`: text (`is_text=True`): E[x] for int ids x [...]; music: x E for a
    0/1 (or any real) x [..., num_symbols].  `attend(h)`: h E^T, the logits of a
    tied output layer for h [..., size].  Both in the compute dtype.
    """

    def __init__(self, num_symbols: int, size: int, is_text: bool, **kwargs):
        # autocast=False: inputs keep their dtypes (token ids stay integers)
        kwargs.setdefault("autocast", False)
        super().__init__(**kwargs)
        # Keras has no public switch to accept non-tensor positional arguments (NumPy
        # arrays, Python lists of lengths); this is its own (private) flag for that.
        self._allow_non_tensor_positional_args = True  # NumPy inputs are fine
        self.num_symbols = int(num_symbols)
        self.size = int(size)
        self.is_text = bool(is_text)

    def build(self, input_shape=None):
        self.embeddings = self.add_weight(shape=(self.num_symbols, self.size), name="embeddings",
                                          initializer=_uniform())
        self.built = True

    def call(self, x):
        emb = ops.cast(self.embeddings, self.compute_dtype)
        if self.is_text:
            return tf.gather(emb, tf.cast(x, tf.int32))
        return tf.matmul(tf.cast(x, self.compute_dtype), emb)

    def attend(self, h):
        """h E^T in the compute dtype: [..., size] -> [..., num_symbols]."""
        emb = ops.cast(self.embeddings, self.compute_dtype)
        return tf.matmul(tf.cast(h, self.compute_dtype), emb, transpose_b=True)

    def get_config(self):
        return {**super().get_config(), "num_symbols": self.num_symbols, "size": self.size,
                "is_text": self.is_text}


def _reverse_within_length(x, lengths):
    """x [B, T, ...] with each row's first T_b steps reversed; padding steps stay in place."""
    return tf.reverse_sequence(x, tf.cast(lengths, tf.int32), seq_axis=1, batch_axis=0)


@keras.saving.register_keras_serializable(package="tf_latentflow")
class StackedBiLSTM(keras.layers.Layer):
    """A multi-layer bidirectional LSTM over right-padded sequences that never reads padding.

    Layer i > 0 reads [f^{i-1}_t ; b^{i-1}_t] (as PyTorch's bidirectional LSTM).

      f_t = LSTM_fwd(v_0..v_t)             causal; padding lies after every valid step
      b_t = LSTM_bwd(v_{T-1}..v_t)         run on reverse_sequence(v, T), reversed back

    `call(inputs, lengths, training)` -> (f, b), each [B, T, units] in the compute
    dtype, exactly zero at padding steps. Dropout of rate `dropout` between the
    layers and on the outputs (the reference's 'rnn_x' / 'rnn_outp' locations).
    """

    def __init__(self, units: int, num_layers: int = 2, dropout: float = 0.0, **kwargs):
        super().__init__(**kwargs)
        # Keras has no public switch to accept non-tensor positional arguments (NumPy
        # arrays, Python lists of lengths); this is its own (private) flag for that.
        self._allow_non_tensor_positional_args = True  # NumPy inputs and lengths are fine
        if int(num_layers) < 1 or not 0.0 <= float(dropout) < 1.0:
            raise ValueError(f"StackedBiLSTM: bad num_layers={num_layers} or dropout={dropout}")
        self.units = int(units)
        self.num_layers = int(num_layers)
        self.dropout = float(dropout)
        policy = self.dtype_policy
        # FastLSTM: keras.layers.LSTM's function and weights, the input projection out of the loop.
        self.forward_layers = [FastLSTM(self.units, name=f"forward_{i}", dtype=policy)
                               for i in range(self.num_layers)]
        self.backward_layers = [FastLSTM(self.units, name=f"backward_{i}", dtype=policy)
                                for i in range(self.num_layers)]
        self.dropouts = [keras.layers.Dropout(self.dropout, name=f"dropout_{i}", dtype=policy)
                         for i in range(self.num_layers)]

    def build(self, input_shape):
        size = int(input_shape[-1])
        for fwd, bwd in zip(self.forward_layers, self.backward_layers):
            fwd.build((None, None, size))
            bwd.build((None, None, size))
            size = 2 * self.units
        self.built = True

    def call(self, inputs, lengths, training=False, t_depth=None, skip_padding=False):
        """t_depth: when given, `inputs` lack the T-features of that depth, which the first
        layer adds as rows of its kernels (`FastLSTM.t_feature_rows`): the same result as
        concatenating `t_features(lengths, T, t_depth)` to `inputs`, without building them.

        skip_padding: for sampling: every LSTM stops after the longest length
        (`FastLSTM.inference`, no backward-pass bookkeeping), so the steps that are
        padding in every row are never computed; the same outputs (zero at padding).
        """
        lengths = tf.cast(lengths, tf.int32)
        steps = tf.shape(inputs)[1]
        valid = tf.sequence_mask(lengths, steps, dtype=self.compute_dtype)[..., tf.newaxis]
        h = tf.cast(inputs, self.compute_dtype) * valid
        longest = tf.reduce_max(lengths) if skip_padding else None
        for i, (fwd, bwd, drop) in enumerate(zip(self.forward_layers, self.backward_layers,
                                                 self.dropouts)):
            f_rows = b_rows = None
            if i == 0 and t_depth:
                f_rows = fwd.t_feature_rows(lengths, steps, t_depth)
                # the backward layer reads the reversed sequence, and so its features
                b_rows = _reverse_within_length(bwd.t_feature_rows(lengths, steps, t_depth), lengths)
            reversed_h = _reverse_within_length(h, lengths)  # valid steps first, as in h
            if skip_padding:
                f = fwd.inference(h, longest, t_rows=f_rows)
                b = bwd.inference(reversed_h, longest, t_rows=b_rows)
            else:
                f = fwd(h, t_rows=f_rows, training=training)
                b = bwd(reversed_h, t_rows=b_rows, training=training)
            b = _reverse_within_length(b, lengths)
            f = drop(f, training=training) * valid
            b = drop(b, training=training) * valid
            h = tf.concat([f, b], axis=-1)
        return f, b

    def compute_output_shape(self, input_shape, lengths_shape=None):
        shape = tuple(input_shape[:-1]) + (self.units,)
        return shape, shape

    def get_config(self):
        return {**super().get_config(), "units": self.units, "num_layers": self.num_layers,
                "dropout": self.dropout}


@keras.saving.register_keras_serializable(package="tf_latentflow")
class InferenceNetwork(keras.layers.Layer):
    """q(z | x) = prod_t N(z_t; mu_t, diag sigma_t^2), a BiLSTM over x and the T-features.

    Args:
      latent_size: H (paper: 50).
      max_length: T_max of the length model, the depth of the T-features.
      vocab_size: text: number of token ids. Exactly one of vocab_size and
        num_notes must be given.
      num_notes: music: notes per frame (88).
      embedding_size: D, size of E(x) (paper: 500).
      hidden_units: units per direction of each LSTM layer (paper: 500).
      num_layers: BiLSTM layers (paper: 2).
      dropout: rate on E(x), between the LSTM layers and on their output
        (reference default: 0, see the module docstring).

    Inputs: x int [B, T] ids (text) or [B, T, num_notes] 0/1 frames (music),
    lengths int [B] (every length <= T and <= max_length). Values at padding
    steps are never read.
    """

    def __init__(self, latent_size: int = 50, max_length: int | None = None,
                 vocab_size: int | None = None, num_notes: int | None = None,
                 embedding_size: int = 500, hidden_units: int = 500, num_layers: int = 2,
                 dropout: float = 0.0, **kwargs):
        kwargs.setdefault("autocast", False)  # ids stay integers; z, lengths keep their dtypes
        super().__init__(**kwargs)
        space = SequenceSpace.checked("InferenceNetwork", max_length, vocab_size, num_notes)
        # Keras has no public switch to accept non-tensor positional arguments (NumPy
        # arrays, Python lists of lengths); this is its own (private) flag for that.
        self._allow_non_tensor_positional_args = True  # NumPy inputs are fine
        self.latent_size = int(latent_size)
        self.max_length, self.vocab_size, self.num_notes = space.max_length, space.vocab_size, space.num_notes
        self.is_text = space.is_text
        self.embedding_size = int(embedding_size)
        self.hidden_units = int(hidden_units)
        self.num_layers = int(num_layers)
        self.dropout = float(dropout)
        policy = self.dtype_policy
        self.embedding = SymbolEmbedding(self.vocab_size if self.is_text else self.num_notes,
                                         self.embedding_size, self.is_text, name="embedding", dtype=policy)
        self.embedding_dropout = keras.layers.Dropout(self.dropout, name="embedding_dropout", dtype=policy)
        self.bilstm = StackedBiLSTM(self.hidden_units, self.num_layers, self.dropout, name="bilstm",
                                    dtype=policy)
        # The Gaussian's parameters are computed in float32 whatever the policy.
        self.head = keras.layers.Dense(2 * self.latent_size, kernel_initializer=_uniform(),
                                       bias_initializer="zeros", name="head", dtype="float32")

    def build(self, input_shape=None):
        self.embedding.build()
        self.bilstm.build((None, None, self.embedding_size + 2 * self.max_length))
        self.head.build((None, None, 2 * self.hidden_units))
        self.built = True

    def gaussian_parameters(self, x, lengths, training=False):
        """(mu, log_var), float32 [B, T, H] each; log_var = log sigma^2. Meaningless at padding."""
        x = tf.convert_to_tensor(x)
        lengths = tf.cast(tf.convert_to_tensor(lengths), tf.int32)
        emb = self.embedding_dropout(self.embedding(_zero_padding(x, lengths)), training=training)
        f, b = self.bilstm(emb, lengths, training=training, t_depth=self.max_length)
        params = self.head(tf.cast(tf.concat([f, b], axis=-1), tf.float32))
        mu, log_var = tf.split(params, 2, axis=-1)
        return mu, bound_log_var(log_var)

    def call(self, x, lengths, training=False):
        """(mu, sigma), float32 [B, T, H] each, of q(z_t | x); meaningless at padding steps."""
        mu, log_var = self.gaussian_parameters(x, lengths, training=training)
        return mu, tf.exp(0.5 * log_var)

    def sample_and_log_prob(self, x, lengths, num_samples: int = 1, seed=None, training=False):
        """K reparameterised samples z ~ q(z | x) and their per-step log-densities.

        Returns:
          z: float32 [K, B, T, H], z = mu + sigma * eps, exactly 0 at padding steps;
          log_q: float32 [K, B, T], log q(z_t | x) at valid steps, exactly 0 at padding.
        seed: int or stateless [2] seed (None: a fresh one). The same seed and
        padded shape give the same eps.
        """
        lengths = tf.cast(tf.convert_to_tensor(lengths), tf.int32)
        mu, log_var = self.gaussian_parameters(x, lengths, training=training)
        return self.sample_given(mu, log_var, lengths, num_samples, seed=seed)

    def sample_given(self, mu, log_var, lengths, num_samples: int = 1, seed=None):
        """`sample_and_log_prob` from the Gaussian parameters `gaussian_parameters` gave,
        so that several draws (the importance sampler's chunks) share one encoder pass."""
        lengths = tf.cast(tf.convert_to_tensor(lengths), tf.int32)
        shape = tf.concat([[num_samples], tf.shape(mu)], axis=0)
        eps = tf.random.stateless_normal(shape, seed=as_stateless_seed(seed), dtype=tf.float32)
        valid = tf.sequence_mask(lengths, tf.shape(mu)[1])  # [B, T]
        z = mu + tf.exp(0.5 * log_var) * eps
        z = tf.where(valid[..., tf.newaxis], z, tf.zeros_like(z))
        log_q = diagonal_normal_log_prob(eps, log_var)
        log_q = tf.where(valid, log_q, tf.zeros_like(log_q))
        return z, log_q

    def get_config(self):
        return {**super().get_config(), "latent_size": self.latent_size, "max_length": self.max_length,
                "vocab_size": self.vocab_size, "num_notes": self.num_notes,
                "embedding_size": self.embedding_size, "hidden_units": self.hidden_units,
                "num_layers": self.num_layers, "dropout": self.dropout}


def _zero_padding(x, lengths):
    """x with every padding step (t >= T) set to 0 (ids or frames)."""
    mask = tf.sequence_mask(lengths, tf.shape(x)[1])
    if x.shape.rank == 3:
        mask = mask[..., tf.newaxis]
    return tf.where(mask, x, tf.zeros_like(x))
