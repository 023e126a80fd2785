"""MADE and ContextMLP: masks, context, gradients, Keras tracking and config."""

import keras
import numpy as np
import pytest
import tensorflow as tf

from flow_testing import randomize_weights
from tf_latentflow.layers import MADE, ContextMLP


def output_input_dependence(layer, x, context=None):
    """[D_out, D_in] boolean: does output position i depend on input j (any batch row, any param)."""
    x = tf.convert_to_tensor(x)
    with tf.GradientTape() as tape:
        tape.watch(x)
        out = layer(x) if context is None else layer(x, context=context)
    jac = tape.batch_jacobian(out, x).numpy()  # [B, D_out, P, D_in]
    return np.abs(jac).sum(axis=(0, 2)) > 0


@pytest.mark.parametrize("order", ["natural", "reversed"])
@pytest.mark.parametrize("with_context", [False, True])
def test_made_is_autoregressive_in_its_order(order, with_context):
    d = 6
    made = MADE(num_params=3, hidden_units=(32, 32), order=order)
    rng = np.random.default_rng(0)
    x = rng.normal(size=(16, d)).astype(np.float32)
    context = rng.normal(size=(16, 4)).astype(np.float32) if with_context else None
    made(x, context=context) if with_context else made(x)
    randomize_weights(made, seed=1)
    depends = output_input_dependence(made, x, context)
    position = np.arange(d) if order == "natural" else np.arange(d)[::-1]  # rank of each dim
    expected = position[:, None] > position[None, :]  # output i sees input j iff j comes before i
    np.testing.assert_array_equal(depends, expected)


def test_made_context_reaches_every_output_including_the_first():
    made = MADE(num_params=2, hidden_units=(16,))
    rng = np.random.default_rng(1)
    x = rng.normal(size=(8, 5)).astype(np.float32)
    c = tf.constant(rng.normal(size=(8, 3)).astype(np.float32))
    made(x, context=c)
    randomize_weights(made, seed=2)
    with tf.GradientTape() as tape:
        tape.watch(c)
        out = made(x, context=c)
    jac = tape.batch_jacobian(out, c).numpy()  # [B, D, P, C]
    assert np.all(np.abs(jac).sum(axis=(0, 2, 3)) > 0)


def test_made_hidden_narrower_than_event_is_an_error():
    with pytest.raises(ValueError, match="at least as many units as the event size"):
        MADE(num_params=5, hidden_units=(100, 4))(np.zeros((2, 5), np.float32))


def test_made_checks_order_and_context_consistency():
    with pytest.raises(ValueError, match="order"):
        MADE(num_params=2, order="random")
    made = MADE(num_params=2, hidden_units=(8,))
    made(np.zeros((2, 3), np.float32))
    with pytest.raises(ValueError, match="built without a context"):
        made(np.zeros((2, 3), np.float32), context=np.zeros((2, 4), np.float32))


@pytest.mark.parametrize("layer_fn", [
    lambda: MADE(num_params=5, hidden_units=(20, 20)),
    lambda: ContextMLP(num_params=5, num_outputs=3, hidden_units=(20, 20)),
])
def test_every_variable_gets_a_gradient_and_keras_models_track_weights(layer_fn):
    layer = layer_fn()
    inputs = keras.Input((4,))
    context = keras.Input((7,))
    model = keras.Model([inputs, context], layer(inputs, context=context))
    # 3 dense kernels, 3 context kernels, 3 biases.
    assert len(model.trainable_weights) == 9
    assert {id(w) for w in model.trainable_weights} == {id(w) for w in layer.trainable_weights}
    rng = np.random.default_rng(3)
    x = rng.normal(size=(10, 4)).astype(np.float32)
    c = rng.normal(size=(10, 7)).astype(np.float32)
    with tf.GradientTape() as tape:
        loss = tf.reduce_sum(tf.square(model([x, c])))
    grads = tape.gradient(loss, model.trainable_weights)
    for weight, grad in zip(model.trainable_weights, grads):
        assert grad is not None and np.any(grad.numpy() != 0), weight.path


def test_output_shape_with_extra_batch_axes_and_config_round_trip():
    made = MADE(num_params=5, hidden_units=(12, 12), order="reversed", name="m")
    out = made(np.zeros((2, 3, 4), np.float32))
    assert out.shape == (2, 3, 4, 5)
    clone = MADE.from_config(made.get_config())
    assert (clone.order, clone.hidden_units, clone.num_params) == ("reversed", (12, 12), 5)
    mlp = ContextMLP(num_params=2, num_outputs=6, hidden_units=(8,))
    assert mlp(np.zeros((5, 3), np.float32)).shape == (5, 6, 2)
    assert ContextMLP.from_config(mlp.get_config()).num_outputs == 6
