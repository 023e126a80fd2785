"""The length model p(T): reference rule, log_prob, sampling, saving."""

import keras
import numpy as np
import pytest
import tensorflow as tf

from tf_latentflow.data import split_lengths
from tf_latentflow.layers import length_model as D


def test_text_rule_is_plain_frequencies():
    p = D.empirical_length_probs([3, 3, 5, 1], smoothing=False)
    np.testing.assert_allclose(p, [0, 0.25, 0, 0.5, 0, 0.25])


def test_music_rule_is_add_one_up_to_floor_1_25_max():
    p = D.empirical_length_probs([3, 3, 7], smoothing=True)
    # T_max = floor(1.25 * 7) = 8; counts + 1 over T = 0..8 -> total 3 + 9 = 12
    expected = np.ones(9)
    expected[3] += 2
    expected[7] += 1
    np.testing.assert_allclose(p, expected / 12)
    p1 = D.empirical_length_probs([3, 3, 7], smoothing=True, min_length=1)
    assert p1[0] == 0 and p1.sum() == pytest.approx(1)


def test_probabilities_sum_to_one_and_log_prob(prepared):
    builder = prepared("jsb_chorales")
    lengths = np.concatenate([split_lengths(builder.as_dataset(split=s)) for s in ("train", "validation")])
    model = D.LengthModel.from_lengths(lengths, smoothing=True)
    assert model.max_length == int(144 * 1.25)
    assert float(tf.reduce_sum(model.probs)) == pytest.approx(1.0, abs=1e-6)
    counts = np.bincount(lengths, minlength=model.max_length + 1)
    expected = np.log((counts[[60, 129]] + 1) / (len(lengths) + model.max_length + 1))
    np.testing.assert_allclose(model.log_prob([60, 129]).numpy(), expected, rtol=1e-5)
    out = model.log_prob(tf.constant([[-1, model.max_length + 1]])).numpy()
    assert out.shape == (1, 2) and np.all(np.isneginf(out))


def test_sample_is_seeded_in_support_and_graph_compatible():
    model = D.LengthModel.from_lengths([2, 2, 2, 5], smoothing=False)
    sample = tf.function(lambda seed: model.sample(4000, seed))
    a = sample(tf.constant([1, 2]))
    b = sample(tf.constant([1, 2]))
    c = sample(tf.constant([3, 4]))
    assert a.dtype == tf.int32 and a.shape == (4000,)
    np.testing.assert_array_equal(a, b)
    assert not np.array_equal(a, c)
    values, counts = np.unique(a.numpy(), return_counts=True)
    assert set(values) == {2, 5}  # zero-probability lengths are never drawn
    assert counts[0] / 4000 == pytest.approx(0.75, abs=0.03)


def test_saved_and_restored_with_a_model(tmp_path):
    lm = D.LengthModel.from_lengths([4, 4, 6], smoothing=True, name="length_model")
    inp = keras.Input(shape=(), dtype="int32")
    model = keras.Model(inp, lm(inp))
    assert [w.name for w in model.non_trainable_weights] == ["probs"] and not model.trainable_weights
    path = tmp_path / "m.keras"
    model.save(path)
    restored = keras.models.load_model(path)
    np.testing.assert_allclose(restored.predict(np.array([4, 6, 1]), verbose=0),
                               lm.log_prob([4, 6, 1]).numpy())
    # tf.train.Checkpoint: restore into a fresh layer of the same size
    ckpt = tf.train.Checkpoint(length_model=lm).save(str(tmp_path / "ckpt"))
    fresh = D.LengthModel(max_length=lm.max_length)
    assert not np.allclose(fresh.probs.numpy(), lm.probs.numpy())
    tf.train.Checkpoint(length_model=fresh).restore(ckpt).assert_consumed()
    np.testing.assert_array_equal(fresh.probs.numpy(), lm.probs.numpy())
    assert D.LengthModel.from_config(lm.get_config()).max_length == lm.max_length
