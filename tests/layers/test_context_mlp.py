"""ContextMLP: the documented dense network, its context modes, initialisation and Keras hygiene."""

import numpy as np
import pytest
import tensorflow as tf

from flow_testing import randomize_weights
from tf_latentflow.layers import ContextMLP

D_IN, C, P, D_OUT = 4, 3, 2, 5


def numpy_context_mlp(layer, x, context=None, activation=lambda h: np.maximum(h, 0.0)):
    """The module docstring's formula from the layer's weights, in NumPy float64:
    h_l = act(h_{l-1} W_l + ctx V_l + b_l), out = h_L W_o + ctx V_o + b_o, reshaped."""
    h = np.asarray(x, np.float64)
    num = len(layer.kernels)
    for i in range(num):
        h = h @ layer.kernels[i].numpy().astype(np.float64) + layer.biases[i].numpy()
        if context is not None and (i == 0 or layer.context_layers == "all"):
            h = h + np.asarray(context, np.float64) @ layer.context_kernels[i].numpy()
        if i < num - 1:
            h = activation(h)
    return h.reshape(h.shape[:-1] + (-1, layer.num_params))


def make_mlp(with_context, context_layers="all", seed=0, hidden_units=(6, 7), **options):
    layer = ContextMLP(P, num_outputs=D_OUT, hidden_units=hidden_units,
                       context_layers=context_layers, **options)
    layer.build((None, D_IN), (None, C) if with_context else None)
    randomize_weights(layer, seed=seed)
    rng = np.random.default_rng(seed + 1)
    x = rng.normal(size=(8, D_IN)).astype(np.float32)
    context = rng.normal(size=(8, C)).astype(np.float32) if with_context else None
    return layer, x, context


@pytest.mark.parametrize("with_context, context_layers",
                         [(False, "all"), (True, "all"), (True, "first")])
@pytest.mark.parametrize("hidden_units", [(), (6,), (6, 7)])
def test_output_is_the_documented_network_of_its_weights(with_context, context_layers,
                                                         hidden_units):
    layer, x, context = make_mlp(with_context, context_layers, hidden_units=hidden_units)
    out = layer(x) if context is None else layer(x, context=context)
    assert out.shape == (8, D_OUT, P) and out.dtype == tf.float32
    np.testing.assert_allclose(out.numpy(), numpy_context_mlp(layer, x, context),
                               rtol=1e-5, atol=1e-5)
    expected_context_kernels = 0 if not with_context else (
        1 if context_layers == "first" else len(hidden_units) + 1)
    assert len(layer.context_kernels) == expected_context_kernels


@pytest.mark.parametrize("context_layers", ["all", "first"])
def test_context_first_enters_through_the_first_layer_only(context_layers):
    layer, x, context = make_mlp(True, context_layers, hidden_units=(6, 7))
    first = layer.context_kernels[0]
    first.assign(np.zeros(first.shape, np.float32))  # cut the first layer's context input
    out = layer(x, context=context).numpy()
    moved = layer(x, context=context + 5.0).numpy()
    if context_layers == "first":
        np.testing.assert_array_equal(moved, out)
    else:  # the later layers still see it
        assert np.all(np.abs(moved - out).sum(axis=(1, 2)) > 0)


def test_extra_batch_axes_give_the_row_by_row_result():
    layer, x, context = make_mlp(True)
    x3 = x.reshape(2, 4, D_IN)
    c3 = context.reshape(2, 4, C)
    out3 = layer(x3, context=c3)
    assert out3.shape == (2, 4, D_OUT, P)
    np.testing.assert_allclose(out3.numpy().reshape(8, D_OUT, P),
                               layer(x, context=context).numpy(), rtol=1e-6, atol=1e-6)
    assert layer.compute_output_shape((2, 4, D_IN), (2, 4, C)) == (2, 4, D_OUT, P)


def test_num_outputs_defaults_to_the_input_size():
    layer = ContextMLP(3, hidden_units=(5,))
    out = layer(np.zeros((2, 6), np.float32))
    assert out.shape == (2, 6, 3)
    assert layer.compute_output_shape((2, 6)) == (2, 6, 3)
    assert layer.get_config()["num_outputs"] is None


def test_graph_mode_with_unknown_shapes_equals_eager():
    layer, x, context = make_mlp(True)
    x3, c3 = x.reshape(2, 4, D_IN), context.reshape(2, 4, C)
    fn = tf.function(lambda a, b: layer(a, context=b), input_signature=[
        tf.TensorSpec([None, None, D_IN]), tf.TensorSpec([None, None, C])])
    graph = fn(x3, c3)
    assert graph.shape == (2, 4, D_OUT, P)
    np.testing.assert_allclose(graph.numpy(), layer(x3, context=c3).numpy(), rtol=1e-6, atol=1e-6)


def test_gradient_inside_a_while_loop_compiles_with_xla_at_unknown_batch():
    # The reason for `_matmul_last_axis` (module): tf.tensordot with an unknown batch size
    # builds a run-time permutation that XLA refuses inside a while loop's gradient.
    layer, x, context = make_mlp(True, hidden_units=(6,))
    x3, c3 = x.reshape(2, 4, D_IN), context.reshape(2, 4, C)

    def loss_and_grads(x, c):
        with tf.GradientTape() as tape:
            def body(i, total):
                return i + 1, total + tf.reduce_sum(tf.square(layer(x * tf.cast(i, x.dtype),
                                                                     context=c)))
            _, total = tf.while_loop(lambda i, _: i < 3, body, (tf.constant(1), tf.constant(0.0)),
                                     maximum_iterations=3)
        return total, tape.gradient(total, layer.trainable_variables)

    signature = [tf.TensorSpec([None, None, D_IN]), tf.TensorSpec([None, None, C])]
    total, grads = tf.function(loss_and_grads, input_signature=signature)(x3, c3)
    xla_total, xla_grads = tf.function(loss_and_grads, input_signature=signature,
                                       jit_compile=True)(x3, c3)
    np.testing.assert_allclose(xla_total.numpy(), total.numpy(), rtol=1e-5)
    for g, xg in zip(grads, xla_grads):
        np.testing.assert_allclose(xg.numpy(), g.numpy(), rtol=1e-4, atol=1e-5)


def test_glorot_initialisation_scales_the_output_kernels():
    layer = ContextMLP(P, num_outputs=D_OUT, hidden_units=(40, 40), output_scale=0.01)
    layer.build((None, 30), (None, 20))
    for kernel in layer.kernels + layer.context_kernels:
        fan_in, fan_out = kernel.shape
        limit = np.sqrt(6.0 / (fan_in + fan_out))  # Glorot uniform
        last = fan_out == D_OUT * P
        bound = limit * (0.01 if last else 1.0)
        values = kernel.numpy()
        assert np.abs(values).max() <= bound * (1 + 1e-6), kernel.path
        assert values.std() > 0.4 * bound, kernel.path  # U(-b, b) has std b / sqrt(3)
    assert all(not np.any(b.numpy()) for b in layer.biases)
    out = layer(np.ones((3, 30), np.float32), context=np.ones((3, 20), np.float32)).numpy()
    assert np.abs(out).max() < 0.5  # a fresh flow starts near the identity map


@pytest.mark.parametrize("init", ["glorot", "reference"])
def test_kernel_and_context_kernel_are_drawn_independently(init):
    layer = ContextMLP(P, num_outputs=12, hidden_units=(30,), init=init)
    layer.build((None, 20), (None, 20))  # same shapes: independent draws cannot coincide
    for kernel, context_kernel in zip(layer.kernels, layer.context_kernels):
        k, v = kernel.numpy().ravel(), context_kernel.numpy().ravel()
        n = min(k.size, v.size)  # a shared initializer would repeat the draws: equal prefixes
        assert abs(np.corrcoef(k[:n], v[:n])[0, 1]) < 0.5, kernel.path


def test_context_presence_must_match_the_build():
    layer, x, context = make_mlp(True)
    with pytest.raises(ValueError, match="built with a context input and called without one"):
        layer(x)
    plain, x, _ = make_mlp(False)
    with pytest.raises(ValueError, match="built without a context input and called with one"):
        plain(x, context=np.zeros((8, C), np.float32))


@pytest.mark.parametrize("make, message", [
    (lambda: ContextMLP(0), "num_params must be positive"),
    (lambda: ContextMLP(2, init="he"), "init must be one of"),
    (lambda: ContextMLP(2, context_layers="last"), "context_layers must be one of"),
])
def test_constructor_arguments_are_validated(make, message):
    with pytest.raises(ValueError, match=message):
        make()


def test_unknown_input_size_is_refused_at_build():
    with pytest.raises(ValueError, match="last input axis must be known"):
        ContextMLP(2).build((None, None))


def test_config_round_trip_keeps_every_option_and_the_outputs():
    layer = ContextMLP(P, num_outputs=D_OUT, hidden_units=(6,), activation="tanh",
                       output_scale=0.3, context_layers="first", init="reference", name="net")
    rng = np.random.default_rng(3)
    x, context = rng.normal(size=(4, D_IN)).astype(np.float32), rng.normal(size=(4, C)).astype(
        np.float32)
    layer(x, context=context)
    randomize_weights(layer, seed=4)
    clone = ContextMLP.from_config(layer.get_config())
    assert (clone.num_params, clone.num_outputs, clone.hidden_units, clone.output_scale,
            clone.context_layers, clone.init, clone.name) == (
        P, D_OUT, (6,), 0.3, "first", "reference", "net")
    clone(x, context=context)
    clone.set_weights(layer.get_weights())
    expected = numpy_context_mlp(layer, x, context, activation=np.tanh)
    np.testing.assert_allclose(layer(x, context=context).numpy(), expected, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(clone(x, context=context).numpy(), expected, rtol=1e-5, atol=1e-5)


def test_mixed_float16_computes_in_float16_with_float32_weights():
    layer, x, context = make_mlp(True)
    mixed = ContextMLP(P, num_outputs=D_OUT, hidden_units=(6, 7), dtype="mixed_float16")
    mixed.build((None, D_IN), (None, C))
    mixed.set_weights(layer.get_weights())
    assert all(w.dtype == "float32" for w in mixed.weights)
    out = mixed(x, context=context)
    assert out.dtype == tf.float16
    np.testing.assert_allclose(out.numpy().astype(np.float64), numpy_context_mlp(layer, x, context),
                               rtol=2e-2, atol=2e-2)
