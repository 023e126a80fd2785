"""The interface every sequence model of the package implements.

`LatentFlowVAE` (a latent variable model: ELBO training, importance-sampled NLL) and
`LSTMBaseline` (autoregressive: exact likelihood) both provide the members below with
the same arguments and the same return structures, so that the trainer, the
evaluation and the exporter never ask which kind of model they hold.

All per-sequence values are float32 [B] in nats over the whole sequence, the
length term -log p(T) included; divide by T + 1 for the paper's units
(`evaluation.per_step`).

  loss_terms(x, lengths, *, kl_weight=1.0, num_samples=1, seed=None, training=False)
      -> {"loss", "kl"}
      loss: what training minimises, -reconstruction + kl_weight * KL - log p(T)
      (paper eq. 5 with KL annealing; for the baseline -log p(x), and kl = 0).
  nll_terms(x, lengths, *, num_samples=50, seed=None, chunk_size=None)
      -> {"nll", "reconstruction", "kl"}
      nll: -log p(x) (importance-sampled with num_samples samples for a latent
      model, section 5; exact for the baseline, which ignores num_samples);
      reconstruction: -E_q log p(x | z, T) (the baseline: -log p(x | T));
      kl: E_q[log q(z | x) - log p(z | T)] (the baseline: 0).
  sample(num_samples, lengths=None, seed=None, max_length=None) -> (x, lengths)
  exact_likelihood: True when nll_terms is exact (then num_samples does not apply).
  is_text, max_length, num_notes, vocab_size, length_model: the data it models.
"""

from __future__ import annotations

from typing import Protocol, runtime_checkable

__all__ = ["SequenceModel"]


@runtime_checkable
class SequenceModel(Protocol):
    """Structural type of `LatentFlowVAE` and `LSTMBaseline` (module docstring)."""

    exact_likelihood: bool
    is_text: bool
    max_length: int

    def loss_terms(self, x, lengths, *, kl_weight=1.0, num_samples: int = 1, seed=None,
                   training: bool = False) -> dict: ...

    def nll_terms(self, x, lengths, *, num_samples: int = 50, seed=None,
                  chunk_size: int | None = None) -> dict: ...

    def sample(self, num_samples, lengths=None, seed=None, max_length=None): ...
