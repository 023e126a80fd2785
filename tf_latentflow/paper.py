"""The paper's reported results, the one place the code holds them: Ziegler & Rush,
"Latent Normalizing Flows for Discrete Sequences", ICML 2019.

  table 1   character-level language modelling on Penn Treebank: test NLL in bits per
            character (the LSTM baseline and the three flow priors)
  table 2   ablations on Penn Treebank, bits per character (the "- NLSq" prior is
            "-affine" here, "- AF hidden" is "af-af-af-hidden")
  table 3   polyphonic music, four datasets: test NLL in nats per time step

Both units are per step with T + 1 steps per sequence (`evaluation`). Plain Python.
"""

from __future__ import annotations

import types

__all__ = ["UNITS", "TABLES", "PAPER_NLL", "unit", "tables", "paper_nll"]

# The reporting unit and the tables of each kind of dataset.
UNITS = types.MappingProxyType({"music": "nats per time step", "text": "bits per character"})
TABLES = types.MappingProxyType({"music": (3,), "text": (1, 2)})

# Test NLL by dataset and model ("lstm": the LSTM baseline): table 3 (music) and table 1
# (ptb_char). Models not listed (the PTB ablations of table 2, "af-only") have no entry.
PAPER_NLL = types.MappingProxyType({
    "nottingham": {"af-af": 2.39, "af-scf": 2.56, "iaf-scf": 2.54, "lstm": 3.43},
    "piano_midi": {"af-af": 8.19, "af-scf": 8.26, "iaf-scf": 8.25, "lstm": 7.77},
    "muse_data": {"af-af": 6.92, "af-scf": 6.95, "iaf-scf": 7.06, "lstm": 7.23},
    "jsb_chorales": {"af-af": 6.53, "af-scf": 6.64, "iaf-scf": 6.59, "lstm": 8.17},
    "ptb_char": {"af-af": 1.42, "af-scf": 1.46, "iaf-scf": 1.63, "lstm": 1.41},
})


def unit(kind: str) -> str:
    """The paper's unit of a per-step NLL for a kind of dataset ("music" or "text")."""
    return UNITS[kind]


def tables(kind: str) -> tuple[int, ...]:
    """The paper's tables that report a kind of dataset ("music": 3; "text": 1 and 2)."""
    return TABLES[kind]


def paper_nll(dataset: str, model: str) -> float | None:
    """The paper's test NLL of `model` on `dataset` (canonical names), None if it has none."""
    return PAPER_NLL.get(dataset, {}).get(model)
