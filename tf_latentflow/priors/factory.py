"""`make_prior`: a sequence prior from its name and the model sizes."""

from tf_latentflow.priors.gaussian import StandardNormalPrior
from tf_latentflow.priors.registry import parse_prior_name
from tf_latentflow.priors.sequence_flow import SequenceFlowPrior

__all__ = ["make_prior"]


def make_prior(prior_name, *, latent_size=50, max_length, lstm_units=500, lstm_layers=2,
               num_flow_layers=5, flow_hidden_units=(100, 100), lstm_dropout=0.0,
               nlsq_damping=False, flow_context_layers="all", flow_init="glorot", **kwargs):
    """The prior called `prior_name` (e.g. "af-af", "iaf-scf", "af-af-affine"), with the paper's sizes.

    Args:
      latent_size: H, the latent size per step (paper: 50).
      max_length: depth of the T-features (the length model's maximum length).
      lstm_units, lstm_layers: the LSTM over time (paper: 2 x 500).
      num_flow_layers: L, layers of the flow within a step (paper: 5).
      flow_hidden_units: MADE / coupling network widths (paper: 2 x 100).
      lstm_dropout: dropout on the time LSTM's outputs in training (reference: 0.2).
      nlsq_damping: NLSq maps with the reference code's damped parameterisation
        (scalar map "nlsq-damping"); no effect on affine ("-affine") priors.
      flow_context_layers: where the time context enters the within-step conditioners,
        "all" their layers or the "first" only (the reference code's; `layers.ContextMLP`).
      flow_init: conditioner initialisation, "glorot" or "reference" (`layers.ContextMLP`).
      kwargs: passed to the Keras layer (e.g. `name`).
    """
    # "damped_nlsq": nlsq_damping's name in the model configs of runs saved before
    nlsq_damping = nlsq_damping or bool(kwargs.pop("damped_nlsq", False))
    spec = parse_prior_name(prior_name)
    if spec.time == "none" and spec.hidden == "none":
        return StandardNormalPrior(latent_size=latent_size, **kwargs)
    return SequenceFlowPrior(
        latent_size=latent_size, max_length=max_length, time=spec.time, hidden=spec.hidden,
        scalar_map="nlsq-damping" if nlsq_damping and spec.scalar_map == "nlsq" else spec.scalar_map,
        lstm_units=lstm_units, lstm_layers=lstm_layers,
        # The "- AF hidden" ablation is a single elementwise transform per step.
        num_flow_layers=1 if spec.hidden == "elementwise" else num_flow_layers,
        flow_hidden_units=flow_hidden_units, lstm_dropout=lstm_dropout,
        flow_context_layers=flow_context_layers, flow_init=flow_init, **kwargs)
