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


@pytest.mark.parametrize("context_layers", ["all", "first"])
@pytest.mark.parametrize("order", ["natural", "reversed"])
@pytest.mark.parametrize("with_context", [False, True])
def test_made_is_autoregressive_in_its_order(order, with_context, context_layers):
    d = 6
    made = MADE(num_params=3, hidden_units=(32, 32), order=order, context_layers=context_layers)
    rng = np.random.default_rng(0)
    x = rng.normal(size=(16, d)).astype(np.float32)
    context = rng.normal(size=(16, 4)).astype(np.float32) if with_context else None
    made(x, context=context) if with_context else made(x)
    randomize_weights(made, seed=1)
    depends = output_input_dependence(made, x, context)
    position = np.arange(d) if order == "natural" else np.arange(d)[::-1]  # rank of each dim
    expected = position[:, None] > position[None, :]  # output i sees input j iff j comes before i
    np.testing.assert_array_equal(depends, expected)


@pytest.mark.parametrize("context_layers", ["all", "first"])
@pytest.mark.parametrize("hidden_units", [(16,), (16, 16)])
def test_made_context_reaches_every_output_including_the_first(context_layers, hidden_units):
    made = MADE(num_params=2, hidden_units=hidden_units, context_layers=context_layers)
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


@pytest.mark.parametrize("layer_fn, masked", [
    (lambda **kw: MADE(num_params=5, hidden_units=(100, 100), **kw), True),
    (lambda **kw: ContextMLP(num_params=5, num_outputs=25, hidden_units=(100, 100), **kw), False),
])
def test_context_in_the_first_layer_only_has_the_reference_parameter_count(layer_fn, masked):
    """H = 50 (25 for a coupling half), C = 500, 2 x 100 hidden units, 5 NLSq parameters."""
    d_in = 50 if masked else 25
    d_out = 50 * 5 if masked else 25 * 5
    dense = d_in * 100 + 100 + 100 * 100 + 100 + 100 * d_out + d_out
    counts = {}
    for mode in ("all", "first"):
        layer = layer_fn(context_layers=mode)
        layer(np.zeros((2, d_in), np.float32), context=np.zeros((2, 500), np.float32))
        counts[mode] = sum(int(np.prod(w.shape)) for w in layer.trainable_weights)
    assert counts["first"] == dense + 500 * 100
    assert counts["all"] == dense + 500 * (100 + 100 + d_out)


def test_reference_initialisation_ranges():
    made = MADE(num_params=5, hidden_units=(100, 100), init="reference")
    made(np.zeros((2, 50), np.float32), context=np.zeros((2, 30), np.float32))
    for kernel in made.kernels[:-1] + made.context_kernels[:-1]:
        values = kernel.numpy()
        assert np.abs(values).max() <= 1e-3 and values.std() > 1e-4
    out_kernel, out_bias = made.kernels[-1].numpy(), made.biases[-1].numpy()
    assert np.abs(out_kernel).max() <= 0.1 and out_kernel.std() > 0.03  # U(+-1/sqrt(100))
    assert np.abs(out_bias).max() <= 0.1 and out_bias.std() > 0.03
    assert all(not np.any(b.numpy()) for b in made.biases[:-1])
    coupling = ContextMLP(num_params=5, num_outputs=25, hidden_units=(100, 100), init="reference")
    coupling(np.zeros((2, 25), np.float32), context=np.zeros((2, 30), np.float32))
    for kernel in coupling.kernels + coupling.context_kernels:
        values = kernel.numpy()
        assert np.abs(values).max() <= 0.07 and values.std() > 0.03  # U(+-0.07): std 0.040
    assert all(not np.any(b.numpy()) for b in coupling.biases)


def test_new_options_are_checked_and_survive_the_config_round_trip():
    with pytest.raises(ValueError, match="context_layers"):
        ContextMLP(num_params=2, context_layers="last")
    with pytest.raises(ValueError, match="init"):
        MADE(num_params=2, init="he")
    made = MADE(num_params=2, hidden_units=(8,), context_layers="first", init="reference")
    clone = MADE.from_config(made.get_config())
    assert (clone.context_layers, clone.init) == ("first", "reference")
