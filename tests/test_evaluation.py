"""Units (bits per character, nats per step) and log_mean_exp against NumPy / SciPy."""

import math

import numpy as np
import pytest
import scipy.special
import tensorflow as tf

from tf_latentflow import evaluation as E


def test_nats_bits_round_trip():
    nats = np.array([0.0, 1.0, math.log(2.0), 123.456])
    np.testing.assert_allclose(E.nats_to_bits(nats).numpy(), nats / np.log(2.0), rtol=1e-12)
    np.testing.assert_allclose(E.nats_to_bits([math.log(2.0)]).numpy(), [1.0], rtol=1e-6)
    np.testing.assert_allclose(E.bits_to_nats(E.nats_to_bits(nats)).numpy(), nats, rtol=1e-12)
    assert E.nats_to_bits(nats).dtype == tf.float64
    assert E.nats_to_bits(np.float32(3.0)).dtype == tf.float32
    assert E.nats_to_bits(3).dtype == tf.float32


def test_per_step_divides_each_sequence_by_length_plus_one():
    nll = np.array([10.0, 30.0, 4.0], np.float32)
    lengths = np.array([4, 9, 0], np.int32)
    np.testing.assert_allclose(E.per_step(nll, lengths).numpy(), [2.0, 3.0, 4.0], rtol=1e-6)
    np.testing.assert_allclose(E.per_step(nll, [5, 10, 1], include_end=False).numpy(),
                               [2.0, 3.0, 4.0], rtol=1e-6)
    np.testing.assert_array_equal(E.step_counts(lengths).numpy(), [5.0, 10.0, 1.0])


def test_corpus_ratio_is_total_over_total_not_mean_of_ratios():
    nll = np.array([10.0, 30.0], np.float64)
    lengths = np.array([4, 9])
    expected = 40.0 / 15.0
    assert E.corpus_per_step(nll, lengths).numpy() == pytest.approx(expected, rel=1e-12)
    assert E.nats_per_step(nll, lengths).numpy() == pytest.approx(expected, rel=1e-12)
    assert E.bits_per_char(nll, lengths).numpy() == pytest.approx(expected / np.log(2.0), rel=1e-12)
    # The mean of per-sequence ratios (2.5) is a different number.
    assert np.mean(E.per_step(nll, lengths).numpy()) == pytest.approx(2.5)
    # Accumulating over two batches equals one pass over the union.
    parts = [(nll[:1], lengths[:1]), (nll[1:], lengths[1:])]
    tot = sum(float(np.sum(n)) for n, _ in parts) / sum(float(np.sum(E.step_counts(l))) for _, l in parts)
    assert tot == pytest.approx(expected, rel=1e-6)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("scale", [1.0, 1e2, 1e4, 1e30])
def test_log_mean_exp_matches_scipy(dtype, scale):
    rng = np.random.default_rng(0)
    a = (rng.normal(size=(4, 50)) * scale).astype(dtype)
    a[1] -= dtype(1e4 if dtype == np.float32 else 1e250)  # a whole row far below zero
    expected = scipy.special.logsumexp(a.astype(np.float64), axis=-1) - np.log(50)
    got = E.log_mean_exp(tf.constant(a), axis=-1)
    assert got.dtype == tf.as_dtype(dtype)
    assert np.all(np.isfinite(got.numpy()))
    np.testing.assert_allclose(got.numpy(), expected, rtol=1e-6 if dtype == np.float32 else 1e-12)


def test_log_mean_exp_axis_keepdims_and_equal_weights():
    a = np.full((3, 7, 5), -1234.5, np.float32)
    np.testing.assert_allclose(E.log_mean_exp(a, axis=1).numpy(), np.full((3, 5), -1234.5), rtol=1e-7)
    assert E.log_mean_exp(a, axis=1, keepdims=True).shape == (3, 1, 5)
    assert E.log_mean_exp(a, axis=0).shape == (7, 5)
    rng = np.random.default_rng(1)
    b = rng.normal(size=(2, 3, 4)) * 100
    np.testing.assert_allclose(E.log_mean_exp(b, axis=1).numpy(),
                               scipy.special.logsumexp(b, axis=1) - np.log(3), rtol=1e-12)


def test_log_mean_exp_non_finite_entries():
    a = np.array([[-np.inf, -np.inf, -np.inf],
                  [-np.inf, 0.0, -np.inf],
                  [1.0, np.inf, 2.0],
                  [-1e38, -3e38, -np.inf]], np.float32)
    got = E.log_mean_exp(a, axis=-1).numpy()
    assert got[0] == -np.inf
    assert got[1] == pytest.approx(-np.log(3.0), rel=1e-6)
    assert got[2] == np.inf
    expected_last = scipy.special.logsumexp(a[3].astype(np.float64)) - np.log(3)
    assert got[3] == pytest.approx(expected_last, rel=1e-6)


@pytest.mark.parametrize("dtype", [tf.float16, tf.bfloat16])
def test_log_mean_exp_upcasts_half_precision(dtype):
    a = tf.constant([[-60.0, -62.0, -61.5, -80.0]], dtype)
    got = E.log_mean_exp(a)
    assert got.dtype == tf.float32
    a64 = tf.cast(a, tf.float64).numpy()  # the values half precision actually holds
    expected = scipy.special.logsumexp(a64, axis=-1) - np.log(4)
    np.testing.assert_allclose(got.numpy(), expected, rtol=1e-6)


def test_log_mean_exp_gradient_is_softmax_and_graph_compatible():
    a = tf.constant(np.random.default_rng(2).normal(size=(3, 6)) * 50, tf.float64)
    with tf.GradientTape() as tape:
        tape.watch(a)
        y = tf.reduce_sum(E.log_mean_exp(a))
    np.testing.assert_allclose(tape.gradient(y, a).numpy(), scipy.special.softmax(a.numpy(), axis=-1),
                               rtol=1e-10, atol=1e-300)

    @tf.function(input_signature=[tf.TensorSpec([None, None], tf.float32)])
    def f(x):
        return E.importance_sampled_nll(x)

    x = np.array([[-3.0, -4.0], [-1e4, -1e4 - 1.0]], np.float32)
    np.testing.assert_allclose(f(x).numpy(), -(scipy.special.logsumexp(x.astype(np.float64), axis=-1)
                                               - np.log(2)), rtol=1e-6)


def test_in_paper_units_is_bits_for_text_and_nats_for_music_for_numbers_and_tensors():
    # 1 nat = 1 / ln 2 bits = 1.4426950408889634 bits
    assert E.in_paper_units(1.0, is_text=True) == pytest.approx(1.4426950408889634, rel=1e-15)
    assert E.in_paper_units(np.float64(2.5), is_text=False) == 2.5
    assert isinstance(E.in_paper_units(1.0, is_text=True), float)  # a number stays a number

    @tf.function(input_signature=[tf.TensorSpec([None], tf.float32)])
    def in_graph(nats):
        return E.in_paper_units(nats, is_text=True), E.in_paper_units(nats, is_text=False)

    bits, nats = in_graph(tf.constant([math.log(2.0), 3.0], tf.float32))
    assert bits.dtype == tf.float32 and nats.dtype == tf.float32
    np.testing.assert_allclose(bits.numpy(), [1.0, 3.0 / math.log(2.0)], rtol=1e-6)
    np.testing.assert_array_equal(nats.numpy(), np.float32([math.log(2.0), 3.0]))


def test_the_paper_units_are_those_of_the_committed_results():
    """The unit each dataset reports in (`paper`, via the catalog) is the one every committed
    results file recorded; the paper's tables: music in table 3, PTB in tables 1 and 2."""
    import json
    import pathlib

    from tf_latentflow.runs import registry

    assert registry.dataset("jsb").paper_tables == (3,) and registry.dataset("ptb").paper_tables == (1, 2)
    root = pathlib.Path(__file__).resolve().parents[1] / "results"
    seen = set()
    for path in root.rglob("*.json"):
        record = json.loads(path.read_text())
        if isinstance(record, dict) and "test" in record and "config" in record:
            entry = registry.dataset(record["config"]["dataset"])
            assert record["test"]["unit"] == entry.unit, path
            seen.add(entry.kind)
    assert seen == {"music", "text"}
