"""FusedAdam against Keras's own Adam (the independent value): the same weights and slots
after several steps, with weight decay, loss scaling, sparse gradients, a checkpoint
written by one and read by the other, and under MirroredStrategy."""

import pathlib
import subprocess
import sys
import textwrap

import keras
import numpy as np
import pytest
import tensorflow as tf

from tf_latentflow.training.optimizers import FusedAdam

SHAPES = [(7, 5), (5,), (3, 4, 2)]


def _weights(seed):
    rng = np.random.default_rng(seed)
    return [keras.Variable(rng.normal(size=s).astype("float32"), name=f"w{i}") for i, s in enumerate(SHAPES)]


def _gradients(seed, steps):
    rng = np.random.default_rng(seed + 100)
    return [[tf.constant(rng.normal(scale=3.0, size=s).astype("float32")) for s in SHAPES]
            for _ in range(steps)]


def _train(optimizer, weights, gradients, compiled):
    def apply(grads):
        optimizer.apply_gradients(zip(grads, weights))

    step = tf.function(apply) if compiled else apply
    for grads in gradients:
        step(grads)
    return [w.numpy() for w in weights]


@pytest.mark.parametrize("compiled", [False, True])
@pytest.mark.parametrize("kwargs", [dict(learning_rate=1e-2), dict(learning_rate=3e-3, epsilon=1e-8),
                                    dict(learning_rate=1e-2, beta_1=0.5, beta_2=0.9, weight_decay=0.1)])
def test_same_weights_and_moments_as_keras_adam(kwargs, compiled):
    gradients = _gradients(0, steps=6)
    reference, fused = keras.optimizers.Adam(**kwargs), FusedAdam(**kwargs)
    expected = _train(reference, _weights(1), gradients, compiled)
    got = _train(fused, _weights(1), gradients, compiled)
    for e, g in zip(expected, got):
        np.testing.assert_allclose(g, e, rtol=1e-5, atol=1e-6)
    # The kernel forms 1 - beta in float32 (1 - 0.999f = 9.99987e-4), Keras in float64 before
    # the cast (1e-3): the moments differ by ~1.3e-5 relative, the weights by less.
    for e, g in zip(reference.variables, fused.variables):
        np.testing.assert_allclose(g.numpy(), e.numpy(), rtol=5e-5, atol=1e-7)
    assert int(fused.iterations.numpy()) == 6
    # The update did something beyond the first step's size (so equality is not vacuous).
    assert max(float(np.abs(g - w.numpy()).max()) for g, w in zip(got, _weights(1))) > 3 * kwargs["learning_rate"]


def test_loss_scale_optimizer_wraps_it():
    gradients = _gradients(2, steps=4)
    expected = _train(keras.optimizers.LossScaleOptimizer(keras.optimizers.Adam(1e-2)), _weights(3),
                      gradients, compiled=True)
    got = _train(keras.optimizers.LossScaleOptimizer(FusedAdam(1e-2)), _weights(3), gradients, compiled=True)
    for e, g in zip(expected, got):
        np.testing.assert_allclose(g, e, rtol=1e-5, atol=1e-6)


def test_sparse_gradients_take_keras_path():
    table = lambda: keras.Variable(np.arange(12, dtype="float32").reshape(4, 3))  # noqa: E731
    grad = tf.IndexedSlices(tf.ones([2, 3]), tf.constant([0, 2]), tf.constant([4, 3]))
    expected, got = table(), table()
    for _ in range(3):
        keras.optimizers.Adam(0.1).apply_gradients([(grad, expected)])
    optimizer = FusedAdam(0.1)
    for _ in range(3):
        optimizer.apply_gradients([(grad, got)])
    np.testing.assert_allclose(got.numpy()[[1, 3]], np.arange(12, dtype="float32").reshape(4, 3)[[1, 3]])
    assert not np.allclose(got.numpy()[[0, 2]], np.arange(12, dtype="float32").reshape(4, 3)[[0, 2]])


def test_checkpoints_interchange_with_keras_adam(tmp_path):
    gradients = _gradients(4, steps=6)
    weights = _weights(5)
    fused = FusedAdam(1e-2)
    _train(fused, weights, gradients[:3], compiled=False)
    path = tf.train.Checkpoint(optimizer=fused, weights=weights).write(str(tmp_path / "ckpt"))

    restored_weights = _weights(6)
    keras_adam = keras.optimizers.Adam(1e-2)
    keras_adam.build(restored_weights)
    tf.train.Checkpoint(optimizer=keras_adam, weights=restored_weights).read(path).assert_consumed()
    expected = _train(keras_adam, restored_weights, gradients[3:], compiled=False)
    got = _train(fused, weights, gradients[3:], compiled=False)
    for e, g in zip(expected, got):
        np.testing.assert_allclose(g, e, rtol=1e-5, atol=1e-6)


SCRIPT = textwrap.dedent("""
    import sys
    import numpy as np, keras, tensorflow as tf
    cpu = tf.config.list_physical_devices("CPU")[0]
    tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * 2)
    from tf_latentflow.training.optimizers import FusedAdam
    strategy = tf.distribute.MirroredStrategy(["/cpu:0", "/cpu:1"])
    results = []
    for cls in (keras.optimizers.Adam, FusedAdam):
        with strategy.scope():
            w = keras.Variable(np.linspace(-1, 1, 12, dtype="float32").reshape(3, 4))
            optimizer = cls(0.05)
            optimizer.build([w])

        def step(g):  # eager: under tf.function with two CPU replicas Keras's own Adam fails too
            def replica(g):
                optimizer.apply_gradients([(g, w)])
            strategy.run(replica, args=(g,))

        for k in range(4):
            step(tf.constant(np.full((3, 4), k - 1.5, dtype="float32") + np.eye(3, 4, dtype="float32")))
        results.append(np.asarray(w.value.values[0]).tolist() + np.asarray(w.value.values[1]).tolist())
    print(repr(results))
""")


def test_under_mirrored_strategy_equals_keras_adam():
    out = subprocess.run([sys.executable, "-c", SCRIPT], capture_output=True, text=True, check=True,
                         cwd=pathlib.Path(__file__).resolve().parents[2])
    keras_rows, fused_rows = eval(out.stdout.strip().splitlines()[-1])
    np.testing.assert_allclose(fused_rows, keras_rows, rtol=1e-5, atol=1e-6)
    start = np.linspace(-1, 1, 12).reshape(3, 4).tolist()
    assert not np.allclose(np.asarray(fused_rows)[:3], start)
