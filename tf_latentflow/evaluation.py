"""Units of the paper's tables and a careful log-mean-exp (Ziegler & Rush 2019, section 5).

Every model scores a sequence x of length T as

  NLL(x) = -log p(x) = -log p(x | T) - log p(T)        (nats)

(section 3; p(T) is the empirical `layers.LengthModel`). The tables report it per
time step with T+1 steps per sequence: the T symbols plus one for the end of
the sequence, "to be the same as normal <eos>-including models" (reference
harvardnlp/TextFlow, `main.py`, `run_epoch`: `denom = lengths + 1` whenever the
model is conditioned on T). Over a data set the reference divides the *total*
NLL by the *total* number of steps, a corpus-level ratio:

  per_step = sum_i NLL(x_i) / sum_i (T_i + 1)

  PTB (tables 1-2):  bits per character = per_step / log(2)
  music (table 3):   nats per step      = per_step

(`in_paper_units`; `tf_latentflow.paper` holds the paper's numbers). `corpus_per_step`
computes that ratio; `per_step` gives the per-sequence ratios
NLL(x_i) / (T_i + 1), whose batch mean is the reference's *training* objective
(not the reported number). To accumulate over batches, sum `nll` and
`step_counts(lengths)` separately and divide at the end.

The importance-sampled estimate of section 3 (50 samples in the paper) is

  log p(x) ~= log (1/K) sum_k w_k = logsumexp_k(log w_k) - log K,
  log w_k = log p(x, z_k) - log q(z_k | x),

computed by `importance_sampled_nll` with `log_mean_exp`, which upcasts half precision
inputs to float32.

All functions are plain TF ops (they also accept NumPy arrays) and work inside
tf.function.
"""

from __future__ import annotations

import math

import tensorflow as tf

__all__ = ["LOG_2", "nats_to_bits", "bits_to_nats", "in_paper_units", "step_counts", "per_step",
           "corpus_per_step", "bits_per_char", "nats_per_step", "log_mean_exp", "importance_sampled_nll"]

LOG_2 = math.log(2.0)


def _float(x):
    """x as a float tensor; ints become float32 (float64 kept, half precision kept)."""
    x = tf.convert_to_tensor(x)
    return x if x.dtype.is_floating else tf.cast(x, tf.float32)


def nats_to_bits(nats):
    """bits = nats / log(2)."""
    nats = _float(nats)
    return nats / tf.constant(LOG_2, nats.dtype)


def bits_to_nats(bits):
    """nats = bits * log(2)."""
    bits = _float(bits)
    return bits * tf.constant(LOG_2, bits.dtype)


def in_paper_units(nats_per_step, *, is_text: bool):
    """A per-step NLL in nats, in the paper's unit: bits per character for text (nats / log 2,
    tables 1-2), nats per time step for music (unchanged, table 3).

    Plain arithmetic, so that it serves every caller as it is: Python and NumPy numbers
    stay numbers (the trainer's results), tensors stay tensors of their dtype, also inside
    an exported graph (the exporter's `log_prob`)."""
    return nats_per_step / LOG_2 if is_text else nats_per_step


def step_counts(lengths, *, include_end: bool = True, dtype=tf.float32):
    """The per-sequence normaliser: T + 1 (default) or T (include_end=False), as `dtype`.

    The +1 counts the end of the sequence (the reference's `denom = lengths + 1`
    for T-conditioned models; lengths here never include an end token).
    """
    lengths = tf.cast(tf.convert_to_tensor(lengths), dtype)
    return lengths + 1 if include_end else lengths


def per_step(nll_nats, lengths, *, include_end: bool = True):
    """Per-sequence NLL per step: nll_i / (T_i + 1), same shape as `nll_nats`.

    The mean of this over a batch is the reference's training objective.
    """
    nll_nats = _float(nll_nats)
    return nll_nats / step_counts(lengths, include_end=include_end, dtype=nll_nats.dtype)


def corpus_per_step(nll_nats, lengths, *, include_end: bool = True):
    """Scalar sum_i nll_i / sum_i (T_i + 1): the reference's reported per-step NLL (nats).

    Pass the NLLs and lengths of a whole split (or of one batch, for a running
    estimate); the result is not the mean of `per_step`.
    """
    nll_nats = _float(nll_nats)
    counts = step_counts(lengths, include_end=include_end, dtype=nll_nats.dtype)
    return tf.reduce_sum(nll_nats) / tf.reduce_sum(counts)


def bits_per_char(nll_nats, lengths, *, include_end: bool = True):
    """Scalar bits per character (PTB, tables 1-2): corpus_per_step(nll, lengths) / log(2)."""
    return nats_to_bits(corpus_per_step(nll_nats, lengths, include_end=include_end))


def nats_per_step(nll_nats, lengths, *, include_end: bool = True):
    """Scalar nats per time step (music, table 3): corpus_per_step(nll, lengths)."""
    return corpus_per_step(nll_nats, lengths, include_end=include_end)


def log_mean_exp(log_weights, axis=-1, keepdims: bool = False):
    """log( (1/K) sum_k exp(log_weights_k) ) along `axis` (K = size of that axis).

    Computed as  m + log( mean_k exp(a_k - m) ),  m = max_k a_k  (held constant
    for the gradient, which is then softmax(a) along `axis`), so that no
    exponential overflows whatever the magnitude of the inputs. Non-finite
    maxima are handled: all entries -inf give -inf; any +inf gives +inf.

    Half precision inputs (float16, bfloat16) are computed and returned in
    float32, float64 stays float64; the result is never less precise than
    float32, also under a mixed-precision policy.
    """
    a = _float(log_weights)
    if a.dtype in (tf.float16, tf.bfloat16):
        a = tf.cast(a, tf.float32)
    m = tf.stop_gradient(tf.reduce_max(a, axis=axis, keepdims=True))
    # A non-finite max (all -inf, or some +inf) would give inf - inf = nan below.
    m_safe = tf.where(tf.math.is_finite(m), m, tf.zeros_like(m))
    out = tf.math.log(tf.reduce_mean(tf.exp(a - m_safe), axis=axis, keepdims=True)) + m_safe
    if not keepdims:
        out = tf.squeeze(out, axis=axis)
    return out


def importance_sampled_nll(log_weights, axis=-1):
    """-log p(x) estimated from K importance weights: -log_mean_exp(log_weights, axis).

    log_weights: log p(x, z_k) - log q(z_k | x) (add log p(T) to the joint, or
    to the result, to include the length term as the paper does).
    """
    return -log_mean_exp(log_weights, axis=axis)
