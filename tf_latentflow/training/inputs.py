"""What the training loop reads: a dataset's splits, their batches, and p(T) from them.

Training batches are shuffled with a seed fixed by (seed, epoch) and pooled by length
(`data.pooling`; runs configured with batching "bucketed": length buckets); with
jit_compile they are padded to a grid of lengths (pooled: `data.length_grid` of the
split, bucketed: `data.padded_length`) and filled to the batch size with weight-0 rows,
so that XLA meets a fixed set of shapes (`data.batch_shapes`), all known before the
first step. Evaluation batches (pooled) are the split sorted by length.
"""

from __future__ import annotations

import dataclasses
import os

import numpy as np
import tensorflow as tf

from tf_latentflow import data as D
from tf_latentflow.runs import make_length_model, registry
from tf_latentflow.training.config import TrainConfig

__all__ = ["XLA_TIME_MULTIPLE", "POOL_BATCHES", "EPOCH_VALIDATION", "DataBundle", "load_data", "epoch_validation_split",
           "batch_config", "batches", "length_model", "zero_batch"]

# With jit_compile, batches are padded to this grid (`data.padded_length`: multiples of
# 16 steps up to 256, coarser above) and training batches filled to the batch size, so
# that XLA compiles one program per padded length (~10 for JSB), all before epoch 1.
XLA_TIME_MULTIPLE = 16
# Pooled batching (`data.pooling`): pools of about this many batches, as the reference's
# torchtext iterator.
POOL_BATCHES = 100
# The fixed validation subset of `--validation-subset` (a split of the bundle only).
EPOCH_VALIDATION = "validation_subset"


@dataclasses.dataclass(frozen=True)
class DataBundle:
    splits: dict  # split name -> TFDS examples (tf.data.Dataset)
    lengths: dict  # split name -> np.ndarray of lengths
    vocabulary: tuple | None  # text: id -> symbol
    # The whole training split's lengths when `splits["train"]` is a subset (None: the same).
    full_train_lengths: np.ndarray | None = None


def load_data(config: TrainConfig) -> DataBundle:
    """Prepare (once) and open the dataset's three splits (training: `config.train_subset`
    of it when given, `data.fixed_subset`); with `config.validation_subset` also the
    per-epoch validation pass's fixed subset of the validation split, `EPOCH_VALIDATION`."""
    builder = D.prepare(config.dataset, data_dir=os.path.expanduser(config.prepared_dir),
                        source_dir=config.data_dir)
    splits = {name: builder.as_dataset(split=name) for name in ("train", "validation", "test")}
    lengths = {name: D.split_lengths(ds) for name, ds in splits.items()}
    full_train_lengths = None
    if config.train_subset:
        full_train_lengths = lengths["train"]
        splits["train"], lengths["train"] = D.fixed_subset(splits["train"], lengths["train"],
                                                           config.train_subset)
    if config.validation_subset:
        # The per-epoch pass's own split (`EPOCH_VALIDATION`); "validation" stays whole.
        splits[EPOCH_VALIDATION], lengths[EPOCH_VALIDATION] = D.fixed_subset(
            splits["validation"], lengths["validation"], config.validation_subset)
    vocabulary = tuple(builder.info.metadata["vocab"]) if config.is_text else None
    return DataBundle(splits=splits, lengths=lengths, vocabulary=vocabulary,
                      full_train_lengths=full_train_lengths)


def epoch_validation_split(bundle: DataBundle) -> str:
    """The split the per-epoch validation pass reads: `EPOCH_VALIDATION` with
    `--validation-subset`, else "validation"."""
    return EPOCH_VALIDATION if EPOCH_VALIDATION in bundle.splits else "validation"


def batch_config(config: TrainConfig, bundle: DataBundle, split: str = "train", *,
                 epoch: int | None = None, batch_size: int | None = None) -> D.BatchConfig:
    """How `split` is batched: training batches (epoch given) are shuffled with a seed fixed
    by (seed, epoch); with jit_compile, padded to the XLA grid (with `pad_to_bucket`, to
    their length bucket's ceiling) and (training) filled to the batch size, so that every
    training shape is known before the run starts."""
    training = epoch is not None
    if config.batching == "pooled":
        grid = D.length_grid(bundle.lengths[split], config.length_grid_size) if config.jit_compile else ()
        return D.BatchConfig(
            batch_size=batch_size or (config.batch_size if training else config.eval_batch_size),
            shuffle=training, seed=(config.seed * 1_000_003 + epoch) if training else None,
            pool_batches=POOL_BATCHES, length_grid=grid, fill_batches=training and config.jit_compile)
    boundaries = (D.quantile_boundaries(bundle.lengths["train"], config.num_buckets)
                  if config.num_buckets > 1 else ())
    pad_to_bucket = config.pad_to_bucket and config.jit_compile
    return D.BatchConfig(
        batch_size=batch_size or (config.batch_size if training else config.eval_batch_size),
        shuffle=training, seed=(config.seed * 1_000_003 + epoch) if training else None,
        bucket_boundaries=boundaries, pad_to_multiple=XLA_TIME_MULTIPLE if config.jit_compile else 1,
        fill_batches=training and config.jit_compile, pad_to_bucket=pad_to_bucket,
        longest=int(bundle.lengths[split].max()) if pad_to_bucket else None)


def batches(config: TrainConfig, bundle: DataBundle, split: str, *, epoch: int | None = None,
            batch_size: int | None = None) -> tf.data.Dataset:
    """Batches of a split (`batch_config`). Sharded by data under several workers: every
    worker builds the same global batches and takes its replicas' rows of each
    (`tf.distribute`'s AutoShardPolicy.DATA; never whole input files, whose count need
    not divide among the workers)."""
    dataset = D.make_batches(bundle.splits[split], batch_config(config, bundle, split, epoch=epoch,
                                                                batch_size=batch_size))
    options = tf.data.Options()
    options.experimental_distribute.auto_shard_policy = tf.data.experimental.AutoShardPolicy.DATA
    return dataset.with_options(options)


def length_model(config: TrainConfig, bundle: DataBundle):
    """p(T) from training and validation lengths (`runs.make_length_model`); refuses a
    dataset whose test split has a longer sequence than its support.

    With a training subset (`--train-subset`) p(T) still comes from the whole training
    split: the subset limits the sequences the networks learn from, not the length
    histogram, and text's unsmoothed p(T) from a subset would give lengths it never saw
    (the longest PTB test sentence, for one) probability 0 and the model no support."""
    train = bundle.lengths["train"] if bundle.full_train_lengths is None else bundle.full_train_lengths
    lengths = np.concatenate([train, bundle.lengths["validation"]])
    return make_length_model(lengths, dataset=config.dataset, longest=int(bundle.lengths["test"].max()))


def zero_batch(config: TrainConfig, rows: int, steps: int) -> dict:
    """A batch of zeros of the given shape, with the keys and dtypes of `batches`' batches."""
    entry = registry.dataset(config.dataset)
    x_shape = [rows, steps] + ([] if entry.is_text else [entry.num_notes])
    lengths = tf.ones([rows], tf.int32)
    return {"x": tf.zeros(x_shape, tf.int32 if entry.is_text else tf.float32), "lengths": lengths,
            "mask": tf.sequence_mask(lengths, steps, dtype=tf.float32), "weight": tf.ones([rows], tf.float32)}
