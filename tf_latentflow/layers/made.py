"""MADE: a masked autoencoder for distribution estimation (Germain et al., 2015).

A `ContextMLP` whose kernels are masked so that the outputs for input
dimension i depend only on the inputs that come before i in a chosen order
(paper section 4.1, the conditioner of the AF layers):

    out[..., i, :] = F_i(x_{<i}, context)

Degrees (1-based): input i in the natural order has degree m(i) = i + 1; in the
reversed order m(i) = D - i. A kernel entry from a unit of degree m to a hidden
unit of degree m' is kept iff m <= m'; from a hidden unit of degree m to output
i iff m < m(i). Hidden unit k has degree

  context_layers="all":   1 + (k mod (D - 1)) in 1..D-1; the context enters every
                          layer unmasked, so the first dimension in the order (which
                          sees no inputs) is still conditioned on it;
  context_layers="first": k mod D in 0..D-1; the context enters the first layer only,
                          with degree 0 (every unit sees it), and the units of degree
                          0 see nothing else, so they carry the context to the first
                          dimension's outputs (TextFlow MADE.py, "sequential" order).
"""

import keras
import numpy as np

from tf_latentflow.layers.context_mlp import ContextMLP

__all__ = ["MADE"]

ORDERS = ("natural", "reversed")


@keras.saving.register_keras_serializable(package="tf_latentflow")
class MADE(ContextMLP):
    """Masked autoregressive network `[..., D] -> [..., D, num_params]` (Keras 3 layer).

    Args:
      num_params: parameters produced per input dimension.
      hidden_units: widths of the hidden layers (default 2 x 100, as in the
        paper); each must be at least D, so every degree 1..D-1 has a unit.
      order: "natural" (dimension 0 first) or "reversed" (dimension D-1 first).
      activation, output_scale, context_layers, init: see `ContextMLP`.

    Call as `made(x)` or `made(x, context=h)` with `h` of shape `[..., C]`.
    """

    def __init__(self, num_params, hidden_units=(100, 100), order="natural", activation="relu",
                 output_scale=1e-2, context_layers="all", init="glorot", **kwargs):
        if order not in ORDERS:
            raise ValueError(f"order must be one of {ORDERS}; got {order!r}")
        super().__init__(num_params=num_params, num_outputs=None, hidden_units=hidden_units,
                         activation=activation, output_scale=output_scale,
                         context_layers=context_layers, init=init, **kwargs)
        self.order = order

    def input_degrees(self, event_size):
        """Degree of each input dimension, 1..D, in this layer's order."""
        degrees = np.arange(1, event_size + 1)
        return degrees if self.order == "natural" else degrees[::-1].copy()

    def _masks(self, input_size, num_outputs):
        too_narrow = [u for u in self.hidden_units if u < input_size]
        if too_narrow:
            raise ValueError(
                f"MADE hidden layers must have at least as many units as the event size "
                f"({input_size}); got hidden_units={self.hidden_units}")
        degrees = [self.input_degrees(input_size)]
        for units in self.hidden_units:
            if self.context_layers == "first":
                degrees.append(np.arange(units) % input_size)
            else:
                degrees.append(1 + np.arange(units) % max(input_size - 1, 1))
        masks = [(prev[:, None] <= cur[None, :]) for prev, cur in zip(degrees[:-1], degrees[1:])]
        out = degrees[0][None, :] > degrees[-1][:, None]  # [last_hidden, D]
        # Output column i * num_params + p belongs to dimension i.
        masks.append(np.repeat(out, self.num_params, axis=1))
        return [m.astype(np.float32) for m in masks]

    def get_config(self):
        config = super().get_config()
        config.pop("num_outputs", None)
        config["order"] = self.order
        return config
