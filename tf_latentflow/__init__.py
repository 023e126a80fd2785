"""tf_latentflow: latent normalizing flows for discrete sequences.

TensorFlow / Keras 3 / TensorFlow Probability implementation of
Ziegler & Rush, "Latent Normalizing Flows for Discrete Sequences", ICML 2019.

Sub-packages and modules:
  bijectors   TFP bijectors: the NLSq and affine scalar maps, AF and SCF layers.
  layers      Keras 3 layers: MADE, conditioner networks, within-step flow stacks.
  priors      sequence priors p(z_1:T | T) (AF/AF, AF/SCF, IAF/SCF, AF-only, ablations).
  data        TFDS builders, tf.data pipelines, the length model, T-features.
  model       LatentFlowVAE: inference network, flow prior, emission, ELBO, NLL, sampling.
  baseline    LSTMBaseline, the paper's LSTM language model.
  training    configuration, schedules and the strategy-aware training loop.
  evaluation  NLL units (bits per character, nats per step) and log-mean-exp.
"""

from tf_latentflow import evaluation  # noqa: F401
from tf_latentflow.baseline import LSTMBaseline
from tf_latentflow.model import LatentFlowVAE

__version__ = "0.1.0"

__all__ = ["LSTMBaseline", "LatentFlowVAE", "evaluation"]
