"""Per-piece evaluation: which sequences of a split carry its figure.

A split's NLL is a corpus ratio over its N sequences,

    NLL = sum_i NLL_i / sum_i (T_i + 1)        (`evaluation.corpus_per_step`),

so a few long or badly modelled pieces can dominate it (a MuseData validation piece
opens with 215 silent steps). `piece_terms` evaluates every sequence of a split on its
own, at batch 1 and without padding, with the trained model: the importance-sampled
NLL_i and the K-sample -ELBO_i = reconstruction_i + KL_i - log p(T_i) from the same K
samples (`SequenceModel.nll_terms`, its chunks included; section 5 of the paper), with
one stateless seed per piece, so NLL_i <= -ELBO_i always (Jensen). `summarize` ranks
the pieces by their share of the split's nats and gives the split's figure without its
worst pieces.

Pieces are evaluated in TensorFlow's graph mode (one traced function for every length;
XLA would compile each length), in the split's TFDS order: piece i is the i-th example
of the split, as in `DataBundle.lengths[split]`.
"""

from __future__ import annotations

import dataclasses

import numpy as np
import tensorflow as tf

from tf_latentflow import data as D
from tf_latentflow.evaluation import in_paper_units, step_counts
from tf_latentflow.runs import registry
from tf_latentflow.training.steps import nll_chunk, step_seed

__all__ = ["PieceTerms", "piece_terms", "summarize"]

# Offset of the pieces' seeds among the run's stateless seeds (training steps count from
# 0, `TrainSteps.nll_sums`'s evaluation batches from 2e9).
PIECE_SEED_OFFSET = 3 * 10**9


@dataclasses.dataclass(frozen=True)
class PieceTerms:
    """Per piece of one split, in its TFDS order, nats over the whole sequence (float64 [N])."""

    split: str
    num_samples: int
    lengths: np.ndarray  # T_i
    steps: np.ndarray  # T_i + 1: the unit's normaliser
    nll: np.ndarray  # importance-sampled -log p(x_i)
    neg_elbo: np.ndarray  # -ELBO_i: reconstruction_i + kl_i - log p(T_i), the training loss at KL weight 1
    reconstruction: np.ndarray  # -(1/K) sum_k log p(x_i | z_k)
    kl: np.ndarray  # (1/K) sum_k [log q(z_k | x_i) - log p(z_k)]


def piece_terms(trainer, split: str, num_samples: int) -> PieceTerms:
    """Evaluate each sequence of `split` alone with `trainer`'s model as it is (restore the
    checkpoint first, e.g. `trainer.checkpoints.restore_for_evaluation()`)."""
    config, model = trainer.config, trainer.model
    sequences = D.to_sequences(trainer.bundle.splits[split])
    spec = sequences.element_spec["x"]
    x_spec = tf.TensorSpec([1, None, *spec.shape[1:]], spec.dtype)

    functions = {}

    def function(chunk):
        if chunk not in functions:
            @tf.function(input_signature=[x_spec, tf.TensorSpec([1], tf.int32), tf.TensorSpec([2], tf.int64)])
            def terms(x, lengths, seed):
                nll = model.nll_terms(x, lengths, num_samples=num_samples, seed=seed, chunk_size=chunk)
                neg_elbo = nll["reconstruction"] + nll["kl"] - model.length_model.log_prob(lengths)
                return nll["nll"][0], neg_elbo[0], nll["reconstruction"][0], nll["kl"][0]

            functions[chunk] = terms
        return functions[chunk]

    rows = []
    for i, sequence in enumerate(sequences):
        length = int(sequence["lengths"])
        chunk = nll_chunk(num_samples, 1, length, config.nll_chunk_budget)
        seed = step_seed(config, PIECE_SEED_OFFSET + i)
        values = function(chunk)(sequence["x"][tf.newaxis], tf.constant([length], tf.int32), seed)
        rows.append([length] + [float(v) for v in values])
    table = np.array(rows, dtype=np.float64).reshape(-1, 5)
    lengths = table[:, 0].astype(np.int64)
    return PieceTerms(split=split, num_samples=num_samples, lengths=lengths,
                      steps=step_counts(lengths, dtype=tf.float64).numpy(),
                      nll=table[:, 1], neg_elbo=table[:, 2], reconstruction=table[:, 3], kl=table[:, 4])


def summarize(terms: PieceTerms, dataset: str, top: int = 10) -> dict:
    """The split's corpus figures, its pieces ranked by their share of the split's NLL
    nats, and the split's NLL without its worst k pieces (k = 1, 3, 5, 10), in the
    paper's unit (`evaluation.in_paper_units`)."""
    is_text = registry.dataset(dataset).is_text
    unit = registry.dataset(dataset).unit

    def per_step(nats, steps):
        return float(in_paper_units(float(np.sum(nats)) / float(np.sum(steps)), is_text=is_text))

    order = np.argsort(-terms.nll, kind="stable")
    share = terms.nll / float(np.sum(terms.nll))
    pieces = [{"index": int(i), "length": int(terms.lengths[i]),
               "nll": per_step(terms.nll[i], terms.steps[i]),
               "neg_elbo": per_step(terms.neg_elbo[i], terms.steps[i]),
               "share_of_nll": float(share[i]), "share_of_steps": float(terms.steps[i] / np.sum(terms.steps))}
              for i in order[:top]]
    without = {}
    for k in (1, 3, 5, 10):
        if k < len(order):
            kept = np.sort(order[k:])
            without[str(k)] = per_step(terms.nll[kept], terms.steps[kept])
    return {"split": terms.split, "unit": unit, "num_samples": terms.num_samples, "pieces": int(len(order)),
            "nll": per_step(terms.nll, terms.steps), "neg_elbo": per_step(terms.neg_elbo, terms.steps),
            "reconstruction": per_step(terms.reconstruction, terms.steps), "kl": per_step(terms.kl, terms.steps),
            "nll_without_worst": without, "worst": pieces,
            "every_piece": {"length": terms.lengths.tolist(),
                            "nll": [per_step(n, s) for n, s in zip(terms.nll, terms.steps)],
                            "neg_elbo": [per_step(n, s) for n, s in zip(terms.neg_elbo, terms.steps)]}}
