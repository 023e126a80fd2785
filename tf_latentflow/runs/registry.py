"""The one registry of what a run can be: the datasets and the models, by name.

Datasets (`DATASETS`, `ALIASES`, `dataset`) are `tf_latentflow.data.catalog`'s
list, re-exported here beside the models so that the trainer, the exporter and the
CLIs ask one place. Models (`MODELS`, `model_entry`) name a sequence model and say
which kind it is and which options apply to it:

  "af-af", "af-scf", "iaf-scf"  latent flow VAEs with the paper's priors (section 4.3)
  "af-only"                     the prior without dynamics across time
  "af-af-af-hidden"             the "- AF hidden" ablation (table 2)
  "standard-normal"             a VAE with a fixed N(0, I) prior (reference point)
  "lstm"                        the autoregressive LSTM baseline (tables 1 and 3)

The paper's "- NLSq" ablation is the affine one here: a setting of every flow
(`scalar_map="affine"`), not a name of its own; `ModelEntry.prior_name` turns the
two into the prior's name ("af-af-affine", `tf_latentflow.priors.registry`). Plain Python; reading it does not load TensorFlow
Datasets.
"""

from __future__ import annotations

import dataclasses
import types

from tf_latentflow.data.catalog import ALIASES, DATASETS, NUM_NOTES, DatasetEntry, canonical_name

__all__ = ["ALIASES", "DATASETS", "NUM_NOTES", "DatasetEntry", "dataset", "ModelEntry", "MODELS",
           "MODEL_NAMES", "model_entry", "dataset_names"]


@dataclasses.dataclass(frozen=True)
class ModelEntry:
    """One model name.

    kind: "latent" (`LatentFlowVAE`: importance-sampled NLL, ELBO training with a KL
      term) or "autoregressive" (`LSTMBaseline`: exact NLL, no KL).
    prior: the base prior name for latent models (`priors.registry`), None otherwise.
    flows: whether the prior has flows (the scalar map and conditioner options apply).
    time_lstm: whether the prior has an LSTM across time (its dropout applies).
    """

    name: str
    kind: str
    prior: str | None = None
    flows: bool = False
    time_lstm: bool = False

    @property
    def is_latent(self) -> bool:
        return self.kind == "latent"

    def prior_name(self, scalar_map: str = "nlsq") -> str | None:
        """The prior's registry name; scalar map "affine" is the paper's "- NLSq" ablation."""
        if self.prior is None:
            return None
        return self.prior + "-affine" if scalar_map == "affine" else self.prior


def _flow(name, time_lstm=True):
    return ModelEntry(name, "latent", prior=name, flows=True, time_lstm=time_lstm)


MODELS = types.MappingProxyType({
    "af-af": _flow("af-af"),
    "af-scf": _flow("af-scf"),
    "iaf-scf": _flow("iaf-scf"),
    "af-only": _flow("af-only", time_lstm=False),
    "af-af-af-hidden": _flow("af-af-af-hidden"),
    "standard-normal": ModelEntry("standard-normal", "latent", prior="standard-normal"),
    "lstm": ModelEntry("lstm", "autoregressive"),
})
MODEL_NAMES = tuple(MODELS)


def model_entry(name: str) -> ModelEntry:
    """The entry of model `name`; ValueError listing the choices otherwise."""
    if name not in MODELS:
        raise ValueError(f"unknown model {name!r}; choose from {MODEL_NAMES}")
    return MODELS[name]


def dataset(name: str) -> DatasetEntry:
    """The entry of dataset `name` or an alias ("jsb", "ptb", ...); DataError otherwise."""
    return DATASETS[canonical_name(name)]


def dataset_names(kind: str) -> tuple[str, ...]:
    """The datasets of one kind ("music" or "text"), in the catalog's order."""
    return tuple(name for name, entry in DATASETS.items() if entry.kind == kind)
