"""Keras 3 layers: conditioner networks and the within-step flow stacks."""

from tf_latentflow.layers.context_mlp import ContextMLP
from tf_latentflow.layers.emission import Emission
from tf_latentflow.layers.hidden_flow import STACK_KINDS, HiddenFlowStack
from tf_latentflow.layers.inference import InferenceNetwork, StackedBiLSTM, SymbolEmbedding
from tf_latentflow.layers.lstm import FastLSTM
from tf_latentflow.layers.made import MADE

__all__ = [
    "ContextMLP", "Emission", "FastLSTM", "HiddenFlowStack", "InferenceNetwork", "MADE", "STACK_KINDS",
    "StackedBiLSTM", "SymbolEmbedding",
]
