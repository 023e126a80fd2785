"""Building a run's model: the settings that define it, the length model, and rebuilding a
trained run's model from its config.json.

`ModelSettings` is everything that fixes a model's architecture (a frozen dataclass;
`TrainConfig.model_settings` gives a run's). `build_model` makes the model the
registry names (`registry.MODELS`): a `LatentFlowVAE` with the named prior, or the
`LSTMBaseline`. A run directory stores the built model's `get_config()` as
`model_config` in config.json, and `model_from_config` rebuilds it from there (the
exporter does; it never needs the training code).
"""

from __future__ import annotations

import dataclasses

import numpy as np

from tf_latentflow.layers.context_mlp import CONTEXT_LAYERS, INITS
from tf_latentflow.runs import registry

__all__ = ["ModelSettings", "build_model", "make_length_model", "model_class", "model_from_config",
           "prior_options"]


@dataclasses.dataclass(frozen=True)
class ModelSettings:
    """What fixes a model's architecture (the paper's sizes by default)."""

    model: str
    dataset: str
    latent_size: int = 50
    embedding_size: int = 500
    hidden_units: int = 500
    prior_lstm_units: int = 500
    num_flow_layers: int = 5
    flow_hidden_units: tuple[int, ...] = (100, 100)
    prior_dropout: float = 0.2
    baseline_dropout: float = 0.1
    inference_dropout: float = 0.0
    emission_dropout: float = 0.0
    scalar_map: str = "nlsq"
    nlsq_damping: bool = False
    flow_context: str = "all"
    flow_init: str = "glorot"

    def __post_init__(self):
        entry = registry.model_entry(self.model)
        registry.dataset(self.dataset)  # DataError for an unknown name
        if self.scalar_map not in ("nlsq", "affine"):
            raise ValueError(f"scalar_map must be nlsq or affine, got {self.scalar_map!r}")
        if self.flow_context not in CONTEXT_LAYERS:
            raise ValueError(f"flow_context must be one of {CONTEXT_LAYERS}, got {self.flow_context!r}")
        if self.flow_init not in INITS:
            raise ValueError(f"flow_init must be one of {INITS}, got {self.flow_init!r}")
        if self.scalar_map != "nlsq" and not entry.flows:
            raise ValueError(f"scalar_map {self.scalar_map!r} applies to flow priors; model "
                             f"{self.model!r} has no scalar map")
        if self.nlsq_damping and (not entry.flows or self.scalar_map != "nlsq"):
            raise ValueError(f"nlsq_damping applies to NLSq flows only; model {self.model!r} with "
                             f"scalar map {self.scalar_map!r} has none")
        for name in ("prior_dropout", "baseline_dropout", "inference_dropout", "emission_dropout"):
            if not 0.0 <= getattr(self, name) < 1.0:
                raise ValueError(f"{name} must be in [0, 1), got {getattr(self, name)}")
        if not entry.is_latent and (self.inference_dropout or self.emission_dropout):
            raise ValueError(f"inference_dropout and emission_dropout apply to the latent models; "
                             f"{self.model!r} has neither network (its dropout: baseline_dropout)")
        if not entry.flows and (self.flow_context, self.flow_init) != ("all", "glorot"):
            raise ValueError(f"flow_context and flow_init apply to flow priors only; model "
                             f"{self.model!r} has none")
        if self.model in ("af-af", "af-only") and self.latent_size > min(self.flow_hidden_units):
            raise ValueError(
                f"latent_size {self.latent_size} is larger than the MADE width "
                f"{min(self.flow_hidden_units)} (flow_hidden_units {self.flow_hidden_units}): every "
                f"MADE hidden layer needs at least latent_size units")

    @property
    def entry(self) -> registry.ModelEntry:
        return registry.model_entry(self.model)

    @property
    def prior_name(self) -> str | None:
        """The prior's registry name (None for the baseline); "-affine" is the "- NLSq" ablation."""
        return self.entry.prior_name(self.scalar_map)


def prior_options(settings: ModelSettings) -> dict:
    """`make_prior`'s options for these settings; only those that differ from its defaults,
    so the model_config of a run without them reads as before they existed."""
    options = {}
    if settings.entry.time_lstm:
        options["lstm_dropout"] = settings.prior_dropout
    if settings.nlsq_damping:
        options["nlsq_damping"] = True
    if settings.flow_context != "all":
        options["flow_context_layers"] = settings.flow_context
    if settings.flow_init != "glorot":
        options["flow_init"] = settings.flow_init
    return options


def model_class(model: str) -> type:
    """The Keras model class of a registry model name."""
    if registry.model_entry(model).is_latent:
        from tf_latentflow.model import LatentFlowVAE
        return LatentFlowVAE
    from tf_latentflow.baseline import LSTMBaseline
    return LSTMBaseline


def make_length_model(lengths, *, dataset: str, longest: int | None = None):
    """p(T) from the training and validation lengths (`layers.LengthModel`: the reference's
    rule, add-one smoothed for music); ValueError if `longest` (e.g. the longest test
    sequence) exceeds its support."""
    from tf_latentflow.layers.length_model import LengthModel

    lengths = np.asarray(lengths)
    model = LengthModel.from_lengths(lengths, smoothing=not registry.dataset(dataset).is_text,
                                     name="length_model")
    longest = int(max(lengths.max(), longest or 0))
    if longest > model.max_length:
        raise ValueError(f"a {dataset} sequence of length {longest} exceeds the length model's "
                         f"maximum {model.max_length}")
    return model


def build_model(settings: ModelSettings, length_model, vocab_size: int | None = None,
                policy: str = "float32"):
    """The registry's model for `settings` (built: every weight exists), computing in
    `policy`; text datasets need `vocab_size`."""
    data = registry.dataset(settings.dataset)
    if data.is_text and vocab_size is None:
        raise ValueError(f"{settings.dataset} is text: its model needs the vocabulary size")
    output = dict(vocab_size=vocab_size) if data.is_text else dict(num_notes=data.num_notes)
    cls = model_class(settings.model)
    if not settings.entry.is_latent:
        return cls(max_length=length_model.max_length, embedding_size=settings.embedding_size,
                   hidden_units=settings.hidden_units, dropout=settings.baseline_dropout,
                   length_model=length_model, dtype=policy, **output)
    return cls(max_length=length_model.max_length, prior=settings.prior_name,
               latent_size=settings.latent_size, embedding_size=settings.embedding_size,
               hidden_units=settings.hidden_units, prior_lstm_units=settings.prior_lstm_units,
               num_flow_layers=settings.num_flow_layers, flow_hidden_units=settings.flow_hidden_units,
               inference_dropout=settings.inference_dropout, emission_dropout=settings.emission_dropout,
               length_model=length_model, prior_kwargs=prior_options(settings), dtype=policy, **output)


def model_from_config(config: dict, policy: str = "float32"):
    """An untrained model from a run's config.json (`model_config`: the model's get_config()),
    computing in `policy` whatever the run trained in (a mixed_float16 GPU run exports in
    float32)."""
    model_config = dict(config["model_config"], dtype=policy)
    return model_class(config["model"]).from_config(model_config)
