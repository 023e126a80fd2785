"""Checkpoints hold every model weight and every optimizer variable.

Keras 3 layers kept in Python lists are invisible to `tf.train.Checkpoint(model=...)`;
these tests restore into a model whose every weight was first moved away from the saved
one, so any weight the checkpoint missed keeps its moved value and the comparison fails.
"""

import keras
import numpy as np
import pytest
import tensorflow as tf

from tf_latentflow.training import trainer as trainer_lib
from tf_latentflow.training.checkpoints import checkpoint_objects, optimizer_objects
from tf_latentflow.training.config import default_config

from test_trainer import TINY, synthetic_bundle


def build(tmp_path, model, seed):
    config = default_config("jsb", model, str(tmp_path / model), seed=seed, **TINY)
    bundle = synthetic_bundle()
    keras.utils.set_random_seed(seed)
    return trainer_lib.build_model(config, trainer_lib.length_model(config, bundle), None)


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
