"""Building a run's model from its settings, and rebuilding it from config.json."""

import json

import numpy as np
import pytest
import tensorflow as tf

from tf_latentflow.baseline import LSTMBaseline
from tf_latentflow.layers import LengthModel
from tf_latentflow.model import LatentFlowVAE
from tf_latentflow.runs import ModelSettings, build_model, make_length_model, model_from_config, registry

SMALL = dict(latent_size=4, embedding_size=8, hidden_units=8, prior_lstm_units=8, num_flow_layers=2,
             flow_hidden_units=(8,))


def small_model(model, dataset="jsb", vocab_size=None, **overrides):
    settings = ModelSettings(model=model, dataset=registry.dataset(dataset).name, **dict(SMALL, **overrides))
    return build_model(settings, LengthModel.from_lengths([3, 4, 6], smoothing=True, name="length_model"),
                       vocab_size)


@pytest.mark.parametrize("model", registry.MODEL_NAMES)
def test_every_registry_model_builds_as_its_entry_says(model):
    entry = registry.model_entry(model)
    built = small_model(model)
    assert isinstance(built, LatentFlowVAE if entry.is_latent else LSTMBaseline)
    assert built.num_notes == 88 and not built.is_text and built.max_length == 7  # floor(1.25 * 6)
    if entry.is_latent:
        assert built.prior_name == entry.prior and built.latent_size == 4
        assert ("lstm_dropout" in built.prior_kwargs) == entry.time_lstm
    else:
        assert built.dropout == 0.1 and built.hidden_units == 8


def test_settings_reach_the_prior():
    built = small_model("af-scf", scalar_map="affine", flow_context="first", flow_init="reference",
                        prior_dropout=0.3)
    assert built.prior_name == "af-scf-affine"  # the "- NLSq" ablation's name
    assert built.prior_kwargs == dict(lstm_dropout=0.3, flow_context_layers="first", flow_init="reference")
    damped = small_model("af-af", nlsq_damping=True)
    assert damped.prior_kwargs == dict(lstm_dropout=0.2, nlsq_damping=True)


def test_inference_and_emission_dropout_reach_their_networks_and_the_saved_config():
    plain = small_model("af-scf")
    assert (plain.inference.dropout, plain.emission.dropout) == (0.0, 0.0)  # the reference's default
    built = small_model("af-scf", inference_dropout=0.3, emission_dropout=0.4)
    assert (built.inference.dropout, built.emission.dropout) == (0.3, 0.4)
    assert {layer.rate for layer in built.inference.bilstm.dropouts} == {0.3}
    assert (built.emission.z_dropout.rate, built.emission.projection_dropout.rate) == (0.4, 0.4)
    rebuilt = model_from_config(json.loads(json.dumps({"model": "af-scf", "model_config": built.get_config()})))
    assert (rebuilt.inference.dropout, rebuilt.emission.dropout) == (0.3, 0.4)


def test_dropout_changes_the_training_loss_only():
    """With dropout the training-mode ELBO is random (two calls differ) and the inference-mode
    ELBO is not; without it both modes give the same number."""
    x = tf.cast(tf.random.stateless_uniform([2, 5, 88], seed=[1, 2]) < 0.1, tf.int32)
    lengths = tf.constant([5, 3])
    for rates, random_in_training in (((0.0, 0.0), False), ((0.5, 0.5), True)):
        built = small_model("af-scf", inference_dropout=rates[0], emission_dropout=rates[1],
                            prior_dropout=0.0)

        def elbo(training):  # the same posterior draw (seed) every call: only dropout may differ
            return float(tf.reduce_sum(built.elbo(x, lengths, seed=[3, 4], training=training)["elbo"]))

        assert elbo(False) == elbo(False)
        assert (elbo(True) != elbo(True)) == random_in_training
        if not random_in_training:
            assert elbo(True) == pytest.approx(elbo(False), rel=1e-6)


def test_text_needs_the_vocabulary_size():
    with pytest.raises(ValueError, match="needs the vocabulary size"):
        small_model("af-af", dataset="ptb")
    built = small_model("lstm", dataset="ptb", vocab_size=11)
    assert built.is_text and built.vocab_size == 11


@pytest.mark.parametrize("overrides, message", [
    (dict(model="lstm", scalar_map="affine"), "applies to flow priors"),
    (dict(model="standard-normal", nlsq_damping=True), "nlsq_damping applies to NLSq flows only"),
    (dict(model="lstm", flow_context="first"), "flow priors only"),
    (dict(model="af-af", flow_init="he"), "flow_init must be one of"),
    (dict(model="af-af", latent_size=16), "larger than the MADE width"),
    (dict(model="gru"), "unknown model"),
    (dict(model="lstm", inference_dropout=0.1), "apply to the latent models"),
    (dict(model="af-af", emission_dropout=1.0), "emission_dropout must be in"),
])
def test_settings_that_cannot_work_are_refused(overrides, message):
    fields = dict(dict(SMALL, model="af-af", dataset="jsb_chorales"), **overrides)
    with pytest.raises(ValueError, match=message):
        ModelSettings(**fields)


def test_length_model_support_and_refusal():
    model = make_length_model(np.array([3, 4, 8]), dataset="jsb_chorales")
    assert model.max_length == 10  # music: floor(1.25 * 8), add-one smoothed
    assert float(tf.reduce_min(model.probs)) > 0
    text = make_length_model(np.array([3, 4, 8]), dataset="ptb_char")
    assert text.max_length == 8 and float(text.probs[5]) == 0.0  # text: no smoothing
    with pytest.raises(ValueError, match="length 11 exceeds the length model's maximum 10"):
        make_length_model(np.array([3, 4, 8]), dataset="jsb_chorales", longest=11)


@pytest.mark.parametrize("model", ["af-scf", "lstm"])
def test_model_from_config_rebuilds_the_same_function(model):
    built = small_model(model)
    config = json.loads(json.dumps({"model": model, "model_config": built.get_config()}))
    rebuilt = model_from_config(config)
    assert type(rebuilt) is type(built) and len(rebuilt.weights) == len(built.weights)
    for a, b in zip(rebuilt.weights, built.weights):
        a.assign(b)
    x = tf.constant((np.random.default_rng(0).random((2, 5, 88)) < 0.2).astype(np.float32))
    lengths = tf.constant([5, 3])
    np.testing.assert_allclose(rebuilt.nll_terms(x, lengths, num_samples=3, seed=1)["nll"].numpy(),
                               built.nll_terms(x, lengths, num_samples=3, seed=1)["nll"].numpy(), rtol=1e-6)
    assert rebuilt.compute_dtype == "float32"
