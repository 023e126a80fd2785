"""Sequence priors p(z_1:T | T) over latent sequences (paper section 4.3).

Every prior is a Keras 3 layer with
  log_prob(z, lengths, training=False) -> float32 [B, T], per-step log densities, 0 on padding
  sample(lengths, seed=None, max_steps=None) -> float32 [B, T, H], 0 on padding
Build one by name with `make_prior` (names in `tf_latentflow.priors.registry`).
"""

from tf_latentflow.priors.factory import make_prior
from tf_latentflow.priors.gaussian import StandardNormalPrior
from tf_latentflow.priors.registry import PRIOR_BASES, PriorSpec, parse_prior_name
from tf_latentflow.priors.sequence_flow import TIME_FLOWS, SequenceFlowPrior

__all__ = [
    "PRIOR_BASES", "PriorSpec", "SequenceFlowPrior", "StandardNormalPrior", "TIME_FLOWS", "make_prior",
    "parse_prior_name",
]
