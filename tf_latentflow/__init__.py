"""tf_latentflow: latent normalizing flows for discrete sequences.

TensorFlow / Keras 3 / TensorFlow Probability implementation of
Ziegler & Rush, "Latent Normalizing Flows for Discrete Sequences", ICML 2019.

Sub-packages:
  bijectors  TFP bijectors: the NLSq and affine scalar maps, AF and SCF stacks.
  layers     Keras 3 layers: MADE (masked autoregressive conditioner).
"""

__version__ = "0.1.0"
