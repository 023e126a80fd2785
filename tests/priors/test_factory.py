"""make_prior: every name to its prior, the sizes and options passed through, the paper's defaults.

(Densities, sampling and the config round trip of the built priors are in test_sequence_flow.py.)
"""

import pytest

from tf_latentflow.layers.hidden_flow import STACK_KINDS
from tf_latentflow.priors import SequenceFlowPrior, StandardNormalPrior, make_prior
from tf_latentflow.priors.sequence_flow import TIME_FLOWS

# name -> (time, hidden, scalar map, flow layers) with num_flow_layers=3 and nlsq_damping off/on
EXPECTED = {
    "af-af": ("af", "af", "nlsq", 3),
    "af-scf": ("af", "scf", "nlsq", 3),
    "iaf-scf": ("iaf", "scf", "nlsq", 3),
    "af-only": ("none", "af", "nlsq", 3),
    "af-af-affine": ("af", "af", "affine", 3),
    "af-scf-affine": ("af", "scf", "affine", 3),
    "iaf-scf-affine": ("iaf", "scf", "affine", 3),
    "af-only-affine": ("none", "af", "affine", 3),
    "af-af-af-hidden": ("af", "elementwise", "nlsq", 1),  # one elementwise map per step
    "af-af-af-hidden-affine": ("af", "elementwise", "affine", 1),
}


@pytest.mark.parametrize("damped", [False, True])
@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_every_flow_name_gives_its_sequence_flow_prior(name, damped):
    prior = make_prior(name, latent_size=4, max_length=7, num_flow_layers=3, nlsq_damping=damped)
    time, hidden, scalar_map, layers = EXPECTED[name]
    if damped and scalar_map == "nlsq":
        scalar_map = "nlsq-damping"  # damping changes NLSq maps only
    assert type(prior) is SequenceFlowPrior
    assert (prior.time, prior.hidden, prior.scalar_map, prior.num_flow_layers) == (
        time, hidden, scalar_map, layers)
    assert prior.time in TIME_FLOWS and prior.hidden in STACK_KINDS
    assert (prior.flow.kind, prior.flow.scalar_map, len(prior.flow.conditioners)) == (
        hidden, scalar_map, layers)
    assert (prior.conditioner is None) == (time == "none")


def test_sizes_and_options_reach_the_prior_and_its_sublayers():
    prior = make_prior("iaf-scf", latent_size=6, max_length=9, lstm_units=11, lstm_layers=3,
                       num_flow_layers=4, flow_hidden_units=(13, 14), lstm_dropout=0.3,
                       flow_context_layers="first", flow_init="reference", name="my_prior")
    assert prior.name == "my_prior"
    assert (prior.latent_size, prior.max_length, prior.lstm_units, prior.lstm_layers,
            prior.num_flow_layers, prior.flow_hidden_units, prior.lstm_dropout) == (
        6, 9, 11, 3, 4, (13, 14), 0.3)
    conditioner = prior.conditioner
    assert (conditioner.input_size, conditioner.max_length, conditioner.units,
            conditioner.num_layers, conditioner.dropout) == (6, 9, 11, 3, 0.3)
    assert len(conditioner.lstms) == 3
    flow = prior.flow
    assert (flow.event_size, flow.num_layers, flow.hidden_units, flow.context_size) == (
        6, 4, (13, 14), 11)
    for net in flow.conditioners:
        assert (net.hidden_units, net.context_layers, net.init) == ((13, 14), "first", "reference")


def test_the_defaults_are_the_papers_sizes():
    prior = make_prior("af-scf", max_length=7)
    assert (prior.latent_size, prior.lstm_units, prior.lstm_layers, prior.num_flow_layers,
            prior.flow_hidden_units, prior.lstm_dropout) == (50, 500, 2, 5, (100, 100), 0.0)
    assert (prior.scalar_map, prior.flow_context_layers, prior.flow_init) == (
        "nlsq", "all", "glorot")
    assert make_prior("standard-normal", max_length=7).latent_size == 50


def test_standard_normal_takes_the_latent_size_and_layer_options():
    prior = make_prior("standard-normal", latent_size=7, max_length=3, lstm_units=9,
                       num_flow_layers=2, nlsq_damping=True, name="reference_point",
                       dtype="float64")
    assert type(prior) is StandardNormalPrior
    assert (prior.latent_size, prior.name, prior.dtype_policy.name) == (
        7, "reference_point", "float64")
    assert prior.sample([2, 1], seed=0).shape == (2, 2, 7)


def test_a_dtype_policy_reaches_the_sublayers():
    prior = make_prior("af-af", latent_size=3, max_length=4, lstm_units=5,
                       flow_hidden_units=(6,), dtype="mixed_float16")
    assert prior.dtype_policy.name == "mixed_float16"
    assert prior.conditioner.compute_dtype == "float16"
    assert all(net.compute_dtype == "float16" for net in prior.flow.conditioners)


@pytest.mark.parametrize("name, message", [
    ("maf", "unknown prior"),
    ("af-af-affine-af-hidden", "unknown prior"),
    ("af-scf-af-hidden", "af-af prior only"),
    ("standard-normal-affine", "needs a flow"),
])
def test_names_the_registry_refuses_are_refused(name, message):
    with pytest.raises(ValueError, match=message):
        make_prior(name, max_length=7)
