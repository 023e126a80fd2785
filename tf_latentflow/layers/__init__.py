"""Keras 3 layers of the models: conditioner networks, the within-step flow stacks, the
LSTMs, the inference network and the emission, and the length conditioning: the
length model p(T) (`length_model`) and the T-features (`t_features`, appendix D); what
one step of a sequence is (`sequence_space`)."""

from tf_latentflow.layers.context_mlp import ContextMLP
from tf_latentflow.layers.emission import Emission
from tf_latentflow.layers.hidden_flow import STACK_KINDS, HiddenFlowStack
from tf_latentflow.layers.inference import InferenceNetwork, StackedBiLSTM, SymbolEmbedding
from tf_latentflow.layers.lstm import FastLSTM
from tf_latentflow.layers.length_model import LengthModel, empirical_length_probs
from tf_latentflow.layers.made import MADE
from tf_latentflow.layers.sequence_space import SequenceSpace

__all__ = [
    "ContextMLP", "Emission", "FastLSTM", "HiddenFlowStack", "InferenceNetwork", "LengthModel", "MADE", "STACK_KINDS",
    "SequenceSpace", "StackedBiLSTM", "SymbolEmbedding", "empirical_length_probs",
]
