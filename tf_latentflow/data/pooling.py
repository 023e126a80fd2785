"""Length-pooled batching, as the reference's iterator (torchtext's BucketIterator) does.

An epoch of a training split (`epoch_batches` with a seed):

  1. shuffle the sequences (numpy's PCG64 seeded with the BatchConfig's seed, which the
     trainer derives from the run's seed and the epoch);
  2. cut the shuffled order into pools of about `pool_batches` batches (equal pools,
     round(N / (pool_batches * B)) of them, at least one);
  3. sort each pool by length (stable);
  4. cut each pool into batches of B consecutive sequences, and shuffle the batches of
     the pool.

A batch then holds sequences of nearly one length. Evaluation splits (no shuffle) are
sorted whole and cut into batches, the same every epoch.

Static shapes for XLA (`length_grid`): a batch's time axis is padded to the smallest
point of a grid of K lengths at least as long as its longest sequence. The grid is the
K-point set that minimises the padding of the split's own sequences,

    grid = argmin_{g_1 < ... < g_K = max L}  sum_n (g(L_n) - L_n),   g(L) = min {g_k >= L},

found exactly by dynamic programming over the distinct lengths (`length_grid`). Every
grid point is a length of the split, so a split meets exactly its K shapes (with the
batch axis filled to B by `pipeline.fill_batches` rows), all known before the first step.
"""

from __future__ import annotations

import numpy as np

__all__ = ["length_grid", "grid_length", "epoch_batches", "padding_ratio"]


def length_grid(lengths, size: int) -> tuple[int, ...]:
    """The `size`-point grid of padded lengths that minimises sum_n (g(L_n) - L_n) over
    `lengths` (module docstring); its last point is max(lengths). Fewer points when the
    lengths have fewer distinct values."""
    values, counts = np.unique(np.asarray(lengths, np.int64), return_counts=True)
    if values.size == 0:
        raise ValueError("length_grid: no lengths")
    if size < 1:
        raise ValueError(f"length_grid: size must be >= 1, got {size}")
    size = min(size, values.size)
    n_before = np.concatenate([[0], np.cumsum(counts)])  # sequences among values[:i]
    s_before = np.concatenate([[0], np.cumsum(counts * values)])

    def cost(i, j):  # values[i..j] (i a vector) all padded to values[j]
        return (n_before[j + 1] - n_before[i]) * values[j] - (s_before[j + 1] - s_before[i])

    # best[k][j]: the least padding of values[:j + 1] with k + 1 points, the last values[j];
    # its last segment values[i..j] starts after a (k)-point cover of values[:i].
    u = values.size
    best = np.full((size, u), np.inf)
    start = np.zeros((size, u), np.int64)
    best[0] = [cost(np.array([0]), j)[0] for j in range(u)]
    for k in range(1, size):
        for j in range(k, u):
            starts = np.arange(k, j + 1)
            total = best[k - 1, starts - 1] + cost(starts, j)
            m = int(np.argmin(total))
            best[k, j], start[k, j] = total[m], starts[m]
    grid, j = [], u - 1
    for k in range(size - 1, -1, -1):
        grid.append(int(values[j]))
        j = int(start[k, j]) - 1
    return tuple(sorted(grid))


def grid_length(longest: int, grid) -> int:
    """The padded length of a batch whose longest sequence is `longest`."""
    if not grid:
        return int(longest)
    k = int(np.searchsorted(np.asarray(grid), longest))
    if k >= len(grid):
        raise ValueError(f"a sequence of {longest} steps is longer than the length grid's {grid[-1]}")
    return int(grid[k])


def epoch_batches(lengths, batch_size: int, *, seed: int | None, pool_batches: int) -> list[np.ndarray]:
    """The batches of one epoch as index arrays into `lengths` (module docstring); with
    `seed` None the split is sorted whole (evaluation)."""
    lengths = np.asarray(lengths)
    n = lengths.size
    if seed is None:
        order = np.argsort(lengths, kind="stable")
        return [order[i:i + batch_size] for i in range(0, n, batch_size)]
    rng = np.random.default_rng(seed)
    shuffled = rng.permutation(n)
    num_pools = max(1, int(round(n / (pool_batches * batch_size))))
    batches = []
    for pool in np.array_split(shuffled, num_pools):
        pool = pool[np.argsort(lengths[pool], kind="stable")]
        cut = [pool[i:i + batch_size] for i in range(0, pool.size, batch_size)]
        batches += [cut[k] for k in rng.permutation(len(cut))]
    return batches


def padding_ratio(lengths, batches, batch_size: int, grid=(), *, filled: bool = True) -> float:
    """Computed over real steps: sum over batches of rows x padded length, divided by
    sum(lengths); `filled` counts a short batch as `batch_size` rows (weight-0 filler)."""
    lengths = np.asarray(lengths)
    computed = sum((batch_size if filled else len(b)) * grid_length(int(lengths[b].max()), grid)
                   for b in batches)
    return computed / float(lengths.sum())
