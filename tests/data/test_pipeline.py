"""Batching: exact pad/unpad round trip, masks, seeded shuffling, bucketing, tf.distribute."""

import json
import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest
import tensorflow as tf

from tf_latentflow import data as D


def _music_examples(lengths, seed=0):
    rng = np.random.default_rng(seed)
    rolls = [(rng.random((n, 88)) < 0.1).astype(np.uint8) for n in lengths]
    ds = tf.data.Dataset.from_generator(
        lambda: ({"piano_roll": r, "length": np.int32(len(r)), "index": np.int32(i)} for i, r in enumerate(rolls)),
        output_signature={"piano_roll": tf.TensorSpec([None, 88], tf.uint8),
                          "length": tf.TensorSpec([], tf.int32), "index": tf.TensorSpec([], tf.int32)})
    return ds, rolls


def _text_examples(lengths):
    seqs = [np.arange(2, 2 + n, dtype=np.int32) % 50 + 2 for n in lengths]
    ds = tf.data.Dataset.from_generator(
        lambda: ({"tokens": s, "length": np.int32(len(s)), "index": np.int32(0)} for s in seqs),
        output_signature={"tokens": tf.TensorSpec([None], tf.int32),
                          "length": tf.TensorSpec([], tf.int32), "index": tf.TensorSpec([], tf.int32)})
    return ds, seqs


def test_music_round_trip_and_mask():
    ds, rolls = _music_examples([5, 1, 9, 3, 3])
    got = []
    for batch in D.make_batches(ds, D.BatchConfig(batch_size=2)).as_numpy_iterator():
        assert set(batch) == {"x", "lengths", "mask", "weight"}
        np.testing.assert_array_equal(batch["weight"], np.ones(len(batch["lengths"])))
        assert batch["x"].dtype == np.float32 and batch["lengths"].dtype == np.int32
        assert batch["mask"].dtype == np.float32 and batch["mask"].shape == batch["x"].shape[:2]
        np.testing.assert_array_equal(batch["mask"].sum(1), batch["lengths"])
        assert batch["x"].shape[1] == batch["lengths"].max()
        assert not (batch["x"] * (1 - batch["mask"])[..., None]).any()  # padding is zero
        got += D.unpad(batch)
    assert len(got) == len(rolls)
    for a, b in zip(got, rolls):  # deterministic order without shuffling
        np.testing.assert_array_equal(a, b)


def test_text_round_trip_with_shuffle_and_buckets():
    lengths = [1, 30, 4, 17, 8, 8, 25, 2, 12, 40]
    ds, seqs = _text_examples(lengths)
    cfg = D.BatchConfig(batch_size=3, shuffle=True, seed=7, bucket_boundaries=(5, 20))
    batches = list(D.make_batches(ds, cfg).as_numpy_iterator())
    got = [tuple(s) for b in batches for s in D.unpad(b)]
    assert sorted(got) == sorted(tuple(s) for s in seqs)  # every sequence exactly once
    for b in batches:
        bucket = np.digitize(b["lengths"], [5, 20])
        assert len(set(bucket)) == 1  # one bucket per batch
        assert b["x"].dtype == np.int32


@pytest.mark.parametrize("config", [
    D.BatchConfig(batch_size=2),
    D.BatchConfig(batch_size=3, shuffle=True, seed=1, bucket_boundaries=(4, 9), fill_batches=True,
                  pad_to_multiple=4),
    D.BatchConfig(batch_size=3, shuffle=True, seed=1, bucket_boundaries=(4, 9), pad_to_bucket=True,
                  longest=9)])
def test_batches_run_without_tf_data_autotuning(config):
    # Releasing an autotuned iterator waits for the autotuning thread (up to a minute,
    # every other epoch on JSB; pipeline docstring): every training and evaluation
    # pipeline has autotuning off, with the order still deterministic.
    ds, rolls = _music_examples([5, 1, 8, 3, 3, 6, 2])
    batches = D.make_batches(ds, config)
    assert batches.options().autotune.enabled is False
    assert batches.options().deterministic is True
    got = sorted(tuple(map(tuple, s)) for b in batches.as_numpy_iterator() for s in D.unpad(b))
    assert got == sorted(tuple(map(tuple, r.astype(np.float32))) for r in rolls)


@pytest.mark.parametrize("kind", ["music", "text"])
def test_padding_to_a_multiple_keeps_the_sequences(kind):
    lengths = [5, 1, 17, 3, 16, 33]
    ds, sequences = _music_examples(lengths) if kind == "music" else _text_examples(lengths)
    batches = list(D.make_batches(ds, D.BatchConfig(batch_size=2, pad_to_multiple=16)).as_numpy_iterator())
    assert [b["x"].shape[1] for b in batches] == [16, 32, 48]  # longest 5, 17, 33 rounded up
    for b in batches:
        np.testing.assert_array_equal(b["mask"].sum(1), b["lengths"])
        assert b["mask"].shape == b["x"].shape[:2] and not b["x"][b["mask"] == 0].any()
    for a, want in zip([s for b in batches for s in D.unpad(b)], sequences):
        np.testing.assert_array_equal(a, want)
    spec = D.make_batches(ds, D.BatchConfig(batch_size=2, pad_to_multiple=16)).element_spec["x"]
    assert spec.shape.as_list() == ([None, None, 88] if kind == "music" else [None, None])
    with pytest.raises(ValueError, match="pad_to_multiple"):
        D.BatchConfig(batch_size=2, pad_to_multiple=0)


def test_padded_length_grid():
    """Multiples of 16 up to 256, then of 32 up to 512, of 64 up to 1024, ...: always >= T,
    padding < 1/8 of T beyond 256, the tensor and NumPy forms equal."""
    n = np.arange(1, 6000)
    grid = D.padded_length(n, 16)
    np.testing.assert_array_equal(grid, D.padded_length(tf.constant(n, tf.int32), 16).numpy())
    assert (grid >= n).all() and (grid[n > 256] - n[n > 256] < n[n > 256] / 8).all()
    want = {1: 16, 16: 16, 17: 32, 255: 256, 256: 256, 257: 288, 512: 512, 513: 576, 1025: 1152}
    assert {t: D.padded_length(t, 16) for t in want} == want
    for t, g in zip(n, grid):  # the step below 16 * 16 * 2^k is 16 * 2^k: g is a multiple of it
        step = 16 * 2 ** max(0, int(np.ceil(np.log2(t / 256))))
        assert g % step == 0 and g - t < step
    assert D.padded_length(37, 1) == 37


def test_filled_batches_have_one_batch_axis_and_weight_zero_copies():
    """fill_batches: every batch has batch_size rows; the filler rows are copies of the
    batch's first sequence with weight 0, and unpad drops them (each sequence once)."""
    lengths = [5, 1, 17, 3, 16, 33, 2]
    ds, sequences = _music_examples(lengths)
    cfg = D.BatchConfig(batch_size=3, shuffle=True, seed=3, bucket_boundaries=(10,),
                        pad_to_multiple=16, fill_batches=True)
    batches = list(D.make_batches(ds, cfg).as_numpy_iterator())
    assert D.make_batches(ds, cfg).element_spec["x"].shape.as_list() == [3, None, 88]
    assert sum(b["weight"].sum() for b in batches) == len(lengths)
    for b in batches:
        assert b["x"].shape[0] == 3 and b["x"].shape[1] in (16, 48)
        real = int(b["weight"].sum())
        np.testing.assert_array_equal(b["weight"], [1.0] * real + [0.0] * (3 - real))
        for row in range(real, 3):
            np.testing.assert_array_equal(b["x"][row], b["x"][0])
            assert b["lengths"][row] == b["lengths"][0]
    got = sorted(s.tobytes() for b in batches for s in D.unpad(b))
    assert got == sorted(s.astype(np.float32).tobytes() for s in sequences)


def test_batch_shapes_cover_every_epoch():
    """Every (rows, padded length) met over many shuffled epochs is in batch_shapes."""
    rng = np.random.default_rng(0)
    lengths = rng.integers(1, 300, size=40).tolist()
    ds, _ = _text_examples(lengths)
    boundaries = D.quantile_boundaries(lengths, 3)
    shapes = set(D.batch_shapes(lengths, D.BatchConfig(batch_size=4, pad_to_multiple=16,
                                                         fill_batches=True)))
    met = set()
    for epoch in range(8):
        cfg = D.BatchConfig(batch_size=4, shuffle=True, seed=epoch, bucket_boundaries=boundaries,
                            pad_to_multiple=16, fill_batches=True)
        met |= {b["x"].shape for b in D.make_batches(ds, cfg).as_numpy_iterator()}
    assert met <= shapes and len(met) > 3
    assert {t for _, t in shapes} == {D.padded_length(n, 16) for n in lengths}
    with pytest.raises(ValueError, match="fill_batches"):
        D.batch_shapes(lengths, D.BatchConfig(batch_size=4, pad_to_multiple=16))


def test_bucket_padding_gives_one_shape_per_bucket_and_keeps_the_sequences():
    """pad_to_bucket: every batch is padded to its bucket's ceiling, the grid length of
    boundary - 1 (last bucket: the split's longest); batch_shapes lists exactly those; the
    sequences, lengths and masks are those of the plain batching."""
    rng = np.random.default_rng(1)
    lengths = rng.integers(1, 300, size=60).tolist()
    ds, sequences = _text_examples(lengths)
    boundaries = (40, 100, 150)
    cfg = D.BatchConfig(batch_size=4, shuffle=True, seed=0, bucket_boundaries=boundaries,
                        pad_to_multiple=16, fill_batches=True, pad_to_bucket=True, longest=max(lengths))
    # by hand: 39 -> 48, 99 -> 112, 149 -> 160, and the longest (<300) on the coarser grid
    assert D.bucket_ceilings(cfg) == (48, 112, 160, D.padded_length(max(lengths), 16))
    shapes = set(D.batch_shapes(lengths, cfg))
    assert shapes == {(4, c) for c in D.bucket_ceilings(cfg)}
    met = set()
    for epoch in range(3):
        cfg_epoch = D.BatchConfig(**{**cfg.__dict__, "seed": epoch})
        batches = list(D.make_batches(ds, cfg_epoch).as_numpy_iterator())
        for b in batches:
            met.add(b["x"].shape)
            bucket = int(np.searchsorted(boundaries, b["lengths"].max(), side="right"))
            assert b["x"].shape[1] == D.bucket_ceilings(cfg)[bucket]
            np.testing.assert_array_equal(b["mask"].sum(axis=1), b["lengths"])
        got = sorted(s.tobytes() for b in batches for s in D.unpad(b))
        assert got == sorted(s.tobytes() for s in sequences)
    assert met == shapes
    # only the buckets the lengths fall in
    assert D.batch_shapes([5, 7, 120], cfg) == [(4, 48), (4, 160)]
    # a sequence longer than `longest` fails rather than being cut
    short = D.BatchConfig(batch_size=4, bucket_boundaries=boundaries, pad_to_multiple=16,
                          pad_to_bucket=True, longest=200)
    with pytest.raises(tf.errors.InvalidArgumentError, match="longest"):
        list(D.make_batches(ds, short).as_numpy_iterator())
    with pytest.raises(ValueError, match="longest"):
        D.BatchConfig(batch_size=4, pad_to_bucket=True)


def test_seeded_shuffle_is_reproducible():
    ds, _ = _text_examples(list(range(1, 41)))

    def order(seed, epochs=2):
        out = D.make_batches(ds, D.BatchConfig(batch_size=40, shuffle=True, seed=seed)).repeat(epochs)
        return [b["lengths"].tolist() for b in out.as_numpy_iterator()]

    a, b, c = order(1), order(1), order(2)
    assert a == b and a != c
    assert a[0] != a[1]  # a new order each epoch, still reproducible


def test_shuffle_requires_a_seed():
    with pytest.raises(ValueError, match="needs a seed"):
        D.BatchConfig(batch_size=2, shuffle=True)


def test_real_split_round_trip(prepared):
    split = prepared("jsb_chorales").as_dataset(split="test")
    ref = [e["piano_roll"] for e in split.as_numpy_iterator()]
    bounds = D.quantile_boundaries(D.split_lengths(split), 3)
    batches = D.make_batches(split, D.BatchConfig(batch_size=16, bucket_boundaries=bounds))
    got = [s for b in batches.as_numpy_iterator() for s in D.unpad(b)]
    key = lambda a: a.tobytes() + bytes(str(a.shape), "ascii")
    assert sorted(map(key, (g.astype(np.uint8) for g in got))) == sorted(map(key, ref))


def test_default_strategy_per_replica_batches():
    ds, seqs = _text_examples([3, 5, 2, 7, 1, 4])
    dist = D.distribute_batches(tf.distribute.get_strategy(), lambda: ds, D.BatchConfig(batch_size=4))
    sizes = [int(b["lengths"].shape[0]) for b in dist]
    assert sizes == [4, 2]


_MIRRORED = textwrap.dedent("""
    import json, numpy as np, tensorflow as tf
    cpu = tf.config.list_physical_devices("CPU")[0]
    tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * 2)
    from tf_latentflow import data as D
    seqs = [np.arange(n, dtype=np.int32) + 2 for n in (3, 5, 2, 7, 1, 4, 6, 8)]
    ds = lambda: tf.data.Dataset.from_generator(
        lambda: ({"tokens": s, "length": np.int32(len(s)), "index": np.int32(0)} for s in seqs),
        output_signature={"tokens": tf.TensorSpec([None], tf.int32), "length": tf.TensorSpec([], tf.int32),
                          "index": tf.TensorSpec([], tf.int32)})
    strategy = tf.distribute.MirroredStrategy(["/cpu:0", "/cpu:1"])
    dist = D.distribute_batches(strategy, ds, D.BatchConfig(batch_size=4))
    out = []
    for batch in dist:
        per = strategy.experimental_local_results(batch)
        out.append([[int(n) for n in p["lengths"].numpy()] for p in per])
        for p in per:
            assert p["mask"].shape == p["x"].shape
    print(json.dumps({"replicas": strategy.num_replicas_in_sync, "batches": out}))
""")


def test_mirrored_strategy_two_cpus():
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"}
    proc = subprocess.run([sys.executable, "-c", _MIRRORED], capture_output=True, text=True, env=env,
                          timeout=300, cwd=os.path.dirname(os.path.dirname(os.path.dirname(__file__))))
    assert proc.returncode == 0, proc.stderr[-3000:]
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    assert result["replicas"] == 2
    flat = [n for step in result["batches"] for rep in step for n in rep]
    assert sorted(flat) == [1, 2, 3, 4, 5, 6, 7, 8]
    assert all(len(rep) == 2 for step in result["batches"] for rep in step)  # per-replica = 4 // 2


def test_fixed_subset_keeps_the_same_examples_with_their_lengths_in_split_order():
    lengths = [5, 9, 3, 7, 4, 8, 6, 2, 10, 11]
    ds, _ = _music_examples(lengths)
    subset, kept_lengths = D.fixed_subset(ds, lengths, 4)
    examples = list(subset.as_numpy_iterator())
    indices = [int(e["index"]) for e in examples]
    assert len(indices) == 4 and indices == sorted(indices)  # split order
    assert [int(e["length"]) for e in examples] == list(kept_lengths) == [lengths[i] for i in indices]
    # the first 4 of numpy's seed-0 permutation of the split: independent of anything else
    assert indices == sorted(np.random.default_rng(0).permutation(len(lengths))[:4])
    again, _ = D.fixed_subset(_music_examples(lengths)[0], lengths, 4)
    assert [int(e["index"]) for e in again.as_numpy_iterator()] == indices
    other, _ = D.fixed_subset(ds, lengths, 4, seed=1)
    assert [int(e["index"]) for e in other.as_numpy_iterator()] != indices
    # a larger subset contains the smaller one (a prefix of the same permutation)
    larger, _ = D.fixed_subset(ds, lengths, 7)
    assert set(indices) < {int(e["index"]) for e in larger.as_numpy_iterator()}
    whole, whole_lengths = D.fixed_subset(ds, lengths, 10)
    assert whole is ds and list(whole_lengths) == lengths
    with pytest.raises(ValueError, match="at least one example"):
        D.fixed_subset(ds, lengths, 0)
