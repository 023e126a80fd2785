"""tf.data pipelines: examples of a split -> padded batches for training and evaluation.

A batch is a dict

  x        music: float32 [B, T, 88] piano roll (0/1);  text: int32 [B, T] token ids
  lengths  int32 [B], the true lengths T_b
  mask     float32 [B, T], mask[b, t] = 1 if t < T_b else 0
  weight   float32 [B], 1 for a sequence of the split, 0 for a filler row (below)

where T is the longest length in the batch (or bucket), or that rounded up to the
padding grid (`padded_length`); padded steps of x are 0 (for text, 0 is the
"<pad>" id). Sequences are shuffled with a seed (an epoch order is a
deterministic function of the seed), optionally grouped into length buckets
(`tf.data.Dataset.bucket_by_sequence_length`) so that little padding is
computed, then padded. With shuffle=False the order is the split's published
order (bucketing then regroups it, deterministically).

Fixed shapes for XLA (`fill_batches` with `pad_to_multiple`): XLA compiles one
program per input shape, and a shuffled, bucketed epoch meets (batch size,
padded length) pairs that earlier epochs did not (each bucket's last, partial
batch has a different longest sequence every epoch). With `fill_batches` every
batch is completed to `batch_size` rows by copies of its first sequence with
weight 0, so the batch axis is constant, and the time axis takes one of the
values of `padded_length` over the split's lengths (`batch_shapes` lists them):
every shape a training run can meet is known before it starts. Copies of a real
sequence keep every computation on filler rows finite; the losses multiply them
by weight 0.

Fewer shapes (`pad_to_bucket`): a batch's padded length then is not that of its own
longest sequence but that of the longest sequence its length bucket can hold
(`bucket_ceilings`: boundary - 1 of each bucket, the split's `longest` for the last),
so a split meets one time length per bucket. On a large split such as PTB (42k
sentences, batch 15) nearly every batch's longest sentence is already near its
bucket's upper end, so this costs little padding and cuts the shapes XLA compiles
from one per grid length (17 for PTB characters) to one per bucket (4).

Length-pooled batching (`pool_batches` > 0, `pooling`): the reference iterator's
shuffle, pools of about `pool_batches` batches sorted by length, batches shuffled
within each pool; the time axis padded to a grid of lengths chosen for the split
(`pooling.length_grid`). Batches then hold sequences of nearly one length.

`distribute_batches` builds the same pipeline once per input pipeline of a
`tf.distribute.Strategy`, with per-replica batch size = global // replicas.

No tf.data autotuning: the maps run `MAP_PARALLELISM` calls at a time and
`PREFETCH_BATCHES` batches are prefetched, with `options.autotune.enabled =
False`. The trainers make a new iterator every epoch, and releasing an autotuned
iterator waits for its autotuning thread to finish its current sleep, which
doubles up to a minute (docs/performance.md has the measurement). The pipelines
only pad and batch small tensors, so a fixed parallelism costs nothing measurable.
"""

from __future__ import annotations

import dataclasses
import functools
from typing import Callable, Sequence

import numpy as np
import tensorflow as tf

from tf_latentflow.data import pooling

# Enough for any of the five benchmarks (PTB train has 41740 sentences): a full shuffle.
DEFAULT_SHUFFLE_BUFFER = 65536
# Fixed tf.data parallelism (autotuning is off; module docstring).
MAP_PARALLELISM = 2
PREFETCH_BATCHES = 2


@dataclasses.dataclass(frozen=True)
class BatchConfig:
    """How a split is turned into batches.

    Attributes:
      batch_size: sequences per batch (per replica inside `distribute_batches`,
        which takes the global size here and divides it).
      shuffle: shuffle the sequences (before bucketing) each epoch.
      seed: shuffle seed; with a seed the order of every epoch is reproducible.
      bucket_boundaries: increasing length boundaries; () disables bucketing.
        A sequence of length T goes to the first bucket with T < boundary.
      drop_remainder: drop the last incomplete batch (of every bucket).
      pad_to_multiple: pad the time axis of every batch up to the grid
        `padded_length(T, pad_to_multiple)` (1: to the longest sequence only). XLA
        compiles one program per shape, so a jit-compiled step over batches padded
        to multiples of 16 compiles a few programs instead of one per distinct
        length; padded steps are masked.
      fill_batches: complete every batch to `batch_size` rows with weight-0 copies
        of its first sequence (a constant batch axis; module docstring).
      pad_to_bucket: pad every batch's time axis to its bucket's ceiling
        (`bucket_ceilings`), not to its own longest sequence (module docstring).
      longest: the longest sequence of the split; needed by pad_to_bucket (the
        last bucket's ceiling). A longer sequence fails the pipeline.
      pool_batches: > 0: length-pooled batching with pools of about this many batches
        (`pooling.epoch_batches`; evaluation splits, without shuffle, sorted whole);
        bucket_boundaries, pad_to_multiple and pad_to_bucket then do not apply.
      length_grid: with pool_batches, the padded lengths (`pooling.length_grid`): a
        batch pads to the smallest one >= its longest sequence; () pads to the longest.
      deterministic: keep element order deterministic in parallel maps.
      shuffle_buffer: shuffle buffer size (default: larger than any split).
    """

    batch_size: int
    shuffle: bool = False
    seed: int | None = None
    bucket_boundaries: tuple[int, ...] = ()
    drop_remainder: bool = False
    pad_to_multiple: int = 1
    fill_batches: bool = False
    pad_to_bucket: bool = False
    longest: int | None = None
    pool_batches: int = 0
    length_grid: tuple[int, ...] = ()
    deterministic: bool = True
    shuffle_buffer: int = DEFAULT_SHUFFLE_BUFFER

    def __post_init__(self):
        if self.batch_size < 1:
            raise ValueError(f"BatchConfig: batch_size must be >= 1, got {self.batch_size}")
        b = tuple(self.bucket_boundaries)
        if any(x >= y for x, y in zip(b, b[1:])) or any(x < 1 for x in b):
            raise ValueError(f"BatchConfig: bucket_boundaries must be increasing positive ints, got {b}")
        if self.pad_to_multiple < 1:
            raise ValueError(f"BatchConfig: pad_to_multiple must be >= 1, got {self.pad_to_multiple}")
        if self.pad_to_bucket and (self.longest is None or self.longest < 1):
            raise ValueError(f"BatchConfig: pad_to_bucket needs the split's longest length, got {self.longest}")
        if self.shuffle and self.seed is None:
            raise ValueError("BatchConfig: shuffle=True needs a seed (reproducible order)")
        if self.pool_batches < 0:
            raise ValueError(f"BatchConfig: pool_batches must be >= 0, got {self.pool_batches}")
        if self.pool_batches and (self.bucket_boundaries or self.pad_to_bucket or self.pad_to_multiple > 1):
            raise ValueError("BatchConfig: pooled batching (pool_batches > 0) pads to length_grid, not to "
                             "buckets or a multiple")
        if self.length_grid and not self.pool_batches:
            raise ValueError("BatchConfig: length_grid applies to pooled batching (pool_batches > 0)")
        if any(a >= b for a, b in zip(self.length_grid, self.length_grid[1:])):
            raise ValueError(f"BatchConfig: length_grid must be increasing, got {self.length_grid}")


def to_sequences(examples: tf.data.Dataset) -> tf.data.Dataset:
    """TFDS examples -> {"x", "lengths"}: music piano_roll -> float32 [T, 88]; text tokens -> int32 [T]."""
    keys = set(examples.element_spec)
    if "piano_roll" in keys:
        def fn(e):
            return {"x": tf.cast(e["piano_roll"], tf.float32), "lengths": tf.cast(e["length"], tf.int32)}
    elif "tokens" in keys:
        def fn(e):
            return {"x": tf.cast(e["tokens"], tf.int32), "lengths": tf.cast(e["length"], tf.int32)}
    elif "x" in keys and "lengths" in keys:
        return examples
    else:
        raise ValueError(f"to_sequences: unknown example keys {sorted(keys)}")
    return examples.map(fn, num_parallel_calls=MAP_PARALLELISM, deterministic=True)


def padded_length(steps, multiple: int):
    """The padding grid: `steps` rounded up to a multiple of `multiple` while
    steps <= 16 * multiple, and beyond that to a multiple of a step that doubles
    each time the length doubles (32 above 256 for multiple 16, 64 above 512, ...):

        step(T) = multiple * 2^max(0, ceil(log2(T / (16 multiple))))
        padded_length(T) = ceil(T / step(T)) * step(T)

    so padding adds less than 1/8 of a long sequence (at most `multiple` - 1 steps
    on short ones) and lengths up to L meet O(8 log2 L) shapes, not one per length
    (50 up to 5000 for multiple 16). Works on Python ints, NumPy arrays and int32 tensors alike.
    """
    if multiple <= 1:
        return steps
    if isinstance(steps, (int, np.integer, np.ndarray)):
        steps = np.asarray(steps, np.int64)
        ratio = np.maximum(steps, 1) / (16 * multiple)
        step = multiple * 2 ** np.maximum(0, np.ceil(np.log2(ratio))).astype(np.int64)
        out = -(-steps // step) * step
        return int(out) if out.ndim == 0 else out
    steps = tf.convert_to_tensor(steps, tf.int32)
    # the same exponent with integers: smallest k >= 0 with 16 multiple 2^k >= steps
    k = tf.zeros_like(steps)
    for _ in range(31):
        k = tf.where(16 * multiple * tf.bitwise.left_shift(1, k) < steps, k + 1, k)
    step = multiple * tf.bitwise.left_shift(1, k)
    return (steps + step - 1) // step * step


def bucket_ceilings(config: "BatchConfig") -> tuple[int, ...]:
    """The padded length of each length bucket under `pad_to_bucket`: the grid length
    (`padded_length`) of the longest sequence the bucket can hold, boundary - 1, and for
    the last bucket `config.longest`."""
    if config.longest is None:
        raise ValueError("bucket_ceilings: the BatchConfig has no `longest`")
    tops = [b - 1 for b in config.bucket_boundaries] + [max(config.longest, 1)]
    return tuple(int(padded_length(max(top, 1), config.pad_to_multiple)) for top in tops)


def bucket_index(lengths, boundaries: Sequence[int]):
    """The bucket of each length: the number of boundaries <= it (a sequence of length T
    goes to the first bucket with T < boundary). NumPy arrays or tensors."""
    if isinstance(lengths, (int, np.integer, np.ndarray, list, tuple)):
        return np.searchsorted(np.asarray(boundaries), np.asarray(lengths), side="right")
    lengths = tf.convert_to_tensor(lengths)
    if not boundaries:
        return tf.zeros_like(lengths)
    return tf.reduce_sum(tf.cast(lengths[..., None] >= tf.constant(boundaries, lengths.dtype), lengths.dtype),
                         axis=-1)


def batch_shapes(lengths: Sequence[int], config: "BatchConfig") -> list[tuple[int, int]]:
    """Every (rows, padded length) a batch of a split with these `lengths` can have
    under `config` with `fill_batches`: (batch_size, padded_length(L)) for each
    length L of the split (a batch's padded length is that of its longest sequence);
    with `pad_to_bucket`, the ceiling of each bucket that holds one of the lengths."""
    if not config.fill_batches:
        raise ValueError("batch_shapes: the batch axis is only fixed with fill_batches=True")
    if config.pool_batches:
        grid = sorted({pooling.grid_length(int(n), config.length_grid) for n in lengths})
    elif config.pad_to_bucket:
        ceilings = bucket_ceilings(config)
        grid = sorted({ceilings[i] for i in bucket_index(np.asarray(lengths, np.int64),
                                                          config.bucket_boundaries)})
    else:
        grid = sorted({int(padded_length(int(n), config.pad_to_multiple)) for n in lengths})
    return [(config.batch_size, t) for t in grid]


def _pad_time_to(x, target):
    """Pad axis 1 of x with zeros up to `target` steps (>= its size)."""
    paddings = tf.concat([[[0, 0], [0, target - tf.shape(x)[1]]], tf.zeros([tf.rank(x) - 2, 2], tf.int32)],
                         axis=0)
    padded = tf.pad(x, paddings)
    padded.set_shape(x.shape[:1].concatenate([None]).concatenate(x.shape[2:]))
    return padded


def _pad_time(x, multiple: int):
    """Pad axis 1 of x with zeros up to `padded_length` of its size."""
    return _pad_time_to(x, padded_length(tf.shape(x)[1], multiple))


def _fill(batch, batch_size: int):
    """Complete a batch to `batch_size` rows: copies of row 0 with weight 0."""
    rows = tf.shape(batch["lengths"])[0]
    missing = batch_size - rows

    def complete(t):
        filled = tf.concat([t, tf.repeat(t[:1], missing, axis=0)], axis=0)
        filled.set_shape(tf.TensorShape([batch_size]).concatenate(t.shape[1:]))
        return filled

    weight = tf.concat([tf.ones([rows]), tf.zeros([missing])], axis=0)
    weight.set_shape([batch_size])
    return {"x": complete(batch["x"]), "lengths": complete(batch["lengths"]), "weight": weight}


def _pad_to_bucket(x, lengths, boundaries: tuple[int, ...], ceilings: tuple[int, ...]):
    """Pad the time axis of a batch (one bucket's sequences) to its bucket's ceiling."""
    target = tf.gather(tf.constant(ceilings, tf.int32), bucket_index(tf.reduce_max(lengths), boundaries))
    with tf.control_dependencies([tf.debugging.assert_less_equal(
            tf.shape(x)[1], target, message="a sequence is longer than the BatchConfig's `longest`")]):
        return _pad_time_to(x, tf.identity(target))


def _add_mask(batch, pad_to_multiple: int = 1, bucket_padding=None):
    x = batch["x"]
    if bucket_padding is not None:
        x = _pad_to_bucket(x, batch["lengths"], *bucket_padding)
    elif pad_to_multiple > 1:
        x = _pad_time(x, pad_to_multiple)
    mask = tf.sequence_mask(batch["lengths"], tf.shape(x)[1], dtype=tf.float32)
    weight = batch.get("weight")
    if weight is None:
        weight = tf.ones(tf.shape(batch["lengths"]), tf.float32)
    return {"x": x, "lengths": batch["lengths"], "mask": mask, "weight": weight}


def make_batches(examples: tf.data.Dataset, config: BatchConfig) -> tf.data.Dataset:
    """Shuffle (seeded), bucket or pool by length, pad and batch a split; see the module docstring."""
    if config.pool_batches:
        return _with_options(_pooled_batches(examples, config), config)
    ds = to_sequences(examples)
    if config.shuffle:
        ds = ds.shuffle(config.shuffle_buffer, seed=config.seed, reshuffle_each_iteration=True)
    if config.bucket_boundaries:
        n = len(config.bucket_boundaries) + 1
        ds = ds.bucket_by_sequence_length(
            element_length_func=lambda e: e["lengths"],
            bucket_boundaries=list(config.bucket_boundaries),
            bucket_batch_sizes=[config.batch_size] * n,
            drop_remainder=config.drop_remainder)
    else:
        ds = ds.padded_batch(config.batch_size, drop_remainder=config.drop_remainder)
    if config.fill_batches:
        ds = ds.map(functools.partial(_fill, batch_size=config.batch_size),
                    num_parallel_calls=MAP_PARALLELISM, deterministic=True)
    bucket_padding = ((tuple(config.bucket_boundaries), bucket_ceilings(config))
                      if config.pad_to_bucket else None)
    ds = ds.map(functools.partial(_add_mask, pad_to_multiple=config.pad_to_multiple,
                                  bucket_padding=bucket_padding),
                num_parallel_calls=MAP_PARALLELISM, deterministic=True)
    return _with_options(ds, config)


def _with_options(ds: tf.data.Dataset, config: BatchConfig) -> tf.data.Dataset:
    options = tf.data.Options()
    options.deterministic = config.deterministic
    options.autotune.enabled = False  # releasing an autotuned iterator can take a minute
    return ds.prefetch(PREFETCH_BATCHES).with_options(options)


def _pooled_batches(examples: tf.data.Dataset, config: BatchConfig) -> tf.data.Dataset:
    """Length-pooled batches (`pooling`): the split is read into memory when the dataset
    is made (the music splits and PTB's are megabytes), its epoch order drawn from the
    seed, and each batch padded in NumPy."""
    sequences = to_sequences(examples)
    spec = sequences.element_spec["x"]
    items = [item["x"] for item in sequences.as_numpy_iterator()]
    lengths = np.array([len(x) for x in items], np.int64)
    order = pooling.epoch_batches(lengths, config.batch_size, seed=config.seed if config.shuffle else None,
                                  pool_batches=config.pool_batches) if len(items) else []
    feature_shape = tuple(spec.shape[1:])
    dtype = spec.dtype.as_numpy_dtype

    def generate():
        for index in order:
            steps = pooling.grid_length(int(lengths[index].max()), config.length_grid)
            rows = list(index) + [index[0]] * ((config.batch_size - len(index)) if config.fill_batches else 0)
            x = np.zeros((len(rows), steps) + feature_shape, dtype)
            for r, i in enumerate(rows):
                x[r, :lengths[i]] = items[i]
            batch_lengths = lengths[rows].astype(np.int32)
            weight = (np.arange(len(rows)) < len(index)).astype(np.float32)
            mask = (np.arange(steps)[None, :] < batch_lengths[:, None]).astype(np.float32)
            yield {"x": x, "lengths": batch_lengths, "mask": mask, "weight": weight}

    rows = config.batch_size if config.fill_batches else None
    signature = {"x": tf.TensorSpec((rows, None) + feature_shape, spec.dtype),
                 "lengths": tf.TensorSpec((rows,), tf.int32), "mask": tf.TensorSpec((rows, None), tf.float32),
                 "weight": tf.TensorSpec((rows,), tf.float32)}
    return tf.data.Dataset.from_generator(generate, output_signature=signature)


def unpad(batch) -> list[np.ndarray]:
    """The sequences of a batch without padding or filler rows: [x[b, :lengths[b]] for b
    with weight[b] > 0]."""
    x, lengths = np.asarray(batch["x"]), np.asarray(batch["lengths"])
    weight = np.asarray(batch["weight"]) if "weight" in batch else np.ones(len(lengths))
    return [x[b, :n] for b, n in enumerate(lengths) if weight[b] > 0]


def split_lengths(examples: tf.data.Dataset) -> np.ndarray:
    """int64 [N] the `length` of every example of a split, in order."""
    return np.fromiter((int(n) for n in examples.map(lambda e: e["length"]).as_numpy_iterator()),
                       np.int64)


def fixed_subset(examples: tf.data.Dataset, lengths: Sequence[int], size: int,
                 seed: int = 0) -> tuple[tf.data.Dataset, np.ndarray]:
    """A fixed subset of `size` examples of a split and their lengths, in split order.

    The examples kept are the first `size` of a permutation of the split drawn with
    `seed` (numpy's PCG64): the same examples for every model and training seed that
    asks for the same size, so that runs at a reduced scale compare like with like.
    `size` >= the split's size keeps everything.
    """
    lengths = np.asarray(lengths)
    if size < 1:
        raise ValueError(f"a subset needs at least one example, got size {size}")
    if size >= len(lengths):
        return examples, lengths
    keep = np.zeros(len(lengths), bool)
    keep[np.random.default_rng(seed).permutation(len(lengths))[:size]] = True
    table = tf.constant(keep)

    def kept(i, example):
        return table[i]

    def drop_index(i, example):
        return example

    # Cached: each epoch then reads the subset from memory, not the whole split from disk.
    subset = examples.enumerate().filter(kept).map(drop_index).cache()
    return subset, lengths[keep]


def quantile_boundaries(lengths: Sequence[int], num_buckets: int) -> tuple[int, ...]:
    """Bucket boundaries splitting `lengths` into ~equal-count buckets (for BatchConfig)."""
    lengths = np.asarray(lengths)
    qs = np.quantile(lengths, np.linspace(0, 1, num_buckets + 1)[1:-1])
    return tuple(sorted({int(q) + 1 for q in qs}))


def distribute_batches(strategy: tf.distribute.Strategy,
                       examples_fn: Callable[[], tf.data.Dataset],
                       config: BatchConfig):
    """A distributed dataset of per-replica batches.

    `config.batch_size` is the *global* batch size; each replica gets batches of
    global // num_replicas_in_sync (it must divide). `examples_fn()` returns the
    split's examples; with several input pipelines (multi-worker) each reads
    its shard.
    """
    def dataset_fn(ctx: tf.distribute.InputContext) -> tf.data.Dataset:
        per_replica = ctx.get_per_replica_batch_size(config.batch_size)
        examples = examples_fn()
        if ctx.num_input_pipelines > 1:
            examples = examples.shard(ctx.num_input_pipelines, ctx.input_pipeline_id)
        return make_batches(examples, dataclasses.replace(config, batch_size=per_replica))

    return strategy.distribute_datasets_from_function(dataset_fn)
