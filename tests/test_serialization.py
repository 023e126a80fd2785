"""Keras hygiene: every layer of the package is registered, and `get_config` / `from_config`
(through Keras's own serialize / deserialize) rebuilds a layer that, given the same
weights, computes the same outputs."""

import keras
import numpy as np
import pytest
import tensorflow as tf

from tf_latentflow.layers.length_model import LengthModel
from tf_latentflow.layers import MADE, ContextMLP, HiddenFlowStack
from tf_latentflow.layers.emission import Emission
from tf_latentflow.layers.inference import InferenceNetwork, StackedBiLSTM, SymbolEmbedding
from tf_latentflow.layers.lstm import FastLSTM
from tf_latentflow.priors import make_prior
from tf_latentflow.priors.gaussian import StandardNormalPrior
from tf_latentflow.priors.time_conditioner import TimeConditioner

RNG = np.random.default_rng(0)
B, T, H, MAX_LENGTH = 2, 4, 3, 6
LENGTHS = np.array([4, 2], np.int32)
Z = RNG.normal(size=(B, T, H)).astype(np.float32)
CONTEXT = RNG.normal(size=(B, 5)).astype(np.float32)
PIANO = (RNG.random((B, T, 7)) < 0.3).astype(np.float32)
IDS = RNG.integers(1, 6, size=(B, T)).astype(np.int32)

# name -> (a new layer, how to call it)
CASES = {
    "ContextMLP": (lambda: ContextMLP(num_params=2, num_outputs=4, hidden_units=(8,),
                                      context_layers="first", init="reference"),
                   lambda layer: layer(Z[:, 0], context=CONTEXT)),
    "MADE": (lambda: MADE(num_params=5, hidden_units=(8, 8), order="reversed"),
             lambda layer: layer(Z[:, 0], context=CONTEXT)),
    "FastLSTM": (lambda: FastLSTM(6), lambda layer: layer(Z)),
    "HiddenFlowStack": (lambda: HiddenFlowStack(H, kind="scf", num_layers=2, hidden_units=(8,),
                                                scalar_map="nlsq-damping", context_size=5),
                        lambda layer: layer(Z[:, 0], context=CONTEXT)),
    "TimeConditioner": (lambda: TimeConditioner(H, MAX_LENGTH, units=6, num_layers=2),
                        lambda layer: layer(Z, LENGTHS)),
    "SymbolEmbedding": (lambda: SymbolEmbedding(6, 4, is_text=True), lambda layer: layer(IDS)),
    "StackedBiLSTM": (lambda: StackedBiLSTM(5, num_layers=2), lambda layer: layer(Z, LENGTHS)),
    "InferenceNetwork": (lambda: InferenceNetwork(H, MAX_LENGTH, num_notes=7, embedding_size=6,
                                                  hidden_units=6),
                         lambda layer: layer(PIANO, LENGTHS)),
    "Emission": (lambda: Emission(H, MAX_LENGTH, num_notes=7, hidden_units=6),
                 lambda layer: layer(Z, LENGTHS)),
    "LengthModel": (lambda: LengthModel(MAX_LENGTH), lambda layer: layer(LENGTHS)),
    "SequenceFlowPrior": (lambda: make_prior("iaf-scf", latent_size=H, max_length=MAX_LENGTH,
                                             lstm_units=6, num_flow_layers=2,
                                             flow_hidden_units=(8,), flow_context_layers="first"),
                          lambda layer: layer(Z, LENGTHS)),
    "StandardNormalPrior": (lambda: StandardNormalPrior(latent_size=H),
                            lambda layer: layer(Z, LENGTHS)),
}


def outputs(result):
    return [np.asarray(t) for t in tf.nest.flatten(result)]


@pytest.mark.parametrize("name", sorted(CASES))
def test_serialize_deserialize_reproduces_the_outputs(name):
    make, call = CASES[name]
    layer = make()
    expected = call(layer)
    rng = np.random.default_rng(1)
    for weight in layer.weights:  # away from the initial values, so every weight matters
        if weight.trainable:
            weight.assign(rng.normal(scale=0.3, size=weight.shape).astype(weight.dtype))
    expected = outputs(call(layer))
    config = keras.saving.serialize_keras_object(layer)
    assert config["registered_name"] == f"tf_latentflow>{type(layer).__name__}"
    clone = keras.saving.deserialize_keras_object(config)
    assert type(clone) is type(layer)
    call(clone)  # build
    clone.set_weights(layer.get_weights())
    for got, want in zip(outputs(call(clone)), expected):
        np.testing.assert_allclose(got, want, rtol=1e-6, atol=1e-6)


@pytest.mark.parametrize("make, message", [
    (lambda: FastLSTM(0), "units must be a positive integer"),
    (lambda: ContextMLP(num_params=2, hidden_units=(8, 0)), "hidden_units must be positive"),
    (lambda: ContextMLP(num_params=2, num_outputs=0), "num_outputs must be positive"),
    (lambda: TimeConditioner(3, 5, units=-1), "units must be a positive integer"),
    (lambda: TimeConditioner(3, 5, dropout=1.5), "dropout must be in"),
    (lambda: HiddenFlowStack(0, kind="af"), "event_size must be positive"),
])
def test_constructor_arguments_are_validated(make, message):
    with pytest.raises(ValueError, match=message):
        make()
