"""The LSTM language-model baseline (Ziegler & Rush 2019, sections 5.1-5.2, tables 1 and 3).

An autoregressive model of a discrete sequence x_0..x_{T-1} given its length T,
with the same T-conditioning as the latent flow model (appendix D):

  log p(x) = log p(T) + sum_{t<T} log p(x_t | x_<t, T)

  e_t  = [ E(x_{t-1}) ; F(t, T) ]       E(x_{-1}) = s, a learned start vector
  h_t  = LSTM_2(LSTM_1(e_0..e_t))       (2 layers, 500 units; dropout on E(.) and
                                         after each layer, as in the reference)
  o_t  = W_out (P h_t + b_P) + b_out    W_out = E (weight tying, E: [V, 500])

  text:  x_t ~ Categorical(logits = o_t)               (V = vocabulary size)
  music: x_t,n ~ Bernoulli(logits = o_t,n), n < 88     (independent notes)

where F(t, T) = one_hot(t) ++ one_hot(T-1-t) (`layers.t_features`, depth =
LengthModel.max_length) and, for music, E(x) = x E (the frame is a 0/1 vector
of 88 notes, so the "embedding" is the sum of the rows of the active notes).

Relation to the reference (harvardnlp/TextFlow, `baseline_model.py`, `LSTMModel`,
with `main.py` and `config.py`): same layer sizes (embedding 500, 2 x 500 LSTM),
the output FeedForwardNet = one linear map to the embedding size followed by the
tied (transposed) embedding plus a bias, dropout on the embeddings, between the
LSTM layers and on the LSTM output (README: `--dropout_p 0.1` for every
baseline run; the default 0.2 of `config.py` is for the flow models), Xavier
initial embeddings and a U(-0.07, 0.07) projection (the LSTMs keep Keras's
initialisers). The reference's 89th "pad" note column for music is not kept
(its target is 0 at every valid step). One deliberate difference:
the reference predicts x_0 from the zero initial LSTM state, i.e. from the output
biases alone, so its first symbol is not conditioned on T; here step 0 reads the
start vector s together with F(0, T), so every step sees T. A start vector of
zeros is, for music, exactly the "previous frame = silence" input.

The reported NLL includes the length term: `nll(x, lengths)` returns
-log p(x | T) - log p(T) in nats per sequence (`include_length=False` drops
-log p(T)); the paper's units divide by T + 1 (see `evaluation`).
"""

from __future__ import annotations

import keras
import tensorflow as tf
from keras import ops

from tf_latentflow.layers.length_model import LengthModel
from tf_latentflow.layers.lstm import FastLSTM
from tf_latentflow.layers.sequence_space import SequenceSpace
from tf_latentflow.seeds import SAMPLING_ALG, as_stateless_seed as _as_seed

__all__ = ["LSTMBaseline"]

INIT_RANGE = 0.07  # reference `common.FeedForwardNet.reset_parameters`


@keras.saving.register_keras_serializable(package="tf_latentflow")
class LSTMBaseline(keras.Model):
    """LSTM language model conditioned on the length T, for text or music.

    Args:
      max_length: T_max of the length model; also the depth of the one-hot
        T-features, so every length must be <= max_length.
      vocab_size: text: number of token ids (Categorical output). Exactly one of
        vocab_size and num_notes must be given.
      num_notes: music: notes per frame (88 for the paper's piano rolls;
        independent Bernoulli outputs).
      embedding_size: input embedding size (500), also the projection size of
        the output layer.
      hidden_units: units of each LSTM layer (500).
      num_layers: LSTM layers (2).
      dropout: dropout rate on the embeddings, between the LSTM layers and on
        the LSTM output (0.1, the reference's baseline runs).
      tie_weights: the output layer uses the transposed input embedding (True).
      length_model: a `layers.LengthModel` with max_length == max_length; by
        default a uniform one, to be replaced by assigning
        `model.length_model.probs` (the probabilities are a weight of the
        model, saved and restored with it).

    Inputs of `call`: a batch dict {"x", "lengths", ...} or a tuple (x, lengths);
    x is int [B, T] token ids (text) or a {0, 1} [B, T, num_notes] piano roll
    (music, any numeric dtype). Values at padding steps t >= T are ignored.
    """

    def __init__(self, max_length: int, vocab_size: int | None = None, num_notes: int | None = None,
                 embedding_size: int = 500, hidden_units: int = 500, num_layers: int = 2,
                 dropout: float = 0.1, tie_weights: bool = True,
                 length_model: LengthModel | None = None, **kwargs):
        super().__init__(**kwargs)
        space = SequenceSpace.checked("LSTMBaseline", max_length, vocab_size, num_notes)
        if int(num_layers) < 1 or not 0.0 <= float(dropout) < 1.0:
            raise ValueError(f"LSTMBaseline: bad num_layers={num_layers} or dropout={dropout}")
        self.max_length, self.vocab_size, self.num_notes = space.max_length, space.vocab_size, space.num_notes
        self.is_text, self.num_outputs = space.is_text, space.num_outputs
        self.embedding_size = int(embedding_size)
        self.hidden_units = int(hidden_units)
        self.num_layers = int(num_layers)
        self.dropout = float(dropout)
        self.tie_weights = bool(tie_weights)

        self.length_model = LengthModel.for_model("LSTMBaseline", self.max_length, length_model)

        policy = self.dtype_policy
        self.input_dropout = keras.layers.Dropout(self.dropout, name="input_dropout", dtype=policy)
        self.lstm_layers = [
            FastLSTM(self.hidden_units, name=f"lstm_{i}", dtype=policy) for i in range(self.num_layers)]
        self.lstm_dropouts = [keras.layers.Dropout(self.dropout, name=f"lstm_dropout_{i}", dtype=policy)
                              for i in range(self.num_layers)]
        # A new initializer per weight: a Keras 3 initializer instance repeats its draws.
        uniform = lambda: keras.initializers.RandomUniform(-INIT_RANGE, INIT_RANGE)  # noqa: E731
        self.projection = keras.layers.Dense(self.embedding_size, kernel_initializer=uniform(),
                                             name="projection", dtype=policy)
        self.output_layer = None if self.tie_weights else keras.layers.Dense(
            self.num_outputs, kernel_initializer=uniform(), name="output", dtype=policy)
        self.build()

    # -- weights ---------------------------------------------------------------------------

    @property
    def input_size(self) -> int:
        """Size of the LSTM input e_t: embedding ++ two one-hots of depth max_length."""
        return self.embedding_size + 2 * self.max_length

    def build(self, input_shape=None):
        """Create every weight; all shapes follow from the constructor arguments."""
        self.embeddings = self.add_weight(
            shape=(self.num_outputs, self.embedding_size), name="embeddings",
            initializer=keras.initializers.GlorotUniform())
        self.start = self.add_weight(shape=(self.embedding_size,), name="start",
                                     initializer="zeros")
        size = self.input_size
        for layer in self.lstm_layers:
            layer.build((None, None, size))
            size = self.hidden_units
        self.projection.build((None, self.hidden_units))
        if self.tie_weights:
            self.output_bias = self.add_weight(shape=(self.num_outputs,), name="output_bias",
                                               initializer="zeros")
        else:
            self.output_layer.build((None, self.embedding_size))
        self.built = True

    # -- pieces shared by the parallel pass and the sampler ---------------------------------

    def _embed(self, x):
        """E(x) in the compute dtype: rows of `embeddings` (text) or x @ embeddings (music)."""
        emb = ops.cast(self.embeddings, self.compute_dtype)
        if self.is_text:
            return tf.gather(emb, tf.cast(x, tf.int32))
        return tf.matmul(ops.cast(x, self.compute_dtype), emb)

    def _output_logits(self, h):
        """float32 logits o = W_out(P h + b_P) + b_out from LSTM outputs h [..., H]."""
        proj = self.projection(h)
        if self.tie_weights:
            emb = ops.cast(self.embeddings, self.compute_dtype)
            logits = tf.matmul(proj, emb, transpose_b=True) + ops.cast(self.output_bias, self.compute_dtype)
        else:
            logits = self.output_layer(proj)
        return tf.cast(logits, tf.float32)

    def _clean(self, x, lengths):
        """x with every padding step (t >= T) set to 0, so padded values cannot matter."""
        mask = tf.sequence_mask(lengths, tf.shape(x)[1])
        if not self.is_text:
            mask = mask[..., tf.newaxis]
        return tf.where(mask, x, tf.zeros_like(x))

    @staticmethod
    def _unpack(inputs):
        if isinstance(inputs, dict):
            return inputs["x"], inputs["lengths"]
        x, lengths = inputs
        return x, lengths

    # -- parallel pass -----------------------------------------------------------------------

    def logits(self, x, lengths, training=False):
        """float32 logits [B, T, V] (text) or [B, T, num_notes] (music) of p(x_t | x_<t, T).

        Logits at padding steps are defined but meaningless.
        """
        x = tf.convert_to_tensor(x)
        lengths = tf.cast(tf.convert_to_tensor(lengths), tf.int32)
        steps = tf.shape(x)[1]
        with tf.control_dependencies([tf.debugging.assert_less_equal(
                tf.reduce_max(tf.concat([lengths, [0]], 0)), steps,
                message="LSTMBaseline: a length exceeds the time dimension of x")]):
            x = self._clean(x, lengths)
        emb = self._embed(x)  # [B, T, E]
        start = tf.broadcast_to(ops.cast(self.start, self.compute_dtype),
                                tf.stack([tf.shape(emb)[0], 1, self.embedding_size]))
        prev = tf.concat([start, emb[:, :-1]], axis=1)  # E(x_{t-1}), E(x_{-1}) = s
        prev = self.input_dropout(prev, training=training)
        h = prev
        for i, (layer, drop) in enumerate(zip(self.lstm_layers, self.lstm_dropouts)):
            # the first layer's T-features enter as rows of its kernel (FastLSTM.t_feature_rows)
            rows = layer.t_feature_rows(lengths, steps, self.max_length) if i == 0 else None
            h = drop(layer(h, t_rows=rows), training=training)
        return self._output_logits(h)

    def call(self, inputs, training=False):
        """Keras entry point: `logits(x, lengths)` of a batch dict or (x, lengths)."""
        x, lengths = self._unpack(inputs)
        return self.logits(x, lengths, training=training)

    def log_prob_steps(self, x, lengths, training=False):
        """float32 [B, T]: log p(x_t | x_<t, T) at valid steps, exactly 0 at padding steps."""
        x = tf.convert_to_tensor(x)
        lengths = tf.cast(tf.convert_to_tensor(lengths), tf.int32)
        logits = self.logits(x, lengths, training=training)
        x = self._clean(x, lengths)
        if self.is_text:
            ll = -tf.nn.sparse_softmax_cross_entropy_with_logits(labels=tf.cast(x, tf.int32),
                                                                 logits=logits)
        else:
            ll = -tf.reduce_sum(tf.nn.sigmoid_cross_entropy_with_logits(
                labels=tf.cast(x, tf.float32), logits=logits), axis=-1)
        valid = tf.sequence_mask(lengths, tf.shape(x)[1])
        return tf.where(valid, ll, tf.zeros_like(ll))

    def nll(self, x, lengths, training=False, include_length: bool = True):
        """Exact -log p(x) in nats, float32 [B].

          nll = -sum_{t<T} log p(x_t | x_<t, T)  -  log p(T)

        The second term (from `self.length_model`) is included by default, as in
        the reference's reported numbers; `include_length=False` gives
        -log p(x | T). Divide by T + 1 for the paper's units (`evaluation`).
        """
        lengths = tf.cast(tf.convert_to_tensor(lengths), tf.int32)
        nll = -tf.reduce_sum(self.log_prob_steps(x, lengths, training=training), axis=1)
        if include_length:
            nll = nll - self.length_model.log_prob(lengths)
        return nll

    # -- the SequenceModel interface (tf_latentflow.sequence_model) -------------------------

    exact_likelihood = True  # -log p(x) is computed exactly; num_samples does not apply

    def loss_terms(self, x, lengths, *, kl_weight=1.0, num_samples: int = 1, seed=None,
                   training=False):
        """{"loss": -log p(x), "kl": 0}, float32 [B]. kl_weight, num_samples and seed do not
        apply (no latent variable); dropout draws from the layers' own seed generators."""
        del kl_weight, num_samples, seed
        loss = self.nll(x, lengths, training=training)
        return {"loss": loss, "kl": tf.zeros_like(loss)}

    def nll_terms(self, x, lengths, *, num_samples: int = 50, seed=None, chunk_size: int | None = None):
        """{"nll": -log p(x), "reconstruction": -log p(x | T), "kl": 0}, float32 [B], exact
        (num_samples, seed and chunk_size do not apply); no dropout."""
        del num_samples, seed, chunk_size
        lengths = tf.cast(tf.convert_to_tensor(lengths), tf.int32)
        reconstruction = self.nll(x, lengths, include_length=False)
        return {"nll": reconstruction - self.length_model.log_prob(lengths),
                "reconstruction": reconstruction, "kl": tf.zeros_like(reconstruction)}

    # -- sampling ---------------------------------------------------------------------------

    def sample(self, num_samples, lengths=None, seed=None, max_length=None):
        """Draw sequences serially in t inside the graph (a tf.while_loop over the LSTM layers' `step`).

        Args:
          num_samples: N (int or scalar tensor).
          lengths: int [N] or a scalar (the same T for all); drawn from
            `length_model` when None.
          seed: stateless seed, an int or int [2]; the same seed gives the same
            sequences. None draws a fresh seed (not reproducible).
          max_length: the padded time dimension of the result (static when a
            Python int); default max(lengths). Must be >= every length. The loop
            stops after the longest length: padding beyond it costs no step.

        Returns:
          (x, lengths): x int32 [N, T] token ids (text) or int32 [N, T, num_notes]
          in {0, 1} (music), zero at padding steps; lengths int32 [N].
        """
        seed = _as_seed(seed)
        length_seed, step_seed = tf.unstack(tf.random.experimental.stateless_split(seed, 2))
        num_samples = tf.cast(num_samples, tf.int32)
        if lengths is None:
            lengths = self.length_model.sample(num_samples, seed=length_seed)
        lengths = tf.cast(tf.convert_to_tensor(lengths), tf.int32)
        lengths = tf.broadcast_to(lengths, tf.reshape(num_samples, [1]))
        if max_length is None:
            steps = tf.reduce_max(tf.concat([lengths, [0]], 0))
        else:
            steps = tf.cast(max_length, tf.int32)
        checks = [tf.debugging.assert_less_equal(lengths, steps,
                                                 message="LSTMBaseline.sample: a length exceeds max_length"),
                  tf.debugging.assert_non_negative(lengths)]
        with tf.control_dependencies(checks):
            steps = tf.identity(steps)

        dtype = self.compute_dtype
        cells = self.lstm_layers
        zeros = tf.zeros(tf.stack([num_samples, self.hidden_units]), dtype)
        states = tuple((zeros, zeros) for _ in cells)
        prev = tf.broadcast_to(ops.cast(self.start, dtype), tf.stack([num_samples, self.embedding_size]))
        event_shape = [] if self.is_text else [self.num_outputs]
        out = tf.TensorArray(tf.int32, size=steps, element_shape=tf.TensorShape([None] + event_shape))

        def body(t, prev, states, out):
            h = prev
            new_states = []
            for i, (cell, (h_state, c_state)) in enumerate(zip(cells, states)):
                row = cell.t_feature_rows_at(t, lengths, self.max_length) if i == 0 else None
                h, (h_new, c_new) = cell.step(h, [h_state, c_state], t_row=row)
                new_states.append((h_new, c_new))
            logits = self._output_logits(h)  # [N, V] float32
            seed_t = tf.random.experimental.stateless_fold_in(step_seed, tf.cast(t, tf.int64))
            if self.is_text:
                x_t = tf.random.stateless_categorical(logits, 1, seed=seed_t, dtype=tf.int32)[:, 0]
                valid = t < lengths
            else:
                u = tf.random.stateless_uniform(tf.shape(logits), seed=seed_t, dtype=tf.float32,
                                                alg=SAMPLING_ALG)
                x_t = tf.cast(u < tf.sigmoid(logits), tf.int32)
                valid = (t < lengths)[:, tf.newaxis]
            x_t = tf.where(valid, x_t, tf.zeros_like(x_t))
            return t + 1, self._embed(x_t), tuple(new_states), out.write(t, x_t)

        # The loop stops after the longest length (at least one step, so that the stack
        # fills the steps never computed with zeros): a padded time axis (the exporter's
        # XLA buckets) costs no LSTM steps. maximum_iterations bounds it for XLA.
        limit = tf.minimum(steps, tf.maximum(tf.reduce_max(tf.concat([lengths, [0]], 0)), 1))
        _, _, _, out = tf.while_loop(lambda t, *_: t < limit, body,
                                     (tf.constant(0, tf.int32), prev, states, out),
                                     maximum_iterations=steps)
        x = out.stack()  # [T, N, ...]
        x = tf.transpose(x, [1, 0] + list(range(2, 2 + len(event_shape))))
        if isinstance(max_length, int):
            x.set_shape([None, max_length] + event_shape)
        return x, lengths

    # -- serialisation ----------------------------------------------------------------------

    def get_config(self):
        """Constructor arguments; the length probabilities travel with the weights."""
        base = super().get_config()
        return {**base, "max_length": self.max_length, "vocab_size": self.vocab_size,
                "num_notes": self.num_notes, "embedding_size": self.embedding_size,
                "hidden_units": self.hidden_units, "num_layers": self.num_layers,
                "dropout": self.dropout, "tie_weights": self.tie_weights}
