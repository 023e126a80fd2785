"""The choice of scalar map used inside every flow container.

Every layer of the AF and SCF stacks applies one elementwise scalar map whose
parameters come from a conditioner network. The map is a choice by name:

  "nlsq"    NLSq, y = a + b*x + c / (1 + (d*x + g)**2)  (5 raw parameters)
  "affine"  Affine, y = shift + exp(log_scale) * x        (2 raw parameters)

Both expose `num_unconstrained_params` and `from_unconstrained(raw)`.
"""

import types

from tf_latentflow.bijectors.affine import Affine
from tf_latentflow.bijectors.nlsq import NLSq

__all__ = ["SCALAR_MAPS", "scalar_map_class"]

SCALAR_MAPS = types.MappingProxyType({"nlsq": NLSq, "affine": Affine})


def scalar_map_class(name):
    """The scalar-map bijector class registered under `name` ("nlsq" or "affine")."""
    try:
        return SCALAR_MAPS[name]
    except KeyError:
        raise ValueError(
            f"unknown scalar map {name!r}; choose one of {sorted(SCALAR_MAPS)}") from None
