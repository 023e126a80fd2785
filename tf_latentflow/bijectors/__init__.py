"""TFP bijectors of the latent flow: scalar maps and conditional flow containers.

Direction convention (TFP's, everywhere in this project): `forward` maps base
noise eps to the latent z (sampling); `inverse` maps z to eps (density).

  NLSq, Affine          elementwise scalar maps (paper eq. 7 and its affine ablation)
  AutoregressiveFlow    AF layer with a MADE conditioner (IAF = tfb.Invert(AF))
  Coupling              split coupling (SCF) layer
  ConditionalChain      a stack whose members share the `context=` keyword
  ContextElementwise    elementwise maps conditioned on the context only (ablation)
"""

from tf_latentflow.bijectors.affine import Affine
from tf_latentflow.bijectors.autoregressive import AutoregressiveFlow
from tf_latentflow.bijectors.conditional_chain import ConditionalChain
from tf_latentflow.bijectors.coupling import Coupling
from tf_latentflow.bijectors.elementwise import ContextElementwise
from tf_latentflow.bijectors.nlsq import NLSQ_C_BOUND, NLSq, nlsq_params_from_unconstrained
from tf_latentflow.bijectors.scalar_maps import SCALAR_MAPS, scalar_map_class

__all__ = [
    "Affine", "AutoregressiveFlow", "ConditionalChain", "ContextElementwise", "Coupling", "NLSQ_C_BOUND", "NLSq",
    "SCALAR_MAPS", "nlsq_params_from_unconstrained", "scalar_map_class",
]
