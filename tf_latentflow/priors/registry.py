"""Prior names (paper section 4.3 and the ablations of table 2).

Names:
  "af-af"     AF in time (LSTM over z_<t) / multilayer AF within a step
  "af-scf"    AF in time / multilayer SCF within a step
  "iaf-scf"   IAF in time (LSTM over eps_<t) / multilayer SCF within a step
  "af-only"   no time dynamics: each step's AF conditioned on the T-features only
  "standard-normal"  no flow at all (reference point)
Ablation suffixes (paper table 2):
  "-af-hidden"  the paper's "- AF hidden": one elementwise transform per step
                ("af-af-af-hidden")
  "-affine"     the paper's "- NLSq": affine scalar maps instead of NLSq
                ("af-af-affine", "af-af-af-hidden-affine")
A saved name with the suffix's former spelling "-nlsq" reads as "-affine"
(`LEGACY_SUFFIXES`).
"""

import dataclasses

__all__ = ["PriorSpec", "parse_prior_name", "PRIOR_BASES", "AFFINE_SUFFIX", "LEGACY_SUFFIXES"]

# base name -> (time flow, hidden flow)
PRIOR_BASES = {
    "af-af": ("af", "af"),
    "af-scf": ("af", "scf"),
    "iaf-scf": ("iaf", "scf"),
    "af-only": ("none", "af"),
    "standard-normal": ("none", "none"),
}
AFFINE_SUFFIX = "-affine"
# Suffixes of model configs saved under an earlier name -> today's.
LEGACY_SUFFIXES = {"-nlsq": AFFINE_SUFFIX}


@dataclasses.dataclass(frozen=True)
class PriorSpec:
    """What a prior name means: the flow across time, within a step, and the scalar map."""

    name: str
    time: str  # "af", "iaf" or "none"
    hidden: str  # "af", "scf", "elementwise" or "none"
    scalar_map: str  # "nlsq" or "affine"


def parse_prior_name(name):
    """`PriorSpec` for a prior name such as "af-scf" or "af-af-af-hidden-affine"."""
    rest, scalar_map, hidden_ablation = name, "nlsq", False
    for legacy, suffix in LEGACY_SUFFIXES.items():
        if rest.endswith(legacy):
            rest = rest[: -len(legacy)] + suffix
    if rest.endswith(AFFINE_SUFFIX):
        rest, scalar_map = rest[: -len(AFFINE_SUFFIX)], "affine"
    if rest.endswith("-af-hidden"):
        rest, hidden_ablation = rest[: -len("-af-hidden")], True
    if rest not in PRIOR_BASES:
        raise ValueError(f"unknown prior {name!r}; bases are {sorted(PRIOR_BASES)}, optionally "
                         f"followed by '-af-hidden' and/or '-affine'")
    time, hidden = PRIOR_BASES[rest]
    if hidden_ablation:
        if time != "af" or hidden != "af":
            raise ValueError(f"'-af-hidden' applies to the af-af prior only; got {name!r}")
        hidden = "elementwise"
    if hidden == "none" and scalar_map != "nlsq":
        raise ValueError(f"'-affine' needs a flow to ablate; got {name!r}")
    return PriorSpec(name=name, time=time, hidden=hidden, scalar_map=scalar_map)
