"""Checkpoints hold every model weight and every optimizer variable.

Keras 3 layers kept in Python lists are invisible to `tf.train.Checkpoint(model=...)`;
these tests restore into a model whose every weight was first moved away from the saved
one, so any weight the checkpoint missed keeps its moved value and the comparison fails.
"""

import keras
import numpy as np
import pytest
import tensorflow as tf

from tf_latentflow.runs import build_model
from tf_latentflow.training.inputs import length_model
from tf_latentflow.runs.checkpoints import (IncompleteCheckpointError, check_model_weights,
                                                checkpoint_objects, optimizer_objects)
from tf_latentflow.training.config import default_config

from training_testing import TINY, synthetic_music_bundle as synthetic_bundle


def build(tmp_path, model, seed):
    config = default_config("jsb", model, str(tmp_path / model), seed=seed, **TINY)
    bundle = synthetic_bundle()
    keras.utils.set_random_seed(seed)
    return build_model(config.model_settings, length_model(config, bundle), None)


@pytest.mark.parametrize("model", ["af-af", "iaf-scf", "af-only", "lstm"])
def test_restore_reaches_every_weight(tmp_path, model):
    trained, fresh = build(tmp_path, model, seed=1), build(tmp_path, model, seed=2)
    assert len(trained.weights) == len(fresh.weights)
    for a, b in zip(trained.weights, fresh.weights):
        b.assign(a + tf.ones_like(a))  # every weight differs before the restore
    path = tf.train.Checkpoint(**checkpoint_objects(trained)).save(str(tmp_path / "ckpt"))
    tf.train.Checkpoint(**checkpoint_objects(fresh)).restore(path).assert_consumed()
    for a, b in zip(trained.weights, fresh.weights):
        np.testing.assert_array_equal(a.numpy(), b.numpy(), err_msg=a.path)


def test_optimizer_moments_are_saved(tmp_path):
    model = build(tmp_path, "af-scf", seed=1)
    optimizer = keras.optimizers.Adam(1e-3)
    optimizer.build(model.trainable_variables)
    for v in optimizer.variables:  # stand-in for a few steps of training
        v.assign(tf.fill(tf.shape(v), tf.cast(0.5, v.dtype)))
    path = tf.train.Checkpoint(**optimizer_objects(optimizer)).save(str(tmp_path / "opt"))
    restored = keras.optimizers.Adam(1e-3)
    restored.build(model.trainable_variables)
    tf.train.Checkpoint(**optimizer_objects(restored)).restore(path).assert_consumed()
    moments = [v for v in restored.variables if "momentum" in v.path or "velocity" in v.path]
    assert len(moments) == 2 * len(model.trainable_variables)
    for v in restored.variables:
        np.testing.assert_array_equal(v.numpy(), np.full(v.shape, 0.5, v.numpy().dtype),
                                      err_msg=v.path)


def test_unbuilt_model_is_refused(tmp_path):
    with pytest.raises(ValueError, match="must be built"):
        checkpoint_objects(keras.Sequential([keras.layers.Dense(2)]))


class TwoDense(keras.Model):
    """Two same-shaped layers "first" and "second", created in either order."""

    def __init__(self, reverse=False, extra=False, **kwargs):
        super().__init__(**kwargs)
        names = ["second", "first"] if reverse else ["first", "second"]
        self.dense = [keras.layers.Dense(3, name=n) for n in names]
        self.extra = keras.layers.Dense(3, name="extra") if extra else None

    def call(self, x):
        out = sum(layer(x) for layer in self.dense)
        return out if self.extra is None else out + self.extra(x)


def two_dense(value, **kwargs):
    model = TwoDense(**kwargs)
    model(np.zeros((1, 3), np.float32))
    for i, w in enumerate(model.weights):  # each weight its own value
        w.assign(np.full(w.shape, value + i, np.float32))
    return model


def values_by_path(model):
    return {w.path.split("/", 1)[1]: float(w.numpy().flat[0]) for w in model.weights}


def test_weights_are_restored_by_name_whatever_order_a_rebuilt_model_creates_them(tmp_path):
    saved = two_dense(10.0)
    path = tf.train.Checkpoint(**checkpoint_objects(saved)).save(str(tmp_path / "named"))
    rebuilt = two_dense(0.0, reverse=True)  # "second" created first: the same shapes swapped
    assert check_model_weights(path, rebuilt) == "named"
    tf.train.Checkpoint(**checkpoint_objects(rebuilt)).restore(path).assert_existing_objects_matched()
    assert values_by_path(rebuilt) == values_by_path(saved)
    # what a list in creation order (the legacy layout) does to the same rebuilt model
    legacy = tf.train.Checkpoint(**checkpoint_objects(saved, "legacy")).save(str(tmp_path / "list"))
    swapped = two_dense(0.0, reverse=True)
    tf.train.Checkpoint(**checkpoint_objects(swapped, "legacy")).restore(legacy).expect_partial()
    assert values_by_path(swapped) != values_by_path(saved)


def test_missing_unexpected_and_misshaped_weights_are_listed(tmp_path):
    path = tf.train.Checkpoint(**checkpoint_objects(two_dense(1.0))).save(str(tmp_path / "c"))
    with pytest.raises(IncompleteCheckpointError, match=r"2 weights of the model are not in it: "
                                                        r"\['extra/bias', 'extra/kernel'\]"):
        check_model_weights(path, two_dense(0.0, extra=True))
    bigger = tf.train.Checkpoint(**checkpoint_objects(two_dense(1.0, extra=True))).write(
        str(tmp_path / "big"))
    with pytest.raises(IncompleteCheckpointError, match=r"2 stored weights have no place"):
        check_model_weights(bigger, two_dense(0.0))
    wide = keras.Sequential([keras.layers.Dense(4, name="first")], name="two_dense")
    wide(np.zeros((1, 3), np.float32))
    # its "first" layer has 4 units where the checkpoint's has 3
    with pytest.raises(IncompleteCheckpointError,
                       match=r"shapes differ: first/bias \(3,\) \(stored\) vs \(4,\) \(model\), "
                             r"first/kernel \(3, 3\) \(stored\) vs \(3, 4\)"):
        check_model_weights(path, wide)
