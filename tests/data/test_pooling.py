"""Length-pooled batching (`data.pooling` and `BatchConfig(pool_batches=...)`): every
sequence once per epoch, order reproducible from the seed, the padding grid optimal
against brute force, and the padding of the benchmark splits within the bound."""

import itertools
import numpy as np
import pytest
import tensorflow as tf

from tf_latentflow import data as D
from tf_latentflow.data import pooling


def brute_force_grid_padding(lengths, size):
    values = np.unique(lengths)
    best = None
    for r in range(min(size, len(values))):
        for extra in itertools.combinations(values[:-1], r):
            grid = np.array(sorted(extra) + [values[-1]])
            pad = int(sum(grid[np.searchsorted(grid, n)] - n for n in lengths))
            best = pad if best is None else min(best, pad)
    return best


def test_length_grid_is_the_least_padding_grid():
    rng = np.random.default_rng(0)
    for _ in range(40):
        lengths = rng.integers(1, 40, size=int(rng.integers(1, 14)))
        size = int(rng.integers(1, 5))
        grid = pooling.length_grid(lengths, size)
        pad = int(sum(pooling.grid_length(int(n), grid) - n for n in lengths))
        assert pad == brute_force_grid_padding(lengths, size), (lengths, size, grid)
        assert grid[-1] == lengths.max() and len(grid) == min(size, len(set(lengths.tolist())))
        assert set(grid) <= set(lengths.tolist())


def test_grid_length_refuses_a_longer_sequence():
    assert pooling.grid_length(5, (4, 8)) == 8 and pooling.grid_length(8, (4, 8)) == 8
    assert pooling.grid_length(7, ()) == 7
    with pytest.raises(ValueError, match="longer than"):
        pooling.grid_length(9, (4, 8))


def test_every_sequence_once_per_epoch_pools_sorted_and_the_order_from_the_seed():
    lengths = np.random.default_rng(1).integers(5, 300, size=1037)
    batches = pooling.epoch_batches(lengths, 5, seed=7, pool_batches=100)
    flat = np.concatenate(batches)
    assert sorted(flat.tolist()) == list(range(1037))
    # round(1037 / 500) = 2 pools of 519 and 518: one short batch each
    assert sorted(len(b) for b in batches)[:3] == [3, 4, 5]
    spread = np.mean([lengths[b].max() - lengths[b].min() for b in batches])
    assert spread < 0.1 * np.mean([lengths[b].max() - lengths[b].min()
                                   for b in np.array_split(np.random.default_rng(2).permutation(1037), 208)])
    again = pooling.epoch_batches(lengths, 5, seed=7, pool_batches=100)
    assert all(np.array_equal(a, b) for a, b in zip(batches, again))
    other = pooling.epoch_batches(lengths, 5, seed=8, pool_batches=100)
    assert not all(np.array_equal(a, b) for a, b in zip(batches, other))
    evaluation = pooling.epoch_batches(lengths, 16, seed=None, pool_batches=100)
    assert np.all(np.diff(lengths[np.concatenate(evaluation)]) >= 0)


def sequences(lengths):
    rolls = [np.full((n, 88), i % 2, np.uint8) for i, n in enumerate(lengths)]
    rolls = [r.copy() for r in rolls]
    for i, r in enumerate(rolls):
        r[:, i % 88] = 1  # a fingerprint per sequence
    return tf.data.Dataset.from_generator(
        lambda: ({"piano_roll": r, "length": np.int32(len(r))} for r in rolls),
        output_signature={"piano_roll": tf.TensorSpec([None, 88], tf.uint8), "length": tf.TensorSpec([], tf.int32)}
    ), rolls


def test_pooled_pipeline_pads_to_the_grid_fills_rows_and_keeps_every_sequence():
    lengths = [3, 17, 9, 9, 30, 4, 22, 12, 5, 28, 14]
    examples, rolls = sequences(lengths)
    grid = pooling.length_grid(lengths, 4)
    config = D.BatchConfig(batch_size=3, shuffle=True, seed=5, pool_batches=2, length_grid=grid, fill_batches=True)
    seen = []
    for batch in D.make_batches(examples, config):
        x, n, mask, w = (batch[k].numpy() for k in ("x", "lengths", "mask", "weight"))
        assert x.shape[0] == 3 and x.shape[1] in grid and x.shape[1] == pooling.grid_length(n.max(), grid)
        np.testing.assert_array_equal(mask, np.arange(x.shape[1])[None] < n[:, None])
        for row in range(3):
            assert not x[row, n[row]:].any()  # padded steps are zero
            if w[row]:
                seen.append(next(i for i, r in enumerate(rolls) if len(r) == n[row] and
                                 np.array_equal(r, x[row, :n[row]]) and i not in seen))
        assert w[0] == 1 and list(w) == sorted(w, reverse=True)
    assert sorted(seen) == list(range(len(lengths)))
    shapes = set(D.batch_shapes(lengths, config))
    assert shapes == {(3, g) for g in grid}


PADDING_BOUND = 1.05


@pytest.mark.parametrize("dataset", ["jsb_chorales", "nottingham"])
def test_training_padding_at_batch_5_is_within_the_bound(prepared, dataset):
    lengths = D.split_lengths(prepared(dataset).as_dataset(split="train"))
    grid = pooling.length_grid(lengths, 24)
    for epoch in range(3):
        batches = pooling.epoch_batches(lengths, 5, seed=epoch, pool_batches=100)
        assert pooling.padding_ratio(lengths, batches, 5, grid) <= PADDING_BOUND


@pytest.mark.parametrize("dataset", ["jsb_chorales", "nottingham"])
def test_evaluation_batches_of_the_default_size_pad_less_than_batches_of_16(prepared, dataset):
    from tf_latentflow.training.config import default_config

    config = default_config(dataset, "af-af", "unused")
    assert config.eval_batch_size == 8
    for split in ("validation", "test"):
        lengths = D.split_lengths(prepared(dataset).as_dataset(split=split))
        grid = pooling.length_grid(lengths, config.length_grid_size)

        def ratio(size):
            batches = pooling.epoch_batches(lengths, size, seed=None, pool_batches=100)
            return pooling.padding_ratio(lengths, batches, size, grid, filled=False)

        assert ratio(8) < ratio(16)
        assert ratio(8) <= 1.15  # JSB test: 1.08 (1.22 at 16)
