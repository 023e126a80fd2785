"""The multilayer flow within one time step: AF-in-hidden and SCF-in-hidden stacks.

Paper section 4.3: at step t the prior maps eps_t in R^H to z_t by L
layers (default 5) of either

  "af"   AutoregressiveFlow with a MADE conditioner (sampling serial in H,
         density one pass), or
  "scf"  Coupling layers, half of the dimensions conditioning the other half
         (both directions one pass),
  "elementwise"  ContextElementwise layers: each dimension's map depends on
         the context only (the paper's "- AF hidden" ablation),

each layer conditioned on the same context h_t (e.g. an LSTM state), with the
order of the dimensions reversed between layers. The reversal is folded into
the layers (MADE order alternates natural/reversed; the coupling pass-through
half alternates first/last), which equals a reversal permutation between them
without the gather.

`HiddenFlowStack` is the Keras 3 layer that owns the conditioner weights (so
Keras models and checkpoints track them); its `bijector` property is a TFP
bijector (`ConditionalChain`) usable in any TFP pipeline:

    stack = HiddenFlowStack(event_size=50, kind="af", context_size=500)
    z, fldj = stack.bijector.forward_and_log_det(eps, context=h)
    dist = tfd.TransformedDistribution(tfd.Sample(tfd.Normal(0., 1.), 50), stack.bijector)
"""

import keras

from tf_latentflow.bijectors import (AutoregressiveFlow, ConditionalChain, ContextElementwise,
                                     Coupling)
from tf_latentflow.bijectors.scalar_maps import scalar_map_class
from tf_latentflow.layers.context_mlp import ContextMLP
from tf_latentflow.layers.made import MADE

__all__ = ["HiddenFlowStack", "STACK_KINDS"]

STACK_KINDS = ("af", "scf", "elementwise")


@keras.saving.register_keras_serializable(package="tf_latentflow")
class HiddenFlowStack(keras.layers.Layer):
    """L conditional flow layers over the last axis (size `event_size`).

    Args:
      event_size: H, the size of the last axis.
      kind: "af" (MADE conditioners), "scf" (coupling conditioners) or
        "elementwise" (context-only conditioners).
      num_layers: L (paper: 5).
      hidden_units: conditioner hidden widths (paper: 2 x 100).
      scalar_map: a key of `bijectors.SCALAR_MAPS` ("nlsq" default, "nlsq-damping", "affine").
      context_size: size of the context vector, or None for an unconditional stack.
      activation: conditioner hidden activation.
      context_layers: where the context enters each conditioner: "all" layers or the
        "first" only (`layers.ContextMLP`; the reference code's choice is "first").
      init: conditioner initialisation, "glorot" or "reference" (`layers.ContextMLP`).

    Calling the layer, `stack(z, context=h)`, evaluates the density direction
    and returns `(eps, log|det d eps / d z|)`.
    """

    def __init__(self, event_size, kind="af", num_layers=5, hidden_units=(100, 100),
                 scalar_map="nlsq", context_size=None, activation="relu", context_layers="all",
                 init="glorot", **kwargs):
        # Keep the caller's dtype for the flow math and log-dets (float32, or
        # float64): Keras would otherwise cast the inputs to the policy's compute
        # dtype (e.g. bfloat16 under mixed precision). The conditioner networks
        # still follow the policy; their outputs are cast back (see
        # bijectors.conditioning.call_conditioner).
        kwargs.setdefault("autocast", False)
        super().__init__(**kwargs)
        if kind not in STACK_KINDS:
            raise ValueError(f"kind must be one of {STACK_KINDS}; got {kind!r}")
        if num_layers < 1:
            raise ValueError(f"num_layers must be positive; got {num_layers}")
        if event_size < 1:
            raise ValueError(f"event_size must be positive; got {event_size}")
        if kind == "scf" and event_size < 2:
            raise ValueError("an SCF stack needs event_size >= 2 to split the dimensions")
        if kind == "elementwise" and context_size is None:
            raise ValueError("an elementwise stack is conditioned on the context only: "
                             "give context_size")
        self.event_size = int(event_size)
        self.kind = kind
        self.num_layers = int(num_layers)
        self.hidden_units = tuple(int(u) for u in hidden_units)
        self.scalar_map = scalar_map
        self.context_size = None if context_size is None else int(context_size)
        self.activation = activation
        self.context_layers = context_layers
        self.init = init
        options = dict(hidden_units=self.hidden_units, activation=activation,
                       context_layers=context_layers, init=init, dtype=self.dtype_policy)
        num_params = scalar_map_class(scalar_map).num_unconstrained_params
        self.conditioners = []
        for layer in range(self.num_layers):
            if kind == "af":
                net = MADE(num_params, order="natural" if layer % 2 == 0 else "reversed",
                           name=f"made_{layer}", **options)
            elif kind == "elementwise":
                net = ContextMLP(num_params, num_outputs=self.event_size,
                                 name=f"context_net_{layer}", **options)
            else:
                kept = abs(self._num_masked(layer))
                net = ContextMLP(num_params, num_outputs=self.event_size - kept,
                                 name=f"coupling_net_{layer}", **options)
            self.conditioners.append(net)

    def _num_masked(self, layer):
        """Pass-through part of coupling layer `layer` (TFP RealNVP convention).

        Even layers pass the first floor(H/2) dimensions through, odd layers the
        last ceil(H/2): with odd H the middle dimension then conditions the
        others every second layer instead of never.
        """
        return self.event_size // 2 if layer % 2 == 0 else -((self.event_size + 1) // 2)

    def build(self, inputs_shape=None, context_shape=None):
        if inputs_shape is not None and inputs_shape[-1] not in (None, self.event_size):
            raise ValueError(f"{self.name}: expected a last axis of {self.event_size}; "
                             f"got {inputs_shape}")
        context = None if self.context_size is None else (None, self.context_size)
        for layer, net in enumerate(self.conditioners):
            if net.built:
                continue
            if self.kind == "elementwise":
                net.build((None, self.context_size))  # the context is the network's input
            else:
                width = self.event_size if self.kind == "af" else abs(self._num_masked(layer))
                net.build((None, width), context)
        self.built = True

    @property
    def bijector(self):
        """The stack as a TFP bijector (`ConditionalChain`); density applies layer 0 first."""
        if not self.built:
            self.build()
        if self.kind == "af":
            layers = [AutoregressiveFlow(net, scalar_map=self.scalar_map, name=f"af_{i}")
                      for i, net in enumerate(self.conditioners)]
        elif self.kind == "elementwise":
            layers = [ContextElementwise(net, scalar_map=self.scalar_map, name=f"elementwise_{i}")
                      for i, net in enumerate(self.conditioners)]
        else:
            layers = [Coupling(net, num_masked=self._num_masked(i), scalar_map=self.scalar_map,
                               name=f"coupling_{i}")
                      for i, net in enumerate(self.conditioners)]
        return ConditionalChain(layers, name=f"{self.kind}_stack")

    def call(self, inputs, context=None):
        return self.bijector.inverse_and_log_det(inputs, context=context)

    def get_config(self):
        config = super().get_config()
        config.update(event_size=self.event_size, kind=self.kind, num_layers=self.num_layers,
                      hidden_units=list(self.hidden_units), scalar_map=self.scalar_map,
                      context_size=self.context_size, activation=self.activation,
                      context_layers=self.context_layers, init=self.init)
        return config
