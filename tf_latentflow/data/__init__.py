"""Data layer of tf_latentflow: benchmark files, TFDS builders and tf.data pipelines.

The length model p(T) and the T-features are model components: `tf_latentflow.layers`.

Importing `tf_latentflow.data.music` and `tf_latentflow.data.ptb` (`prepare` does)
registers five TFDS builders, so that
`tfds.load("jsb_chorales", data_dir=..., builder_kwargs={"source_dir": DIR})`
works; likewise "nottingham", "piano_midi", "muse_data" and "ptb_char". This
package itself does not import TensorFlow Datasets.
Raw files are read offline from DIR, the TFDS manual dir or $LATENTFLOW_DATA_DIR.

Modules:
  errors        DataError (one-line messages for bad or missing input)
  sources       finding, downloading (sha256) and safely unpickling raw files
  builder       shared TFDS builder base (source_dir, allow_download)
  music         the four BL2012 music builders, JSON reader and checks
  ptb           character-level PTB builder and vocabulary
  catalog       the datasets: names, kinds, aliases, units, builders; `prepare`
  pipeline      BatchConfig, make_batches, distribute_batches, padded_length, batch_shapes,
                bucket_ceilings
  pooling       length-pooled batching: epoch_batches, length_grid, padding_ratio
  stats         per-split statistics (the `info` CLI)
"""

from tf_latentflow.data.catalog import ALIASES, DATASETS, NUM_NOTES, canonical_name, prepare
from tf_latentflow.data.errors import DataError, MissingDataError
from tf_latentflow.data.pipeline import (BatchConfig, batch_shapes, bucket_ceilings, distribute_batches,
                                         fixed_subset, make_batches,
                                         padded_length, quantile_boundaries, split_lengths,
                                         to_sequences, unpad)
from tf_latentflow.data.pooling import epoch_batches, length_grid, padding_ratio

__all__ = [
    "ALIASES", "DATASETS", "NUM_NOTES", "canonical_name", "prepare", "DataError", "MissingDataError",
    "BatchConfig", "batch_shapes", "bucket_ceilings", "distribute_batches", "fixed_subset",
    "make_batches", "padded_length",
    "quantile_boundaries", "split_lengths", "to_sequences", "unpad",
    "epoch_batches", "length_grid", "padding_ratio",
]
