"""The choice of scalar map used inside every flow container.

Every layer of the AF and SCF stacks applies one elementwise scalar map whose
parameters come from a conditioner network. The map is a choice by name:

  "nlsq"         NLSq, y = a + b*x + c / (1 + (d*x + g)**2)  (5 raw parameters)
  "nlsq-damping" the same NLSq, its raw log b, c and log d damped by 0.4, 0.3, 0.4
                 and c allowed up to 0.05 b/d from the bound (the reference code's
                 parameterisation; `nlsq.nlsq_params_from_unconstrained`)
  "affine"       Affine, y = shift + exp(log_scale) * x        (2 raw parameters)

Each exposes `num_unconstrained_params` and `from_unconstrained(raw, **kwargs)`.
"""

import dataclasses
import types

from tf_latentflow.bijectors.affine import Affine
from tf_latentflow.bijectors.nlsq import REFERENCE_ALPHA, REFERENCE_DAMPING, NLSq

__all__ = ["SCALAR_MAPS", "scalar_map_class"]


@dataclasses.dataclass(frozen=True)
class Parameterized:
    """A scalar-map class with fixed keyword arguments for its `from_unconstrained`."""

    cls: type
    options: tuple  # ((name, value), ...)

    @property
    def num_unconstrained_params(self):
        return self.cls.num_unconstrained_params

    def from_unconstrained(self, raw, **kwargs):
        return self.cls.from_unconstrained(raw, **dict(self.options), **kwargs)


SCALAR_MAPS = types.MappingProxyType({
    "nlsq": NLSq,
    "nlsq-damping": Parameterized(NLSq, (("alpha", REFERENCE_ALPHA), ("damping", REFERENCE_DAMPING))),
    "affine": Affine,
})


def scalar_map_class(name):
    """The scalar-map bijector class registered under `name` (a key of SCALAR_MAPS)."""
    try:
        return SCALAR_MAPS[name]
    except KeyError:
        raise ValueError(
            f"unknown scalar map {name!r}; choose one of {sorted(SCALAR_MAPS)}") from None
