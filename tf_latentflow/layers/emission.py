"""The emission model p(x | z, T) of the latent flow VAE (Ziegler & Rush 2019, section 4.2, eq. 4).

Each x_t is emitted independently given the whole latent sequence and T; the
model never sees previous outputs, so all dependencies between symbols must go
through z (the prior carries the dynamics):

    p(x | z, T) = prod_{t<T} p(x_t | z_1:T, T)

    (f_t, b_t) = BiLSTM_2([z_0 ; F(0, T)] .. [z_{T-1} ; F(T-1, T)])     (2 layers, 500 units)
    g_t        = [ z_t ; f_{t-1} ; b_{t+1} ]         f_{-1} = b_T = 0 (the zero initial states)
    o_t        = W_out (P g_t + b_P) + b_out          W_out = E (tied with the input embedding)

    text:  x_t ~ Categorical(logits = o_t)
    music: x_t,n ~ Bernoulli(logits = o_t,n), n < 88

Using the *shifted* BiLSTM states f_{t-1}, b_{t+1} beside z_t itself follows the
reference (harvardnlp/TextFlow, `discreteflow_model.py`,
`GenerativeBlock.apply_bilstm`: the forward outputs shifted down by one with the
initial state in front, the backward outputs shifted up with the initial state
behind; then `DFModel.outp_ff`, a `FeedForwardNet` with one linear hidden layer
and no nonlinearity, whose last layer is the input embedding when tied, and
U(-0.07, 0.07) weights). The reference ties the output layer for music too (its
input layer is x E there as well); so does this layer when given
`tied_embedding`. Dropout of rate `dropout` sits at the reference's locations
'z_before_outp' (on z before the BiLSTM), 'rnn_outp' (between and after the
LSTM layers) and 'outp_ff' (after P); its default locations use none (rate 0).

Padding: the BiLSTM never reads padding (see `inference.StackedBiLSTM`), so
b_{T-1} reads b_T = 0 exactly as the reference's packed sequences do.

Mixed precision: the LSTMs run in the compute dtype; logits and
log-likelihoods are float32.
"""

from __future__ import annotations

import keras
import tensorflow as tf

from tf_latentflow.layers.inference import INIT_RANGE, StackedBiLSTM, SymbolEmbedding
from tf_latentflow.layers.sequence_space import SequenceSpace
from tf_latentflow.seeds import SAMPLING_ALG, as_stateless_seed

__all__ = ["Emission"]


@keras.saving.register_keras_serializable(package="tf_latentflow")
class Emission(keras.layers.Layer):
    """p(x_t | z_1:T, T): a BiLSTM over z and the T-features, then Categorical or Bernoulli logits.

    Args:
      latent_size: H.
      max_length: T_max of the length model, the depth of the T-features.
      vocab_size: text: number of token ids (Categorical). Exactly one of
        vocab_size and num_notes must be given.
      num_notes: music: notes per frame (88 independent Bernoullis).
      hidden_units: units per direction of each LSTM layer (paper: 500).
      num_layers: BiLSTM layers (paper: 2).
      projection_size: size of P g_t (the reference's FeedForwardNet width);
        must equal the embedding size when tied. Default: hidden_units.
      dropout: rate at the reference's emission dropout locations (default 0).
      tied_embedding: a `SymbolEmbedding` (the inference network's input
        layer) whose matrix E [V, projection_size] is the output layer, o = (P g) E^T
        + b_out; None gives an untied dense output layer.
    """

    def __init__(self, latent_size: int = 50, max_length: int | None = None,
                 vocab_size: int | None = None, num_notes: int | None = None,
                 hidden_units: int = 500, num_layers: int = 2, projection_size: int | None = None,
                 dropout: float = 0.0, tied_embedding: SymbolEmbedding | None = None, **kwargs):
        kwargs.setdefault("autocast", False)  # ids stay integers; z, lengths keep their dtypes
        super().__init__(**kwargs)
        space = SequenceSpace.checked("Emission", max_length, vocab_size, num_notes)
        # Keras has no public switch to accept non-tensor positional arguments (NumPy
        # arrays, Python lists of lengths); this is its own (private) flag for that.
        self._allow_non_tensor_positional_args = True  # NumPy inputs are fine
        self.latent_size = int(latent_size)
        self.max_length, self.vocab_size, self.num_notes = space.max_length, space.vocab_size, space.num_notes
        self.is_text, self.num_outputs = space.is_text, space.num_outputs
        self.hidden_units = int(hidden_units)
        self.num_layers = int(num_layers)
        self.projection_size = self.hidden_units if projection_size is None else int(projection_size)
        self.dropout = float(dropout)
        if tied_embedding is not None and (tied_embedding.num_symbols != self.num_outputs
                                           or tied_embedding.size != self.projection_size):
            raise ValueError(f"Emission: tied embedding is [{tied_embedding.num_symbols}, "
                             f"{tied_embedding.size}], needs [{self.num_outputs}, {self.projection_size}]")
        self.tied_embedding = tied_embedding
        policy = self.dtype_policy
        # A new initializer per weight: a Keras 3 initializer instance repeats its draws.
        uniform = lambda: keras.initializers.RandomUniform(-INIT_RANGE, INIT_RANGE)  # noqa: E731
        self.z_dropout = keras.layers.Dropout(self.dropout, name="z_dropout", dtype=policy)
        self.bilstm = StackedBiLSTM(self.hidden_units, self.num_layers, self.dropout, name="bilstm",
                                    dtype=policy)
        self.projection = keras.layers.Dense(self.projection_size, kernel_initializer=uniform(),
                                             name="projection", dtype=policy)
        self.projection_dropout = keras.layers.Dropout(self.dropout, name="projection_dropout", dtype=policy)
        self.output_layer = None if tied_embedding is not None else keras.layers.Dense(
            self.num_outputs, kernel_initializer=uniform(), name="output", dtype=policy)

    @property
    def tie_weights(self) -> bool:
        return self.tied_embedding is not None

    def build(self, input_shape=None):
        self.bilstm.build((None, None, self.latent_size + 2 * self.max_length))
        self.projection.build((None, None, self.latent_size + 2 * self.hidden_units))
        if self.tie_weights:
            if not self.tied_embedding.built:
                self.tied_embedding.build()
            self.output_bias = self.add_weight(shape=(self.num_outputs,), name="output_bias",
                                               initializer="zeros")
        else:
            self.output_layer.build((None, None, self.projection_size))
        self.built = True

    def logits(self, z, lengths, training=False, skip_padding=False):
        """float32 logits [N, T, V] (text) or [N, T, num_notes] (music); meaningless at padding.

        z: float [N, T, H] (values at padding steps are never read); lengths int [N].
        skip_padding: the BiLSTM stops after the longest length (`StackedBiLSTM`), for
        sampling: the same logits, faster when T is padded beyond every length.
        """
        lengths = tf.cast(tf.convert_to_tensor(lengths), tf.int32)
        z = tf.cast(tf.convert_to_tensor(z), self.compute_dtype)
        valid = tf.sequence_mask(lengths, tf.shape(z)[1], dtype=z.dtype)[..., tf.newaxis]
        z = z * valid
        f, b = self.bilstm(self.z_dropout(z, training=training), lengths, training=training,
                           t_depth=self.max_length,  # T-features as kernel rows (StackedBiLSTM)
                           skip_padding=skip_padding)
        # f_{t-1} (zero initial state at t = 0) and b_{t+1} (b is zero at t >= T, so b_T = 0).
        f_prev = tf.pad(f[:, :-1], [[0, 0], [1, 0], [0, 0]])
        b_next = tf.pad(b[:, 1:], [[0, 0], [0, 1], [0, 0]])
        g = tf.concat([z, f_prev, b_next], axis=-1)
        p = self.projection_dropout(self.projection(g), training=training)
        if self.tie_weights:
            out = self.tied_embedding.attend(p) + tf.cast(self.output_bias, p.dtype)
        else:
            out = self.output_layer(p)
        return tf.cast(out, tf.float32)

    def call(self, z, lengths, training=False):
        return self.logits(z, lengths, training=training)

    def log_prob(self, x, z, lengths, training=False):
        """log p(x_t | z, T), float32 [N, T]: exactly 0 at padding steps.

        x: int [N, T] ids (text) or [N, T, num_notes] 0/1 frames (music).
        """
        x = tf.convert_to_tensor(x)
        lengths = tf.cast(tf.convert_to_tensor(lengths), tf.int32)
        logits = self.logits(z, lengths, training=training)
        valid = tf.sequence_mask(lengths, tf.shape(logits)[1])
        if self.is_text:
            ids = tf.where(valid, tf.cast(x, tf.int32), tf.zeros_like(x, tf.int32))
            ll = -tf.nn.sparse_softmax_cross_entropy_with_logits(labels=ids, logits=logits)
        else:
            frames = tf.where(valid[..., tf.newaxis], tf.cast(x, tf.float32), 0.0)
            ll = -tf.reduce_sum(tf.nn.sigmoid_cross_entropy_with_logits(labels=frames, logits=logits),
                                axis=-1)
        return tf.where(valid, ll, tf.zeros_like(ll))

    def sample(self, z, lengths, seed=None):
        """x ~ p(x | z, T), all steps at once: int32 [N, T] (text) or [N, T, num_notes] (music).

        Exactly 0 at padding steps. seed: int or stateless [2] seed (None: fresh). The
        BiLSTM runs up to the longest length only (`logits(skip_padding=True)`).
        """
        lengths = tf.cast(tf.convert_to_tensor(lengths), tf.int32)
        logits = self.logits(z, lengths, training=False, skip_padding=True)
        seed = as_stateless_seed(seed)
        valid = tf.sequence_mask(lengths, tf.shape(logits)[1])
        if self.is_text:
            flat = tf.reshape(logits, [-1, self.num_outputs])
            x = tf.random.stateless_categorical(flat, 1, seed=seed, dtype=tf.int32)
            x = tf.reshape(x, tf.shape(logits)[:2])
            return tf.where(valid, x, tf.zeros_like(x))
        u = tf.random.stateless_uniform(tf.shape(logits), seed=seed, dtype=tf.float32, alg=SAMPLING_ALG)
        x = tf.cast(u < tf.sigmoid(logits), tf.int32)
        return tf.where(valid[..., tf.newaxis], x, tf.zeros_like(x))

    def get_config(self):
        # A tied embedding is a shared layer: the owning model re-creates the tie.
        return {**super().get_config(), "latent_size": self.latent_size, "max_length": self.max_length,
                "vocab_size": self.vocab_size, "num_notes": self.num_notes,
                "hidden_units": self.hidden_units, "num_layers": self.num_layers,
                "projection_size": self.projection_size, "dropout": self.dropout}
