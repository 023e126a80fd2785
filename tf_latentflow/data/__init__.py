"""Data layer of tf_latentflow: benchmarks, pipelines, the length model, T-conditioning.

Importing this package registers five TFDS builders, so that
`tfds.load("jsb_chorales", data_dir=..., builder_kwargs={"source_dir": DIR})`
works; likewise "nottingham", "piano_midi", "muse_data" and "ptb_char".
Raw files are read offline from DIR, the TFDS manual dir or $LATENTFLOW_DATA_DIR.

Modules:
  errors        DataError (one-line messages for bad or missing input)
  sources       finding, downloading (sha256) and safely unpickling raw files
  builder       shared TFDS builder base (source_dir, allow_download)
  music         the four BL2012 music builders, JSON reader and checks
  ptb           character-level PTB builder and vocabulary
  catalog       names, aliases, `prepare`
  pipeline      BatchConfig, make_batches, distribute_batches, padded_length, batch_shapes
  length_model  LengthModel: p(T) as a Keras layer
  t_features    t_indices, t_features, t_features_at (appendix D)
  stats         per-split statistics (the `info` CLI)
"""

from tf_latentflow.data import music, ptb  # noqa: F401  (defining the builders registers them)
from tf_latentflow.data.catalog import ALIASES, DATASETS, canonical_name, prepare
from tf_latentflow.data.errors import DataError, MissingDataError
from tf_latentflow.data.length_model import LengthModel, empirical_length_probs
from tf_latentflow.data.pipeline import (BatchConfig, batch_shapes, distribute_batches, make_batches,
                                         padded_length, quantile_boundaries, split_lengths,
                                         to_sequences, unpad)
from tf_latentflow.data.t_features import (PAD_INDEX, t_feature_rows, t_feature_rows_at, t_features,
                                           t_features_at, t_indices)

__all__ = [
    "ALIASES", "DATASETS", "canonical_name", "prepare", "DataError", "MissingDataError",
    "LengthModel", "empirical_length_probs", "BatchConfig", "batch_shapes", "distribute_batches",
    "make_batches", "padded_length",
    "quantile_boundaries", "split_lengths", "to_sequences", "unpad", "PAD_INDEX", "t_features",
    "t_features_at", "t_indices", "t_feature_rows", "t_feature_rows_at",
]
