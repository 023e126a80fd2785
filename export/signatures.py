"""The two serving functions of an exported model, built from core TensorFlow ops only.

  sample(num_samples, length, seed) -> {sequences, lengths[, text]}
      T ~ p(T) when length == 0, else T = length for all N sequences; then the
      model's sampler. N is at most `max_samples` (an export setting, default
      1024: one request cannot exhaust a server's memory). Music sequences are
      int32 [N, T, 88] piano rolls of 0/1, text sequences int32 [N, T] token ids
      (0 = padding) plus `text`, the decoded strings. T = the longest drawn
      length (at least 1). `sequences` and `lengths` are exactly what log_prob
      takes: log_prob(sequences=s["sequences"], lengths=s["lengths"]) scores a draw.

  log_prob(sequences, lengths) -> {nll, nll_per_step}
      sequences int32 ([N, T, 88] piano rolls or [N, T] token ids), lengths int32 [N].
      nll: -log p(x) in nats including -log p(T): exact for the LSTM baseline,
      importance-sampled (the run's sample count, a fixed seed) for the flow
      models, each sequence scored alone at its own length
      (`score_each_sequence`): its value never depends on the other sequences
      of the request or on its padding, and memory grows with one sequence,
      not with the request. nll_per_step: nll / (T + 1) in the paper's unit: nats per step
      (music), bits per character (text). A length that p(T) gives probability
      0 (T = 0 for text, whose sentences are never empty) is refused: its NLL
      would be infinite.

Every invalid request fails inside the graph with a `tf.debugging` assertion
whose message names the input (`num_samples`, `length`, `sequences`,
`lengths`).

Speed: with XLA (`jit_compile`, the default for music) the sampler runs under XLA (the flow priors'
serial loops are several times faster). XLA needs a static number of time
steps, so the sampler is compiled for a set of padded lengths ("buckets", by
default the training grid `data.padded_length(T, 16)` up to the model's maximum
length: multiples of 16 up to 256, of 32 up to 512, ..., see `default_buckets`);
a request runs the smallest bucket that holds its longest sequence and the
result is cut to that length. The serial loops (an AF-in-time prior's, the
emission BiLSTM's, the LSTM baseline's) stop after the longest sequence
(`LatentFlowVAE.sample`, `LSTMBaseline.sample`), so there a bucket's padding
costs only the work done for all steps at once (input projections, the
within-step flows, the output layer); the IAF prior's time LSTMs run over the
whole bucket (`SequenceFlowPrior._parallel` says why). Each bucket is one more program:
traced at export and compiled by XLA at its first request; `buckets` trades these for
padding. The stateless random
numbers of a draw depend on its bucket (and differ between XLA and plain graph
execution), never on anything else: the same (num_samples, length, seed)
always gives the same sequences.
"""

from __future__ import annotations

import functools

import tensorflow as tf

from tf_latentflow.data import padded_length
from tf_latentflow.evaluation import in_paper_units

__all__ = ["DEFAULT_MAX_SAMPLES", "default_buckets", "resolve_buckets", "make_sample_fn", "make_log_prob_fn",
           "at_least_one_step", "score_each_sequence", "sample_signature", "log_prob_signature"]

DEFAULT_MAX_SAMPLES = 1024


def default_buckets(max_length: int, smallest: int = 16) -> tuple[int, ...]:
    """The padding grid `data.padded_length(T, 16)` from `smallest` below
    max_length, then max_length itself.

    Multiples of 16 up to 256, of 32 up to 512, of 64 up to 1024, ...: a request
    is padded by less than 16 steps up to 256 and by less than 1/8 beyond (powers of
    two would pad by up to 1/2: T = 100 runs 112 steps, not 128; T = 200 runs 208, not
    256). 16 buckets up to 256, 48 up to 4096.
    """
    max_length = int(max_length)
    grid = sorted({int(padded_length(t, 16)) for t in range(1, max_length + 1)})
    return tuple(b for b in grid if smallest <= b < max_length) + (max_length,)


def resolve_buckets(model, buckets=None) -> tuple[int, ...]:
    """The sorted padded lengths the XLA sampler is compiled for: `buckets` (default
    `default_buckets(model.max_length)`) plus the model's maximum length."""
    max_length = int(model.max_length)
    buckets = tuple(sorted(set(int(b) for b in (buckets or default_buckets(max_length)))))
    if buckets[-1] < max_length:
        buckets += (max_length,)
    return buckets


def sample_signature():
    return [tf.TensorSpec([], tf.int32, name="num_samples"), tf.TensorSpec([], tf.int32, name="length"),
            tf.TensorSpec([], tf.int64, name="seed")]


def log_prob_signature(is_text: bool):
    shape = [None, None] if is_text else [None, None, None]  # the note axis is checked in the graph
    return [tf.TensorSpec(shape, tf.int32, name="sequences"), tf.TensorSpec([None], tf.int32, name="lengths")]


def _decode_table(vocabulary) -> tf.Tensor:
    """id -> string; the padding id 0 decodes to ''."""
    return tf.constant([""] + [str(s) for s in list(vocabulary)[1:]], tf.string)


def _draw(model, lengths, seed, *, steps):
    """The model's sample for given lengths, padded to `steps` (a Python int or None)."""
    x, _ = model.sample(tf.shape(lengths)[0], lengths=lengths, seed=seed, max_length=steps)
    return x


def resolve_jit_compile(model, jit_compile: bool | None) -> bool:
    """None -> XLA for music models only: the text samplers draw ids with
    `tf.random.stateless_categorical(..., dtype=tf.int32)`, which has no XLA
    kernel (int64 has one)."""
    return (not model.is_text) if jit_compile is None else bool(jit_compile)


def make_sample_fn(model, vocabulary=None, *, jit_compile: bool | None = None, buckets=None,
                   max_samples: int = DEFAULT_MAX_SAMPLES):
    """The `sample(num_samples, length, seed)` tf.function (see the module docstring).

    model: LatentFlowVAE or LSTMBaseline. vocabulary: text models: id -> symbol
    (decodes the `text` output). jit_compile: run the sampler under XLA
    (None: `resolve_jit_compile`). buckets: padded lengths compiled under XLA
    (default `default_buckets(model.max_length)`); ignored without jit_compile.
    max_samples: the largest `num_samples` a request may ask for.
    """
    if int(max_samples) < 1:
        raise ValueError(f"max_samples must be >= 1, got {max_samples}")
    max_samples = int(max_samples)
    jit_compile = resolve_jit_compile(model, jit_compile)
    max_length = int(model.max_length)
    if model.is_text and vocabulary is None:
        raise ValueError("a text model needs its vocabulary to decode samples")
    if jit_compile:
        buckets = resolve_buckets(model, buckets)
        draws = [tf.function(functools.partial(_draw, model, steps=b), jit_compile=True)
                 for b in buckets]
    table = _decode_table(vocabulary) if model.is_text else None

    @tf.function(input_signature=sample_signature(), autograph=False)
    def sample(num_samples, length, seed):
        checks = [
            tf.debugging.assert_positive(num_samples, message="`num_samples` must be positive"),
            tf.debugging.assert_less_equal(
                num_samples, tf.constant(max_samples, tf.int32),
                message=f"`num_samples` exceeds this model's maximum of {max_samples} per request"),
            tf.debugging.assert_non_negative(
                length, message="`length` must be >= 0 (0 draws lengths from p(T))"),
            tf.debugging.assert_less_equal(
                length, tf.constant(max_length, tf.int32),
                message=f"`length` exceeds the model's maximum length {max_length}"),
        ]
        with tf.control_dependencies(checks):
            num_samples = tf.identity(num_samples)
        length_seed, draw_seed = tf.unstack(tf.random.experimental.stateless_split(
            tf.stack([seed, tf.constant(0, tf.int64)]), 2))
        lengths = tf.cond(length > 0,
                          lambda: tf.fill(tf.reshape(num_samples, [1]), length),
                          lambda: model.length_model.sample(num_samples, seed=length_seed))
        longest = tf.maximum(tf.reduce_max(lengths), 1)
        if jit_compile:
            index = tf.reduce_sum(tf.cast(tf.constant(buckets, tf.int32) < longest, tf.int32))
            x = tf.switch_case(index, [functools.partial(d, lengths, draw_seed) for d in draws])
            x = x[:, :longest]
        else:
            x = _draw(model, lengths, draw_seed, steps=None)
        if model.is_text:
            x = tf.ensure_shape(tf.cast(x, tf.int32), [None, None])
            valid = tf.sequence_mask(lengths, tf.shape(x)[1])
            symbols = tf.where(valid, tf.gather(table, x), tf.constant("", tf.string))
            return {"sequences": x, "lengths": lengths,
                    "text": tf.strings.reduce_join(symbols, axis=-1)}
        x = tf.ensure_shape(tf.cast(x, tf.int32), [None, None, model.num_notes])
        return {"sequences": x, "lengths": lengths}

    return sample


def validate_scoring_inputs(sequences, lengths, *, max_length: int, vocab_size=None, num_notes=None,
                            length_probs=None):
    """tf.debugging checks of a log_prob request; returns the list of assertion ops.

    length_probs: p(T) for T = 0..max_length; lengths it gives probability 0 are refused.
    """
    batch, steps = tf.shape(sequences)[0], tf.shape(sequences)[1]
    checks = [
        tf.debugging.assert_equal(tf.shape(lengths)[0], batch,
                                  message="`lengths` must have one entry per sequence of `sequences`"),
        tf.debugging.assert_non_negative(lengths, message="`lengths` must be >= 0"),
        tf.debugging.assert_less_equal(lengths, steps, message="`lengths`: a length is longer than "
                                       "the padded time dimension of `sequences`"),
        tf.debugging.assert_less_equal(lengths, tf.constant(max_length, tf.int32),
                                       message=f"`lengths` exceeds the model's maximum length {max_length}"),
    ]
    if length_probs is not None:
        probs = tf.convert_to_tensor(length_probs)
        with tf.control_dependencies(checks):  # the gather needs lengths within 0..max_length
            possible = tf.gather(probs, tf.clip_by_value(lengths, 0, max_length)) > 0
        checks.append(tf.debugging.assert_equal(
            tf.reduce_all(possible), True,
            message="`lengths`: a length has probability 0 under the model's p(T) (T = 0 for "
                    "text: sentences are never empty), so its NLL would be infinite"))
    if vocab_size is not None:
        checks += [
            tf.debugging.assert_non_negative(sequences, message="`sequences`: token ids must be >= 0"),
            tf.debugging.assert_less(sequences, tf.constant(vocab_size, tf.int32),
                                     message=f"`sequences`: a token id is outside the vocabulary "
                                     f"(size {vocab_size})"),
        ]
    else:
        checks += [
            tf.debugging.assert_equal(tf.shape(sequences)[2], num_notes,
                                      message=f"`sequences` must have {num_notes} notes in its last "
                                      f"dimension (a [N, T, {num_notes}] piano roll)"),
            tf.debugging.assert_equal(
                tf.reduce_all((sequences == 0) | (sequences == 1)), True,
                message="`sequences`: piano-roll notes must be 0 or 1"),
        ]
    return checks


def at_least_one_step(sequences):
    """sequences with one zero step appended when they have none: the models' recurrences
    need a step to run over (a T = 0 sequence then scores -log p(T = 0))."""
    extra = tf.maximum(1 - tf.shape(sequences)[1], 0)
    return tf.pad(sequences, [[0, 0], [0, extra]] + [[0, 0]] * (sequences.shape.rank - 2))


def score_each_sequence(model, sequences, lengths, *, num_samples: int, seed, chunk_size: int | None):
    """Importance-sampled -log p(x) [N], each sequence scored alone, cut to its own length.

    Row i is `model.nll_terms(sequences[i:i+1, :max(T_i, 1)], [T_i], seed=seed)`,
    one row after the other (a `tf.map_fn`), every row with the same seed. So a
    sequence's score depends only on the sequence, the seed, K and the chunk, not
    on the request's other sequences or its padding (the stateless draws of a
    batch have the batch's shape: scored together, rows would change each other's
    draws, and TF Serving's request batching would change a client's answer), and
    memory is bounded by one sequence: chunk x T_i x (latent and hidden sizes),
    not chunk x N x T_pad (10 samples of 16 Nottingham-length sequences at once
    would need ~18 GiB). A T = 0 sequence keeps one padding step, which
    contributes exactly 0. sequences: padded to at least one step (`at_least_one_step`).
    """
    def one(i):
        x = sequences[i:i + 1, :tf.maximum(lengths[i], 1)]
        return model.nll_terms(x, lengths[i:i + 1], num_samples=num_samples, seed=seed,
                               chunk_size=chunk_size)["nll"][0]

    return tf.map_fn(one, tf.range(tf.shape(sequences)[0]), fn_output_signature=tf.float32,
                     parallel_iterations=1)


def make_log_prob_fn(model, *, num_samples: int, seed=(0, 0), chunk_size: int | None = 10):
    """The `log_prob(sequences, lengths)` tf.function (see the module docstring).

    model: a `SequenceModel` (`tf_latentflow.sequence_model`).
    num_samples: importance samples K for a latent model (ignored by a model with an
    exact likelihood, the LSTM baseline); seed: the fixed stateless seed of those samples;
    chunk_size: samples evaluated at a time (bounds memory; the estimate
    depends on it through the per-chunk seeds, see `LatentFlowVAE.nll`).
    A latent model scores each sequence alone (`score_each_sequence`).
    """
    seed = tuple(int(s) for s in seed)

    @tf.function(input_signature=log_prob_signature(model.is_text), autograph=False)
    def log_prob(sequences, lengths):
        checks = validate_scoring_inputs(
            sequences, lengths, max_length=int(model.max_length),
            vocab_size=model.vocab_size if model.is_text else None,
            num_notes=None if model.is_text else model.num_notes,
            length_probs=model.length_model.probs)
        with tf.control_dependencies(checks):
            sequences = at_least_one_step(sequences)
        if model.exact_likelihood:  # exact: a row's value does not depend on the others
            nll = model.nll_terms(sequences, lengths)["nll"]
        else:
            nll = score_each_sequence(model, sequences, lengths, num_samples=num_samples,
                                      seed=tf.constant(seed, tf.int64), chunk_size=chunk_size)
        per_step = in_paper_units(nll / (tf.cast(lengths, tf.float32) + 1.0), is_text=model.is_text)
        return {"nll": nll, "nll_per_step": per_step}

    return log_prob
