"""tf_latentflow: latent normalizing flows for discrete sequences.

TensorFlow / Keras 3 / TensorFlow Probability implementation of
Ziegler & Rush, "Latent Normalizing Flows for Discrete Sequences", ICML 2019.

Sub-packages and modules:
  bijectors   TFP bijectors: the NLSq and affine scalar maps, AF and SCF layers.
  layers      Keras 3 layers: MADE, conditioner networks, within-step flow stacks.
  priors      sequence priors p(z_1:T | T) (AF/AF, AF/SCF, IAF/SCF, AF-only, ablations).
  data        benchmark files, TFDS builders, tf.data pipelines.
  model       LatentFlowVAE: inference network, flow prior, emission, ELBO, NLL, sampling.
  baseline    LSTMBaseline, the paper's LSTM language model.
  sequence_model  the interface both models implement (loss terms, NLL terms, sampling).
  runs        the registry of datasets and models, building a model, the run directory.
  training    configuration, schedules and the strategy-aware training loop.
  evaluation  NLL units (bits per character, nats per step) and log-mean-exp.

Layering (each arrow points down; nothing imports upwards):
  data -> bijectors / layers / priors -> model, baseline -> runs -> training, export

The names below are imported on first use, so that `import tf_latentflow.bijectors`
loads the bijectors and what they need, not the models, Keras models or TFDS.
"""

import importlib

__version__ = "0.1.0"

_LAZY = {"LatentFlowVAE": "tf_latentflow.model", "LSTMBaseline": "tf_latentflow.baseline"}

__all__ = ["LSTMBaseline", "LatentFlowVAE"]


def __getattr__(name):
    if name in _LAZY:
        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'tf_latentflow' has no attribute {name!r}")
