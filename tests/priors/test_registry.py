"""parse_prior_name: the table-2 bases, the table-4 ablation suffixes, and every refused name."""

import dataclasses
import re

import pytest

from tf_latentflow.priors.registry import PRIOR_BASES, PriorSpec, parse_prior_name

# The module docstring's table: base -> (flow across time, flow within a step).
DOCUMENTED_BASES = {
    "af-af": ("af", "af"),
    "af-scf": ("af", "scf"),
    "iaf-scf": ("iaf", "scf"),
    "af-only": ("none", "af"),
    "standard-normal": ("none", "none"),
}
FLOW_BASES = [name for name, (_, hidden) in DOCUMENTED_BASES.items() if hidden != "none"]


def spec(name, time, hidden, scalar_map):
    return PriorSpec(name=name, time=time, hidden=hidden, scalar_map=scalar_map)


def test_the_bases_are_the_documented_ones():
    assert dict(PRIOR_BASES) == DOCUMENTED_BASES


@pytest.mark.parametrize("base", sorted(DOCUMENTED_BASES))
def test_every_base_uses_nlsq_maps(base):
    time, hidden = DOCUMENTED_BASES[base]
    assert parse_prior_name(base) == spec(base, time, hidden, "nlsq")


@pytest.mark.parametrize("base", FLOW_BASES)
def test_the_affine_suffix_swaps_in_affine_maps_and_keeps_the_flows(base):
    time, hidden = DOCUMENTED_BASES[base]
    name = f"{base}-affine"
    assert parse_prior_name(name) == spec(name, time, hidden, "affine")


@pytest.mark.parametrize("name, scalar_map", [("af-af-af-hidden", "nlsq"),
                                              ("af-af-af-hidden-affine", "affine")])
def test_minus_af_hidden_is_one_elementwise_map_per_step(name, scalar_map):
    assert parse_prior_name(name) == spec(name, "af", "elementwise", scalar_map)


@pytest.mark.parametrize("legacy, name", [("af-af-nlsq", "af-af-affine"), ("iaf-scf-nlsq", "iaf-scf-affine"),
                                          ("af-af-af-hidden-nlsq", "af-af-af-hidden-affine")])
def test_the_former_nlsq_suffix_of_saved_configs_reads_as_affine(legacy, name):
    parsed, today = parse_prior_name(legacy), parse_prior_name(name)
    assert (parsed.time, parsed.hidden, parsed.scalar_map) == (today.time, today.hidden, "affine")


def test_the_spec_is_frozen_and_keeps_the_given_name():
    parsed = parse_prior_name("af-scf-affine")
    assert parsed.name == "af-scf-affine"
    with pytest.raises(dataclasses.FrozenInstanceError):
        parsed.scalar_map = "nlsq"


UNKNOWN = ["", "maf", "af", "AF-AF", "af_af", " af-af", "af-af ", "af-af-", "-affine", "-af-hidden",
           "af-hidden", "nlsq", "af-af-affine-affine", "af-af-af-hidden-af-hidden",
           # the suffixes come in the documented order only: "-af-hidden", then "-affine"
           "af-af-affine-af-hidden", "af-af-nlsq-af-hidden", "af-af-nlsq-nlsq", "affine",
           "standard-normal-af"]


@pytest.mark.parametrize("name", UNKNOWN)
def test_unknown_names_are_refused_with_the_valid_choices(name):
    message = (f"unknown prior {name!r}; bases are {sorted(DOCUMENTED_BASES)}, optionally "
               f"followed by '-af-hidden' and/or '-affine'")
    with pytest.raises(ValueError, match=f"^{re.escape(message)}$"):
        parse_prior_name(name)


@pytest.mark.parametrize("name", ["af-scf-af-hidden", "iaf-scf-af-hidden", "af-only-af-hidden",
                                  "standard-normal-af-hidden", "iaf-scf-af-hidden-affine",
                                  "af-only-af-hidden-affine"])
def test_minus_af_hidden_applies_to_af_af_only(name):
    message = f"'-af-hidden' applies to the af-af prior only; got {name!r}"
    with pytest.raises(ValueError, match=f"^{re.escape(message)}$"):
        parse_prior_name(name)


def test_the_affine_suffix_needs_a_flow():
    message = "'-affine' needs a flow to ablate; got 'standard-normal-affine'"
    with pytest.raises(ValueError, match=f"^{re.escape(message)}$"):
        parse_prior_name("standard-normal-affine")
