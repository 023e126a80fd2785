"""FastLSTM's recurrence settings: "cudnn" (cuDNN on a GPU, Keras's generic loop elsewhere) computes
the function and gradients of "scan" and of keras.layers.LSTM with the same weights, under float32
and mixed_float16; "auto" picks by device, dtype and XLA; the setting is serialised and does not
change the weights, so checkpoints move between settings. On this CPU the cuDNN branch itself runs
against a stand-in for the CudnnRNNV3 op written from cuDNN's parameter layout; the real kernel is
tested only where a GPU exists."""

import keras
import numpy as np
import pytest
import tensorflow as tf

import tf_latentflow.layers.lstm as lstm_module
from tf_latentflow.cudnn_stand_in import cudnn_stand_in
from tf_latentflow.layers.lstm import FastLSTM

B, T, D, U, EXTRA = 3, 7, 5, 4, 3  # EXTRA: kernel rows that t_rows stands for
NO_GPU = not tf.config.list_physical_devices("GPU")
GRAD_NAMES = ["x", "h0", "c0", "t_rows", "kernel", "recurrent_kernel", "bias"]


def make_layer(recurrence, with_t_rows=False, seed=0, dtype=None):
    """A built FastLSTM with random weights (seeded, so two settings can share them)."""
    layer = FastLSTM(U, recurrence=recurrence, dtype=dtype)
    layer.build((None, None, D + (EXTRA if with_t_rows else 0)))
    rng = np.random.default_rng(seed)
    for w, scale in zip(layer.weights, (0.5, 0.5, 0.3)):
        w.assign(rng.normal(scale=scale, size=w.shape).astype(np.float32))
    return layer


def random_inputs(seed=1):
    rng = np.random.default_rng(seed)
    return {"x": tf.constant(rng.normal(size=(B, T, D)).astype(np.float32)),
            "h0": tf.constant(rng.normal(size=(B, U)).astype(np.float32)),
            "c0": tf.constant(rng.normal(size=(B, U)).astype(np.float32)),
            "t_rows": tf.constant(rng.normal(scale=0.5, size=(B, T, 4 * U)).astype(np.float32)),
            "weights": tf.constant(rng.normal(size=(B, T, U)).astype(np.float32))}


def outputs_and_gradients(layer, inputs, with_state, with_t_rows):
    """Outputs, and d(sum(weights * outputs)) w.r.t. GRAD_NAMES (None where not used)."""
    watched = {"x": inputs["x"]}
    if with_state:
        watched.update(h0=inputs["h0"], c0=inputs["c0"])
    if with_t_rows:
        watched["t_rows"] = inputs["t_rows"]
    with tf.GradientTape() as tape:
        tape.watch(list(watched.values()))
        state = [watched["h0"], watched["c0"]] if with_state else None
        out = layer(watched["x"], initial_state=state, t_rows=watched.get("t_rows"))
        loss = tf.reduce_sum(inputs["weights"] * tf.cast(out, tf.float32))
    sources = [watched.get(name) for name in GRAD_NAMES[:4]]
    grads = tape.gradient(loss, [s for s in sources if s is not None] + layer.trainable_variables)
    grads = iter(grads)
    return out, [next(grads) if s is not None else None for s in sources] + list(grads)


def assert_same(got, expected, rtol, atol):
    (out, grads), (out_e, grads_e) = got, expected
    np.testing.assert_allclose(tf.cast(out, tf.float32).numpy(), tf.cast(out_e, tf.float32).numpy(),
                               rtol=rtol, atol=atol, err_msg="outputs")
    for name, g, e in zip(GRAD_NAMES, grads, grads_e):
        if e is None:
            assert g is None, name
            continue
        assert np.any(e.numpy() != 0), name  # a vacuous comparison would hide a missing path
        np.testing.assert_allclose(g.numpy(), e.numpy(), rtol=rtol, atol=atol, err_msg=name)


class Spy:
    """Wraps a module-level function of lstm.py and counts its calls."""

    def __init__(self, monkeypatch, name):
        self.calls, original = 0, getattr(lstm_module, name)

        def wrapped(*args, **kwargs):
            self.calls += 1
            return original(*args, **kwargs)

        monkeypatch.setattr(lstm_module, name, wrapped)


@pytest.mark.parametrize("with_state", [False, True])
@pytest.mark.parametrize("with_t_rows", [False, True])
def test_cudnn_setting_equals_scan_outputs_and_gradients(monkeypatch, with_state, with_t_rows):
    spy = Spy(monkeypatch, "cudnn_lstm_recurrence")
    inputs = random_inputs()
    expected = outputs_and_gradients(make_layer("scan", with_t_rows), inputs, with_state, with_t_rows)
    got = outputs_and_gradients(make_layer("cudnn", with_t_rows), inputs, with_state, with_t_rows)
    assert spy.calls == 1
    assert_same(got, expected, rtol=1e-5, atol=1e-6)


def test_cudnn_setting_equals_keras_lstm_with_the_same_weights():
    inputs = random_inputs(seed=2)
    reference = keras.layers.LSTM(U, return_sequences=True)
    reference.build((None, None, D))
    layer = make_layer("cudnn", seed=3)
    reference.set_weights(layer.get_weights())  # kernel, recurrent kernel, bias: Keras's layout
    x, state = inputs["x"], [inputs["h0"], inputs["c0"]]
    with tf.GradientTape(persistent=True) as tape:
        tape.watch(x)
        ours = tf.reduce_sum(inputs["weights"] * layer(x, initial_state=state))
        theirs = tf.reduce_sum(inputs["weights"] * reference(x, initial_state=state))
    np.testing.assert_allclose(ours.numpy(), theirs.numpy(), rtol=1e-5)
    np.testing.assert_allclose(layer(x, initial_state=state).numpy(),
                               reference(x, initial_state=state).numpy(), rtol=1e-5, atol=1e-6)
    for name, g, e in zip(["x", "kernel", "recurrent_kernel", "bias"],
                          tape.gradient(ours, [x] + layer.trainable_variables),
                          tape.gradient(theirs, [x] + reference.trainable_variables)):
        np.testing.assert_allclose(g.numpy(), e.numpy(), rtol=1e-5, atol=1e-6, err_msg=name)


def test_mixed_float16_cudnn_setting_equals_scan_and_float32():
    inputs = random_inputs(seed=4)
    expected = outputs_and_gradients(make_layer("scan", True, seed=5), inputs, True, True)
    try:
        keras.mixed_precision.set_global_policy("mixed_float16")
        scan, cudnn = make_layer("scan", True, seed=5), make_layer("cudnn", True, seed=5)
        assert cudnn.kernel.dtype == "float32" and cudnn.compute_dtype == "float16"
        got_scan = outputs_and_gradients(scan, inputs, True, True)
        got_cudnn = outputs_and_gradients(cudnn, inputs, True, True)
    finally:
        keras.mixed_precision.set_global_policy("float32")
    assert got_cudnn[0].dtype == tf.float16
    for name, g in zip(GRAD_NAMES[4:], got_cudnn[1][4:]):
        assert g.dtype == tf.float32, name  # gradients of the float32 variables
    assert_same(got_cudnn, got_scan, rtol=2e-2, atol=2e-2)
    assert_same(got_cudnn, expected, rtol=3e-2, atol=3e-2)


def test_config_round_trip_and_validation():
    assert FastLSTM(U).get_config()["recurrence"] == "auto"
    for setting in lstm_module.RECURRENCES:
        layer = FastLSTM(U, recurrence=setting, name="lstm")
        rebuilt = keras.layers.deserialize(keras.layers.serialize(layer))
        assert isinstance(rebuilt, FastLSTM)
        assert (rebuilt.units, rebuilt.recurrence) == (U, setting)
    with pytest.raises(ValueError, match="recurrence must be one of"):
        FastLSTM(U, recurrence="cuDNN")


def test_checkpoints_move_between_settings(tmp_path):
    x = random_inputs(seed=6)["x"]
    scan = make_layer("scan", seed=7)
    cudnn = FastLSTM(U, recurrence="cudnn")
    cudnn.build((None, None, D))
    # the same variables (the identity kernel is a constant, not a weight)
    assert ([(w.name, w.shape, w.trainable) for w in cudnn.weights]
            == [(w.name, w.shape, w.trainable) for w in scan.weights]
            == [("kernel", (D, 4 * U), True), ("recurrent_kernel", (U, 4 * U), True),
                ("bias", (4 * U,), True)])
    path = tf.train.Checkpoint(layer=scan).write(str(tmp_path / "scan"))
    tf.train.Checkpoint(layer=cudnn).read(path).assert_consumed()
    np.testing.assert_allclose(cudnn(x).numpy(), scan(x).numpy(), rtol=1e-5, atol=1e-6)
    # and back
    cudnn.bias.assign(cudnn.bias + 0.5)
    path = tf.train.Checkpoint(layer=cudnn).write(str(tmp_path / "cudnn"))
    tf.train.Checkpoint(layer=scan).read(path).assert_consumed()
    np.testing.assert_array_equal(scan.bias.numpy(), cudnn.bias.numpy())


@pytest.mark.skipif(not NO_GPU, reason="checks what 'auto' does on a machine without a GPU")
def test_auto_is_scan_without_a_gpu(monkeypatch):
    scan, cudnn = Spy(monkeypatch, "lstm_recurrence"), Spy(monkeypatch, "cudnn_lstm_recurrence")
    layer = make_layer("auto")
    assert layer.resolved_recurrence() == "scan"
    layer(random_inputs()["x"])
    assert (scan.calls, cudnn.calls) == (1, 0)


def test_auto_is_cudnn_when_a_gpu_is_listed_except_for_bfloat16_and_xla(monkeypatch):
    real = tf.config.list_physical_devices
    monkeypatch.setattr(tf.config, "list_physical_devices",
                        lambda kind=None: ["fake GPU"] if kind == "GPU" else real(kind))
    scan, cudnn = Spy(monkeypatch, "lstm_recurrence"), Spy(monkeypatch, "cudnn_lstm_recurrence")
    x = random_inputs()["x"]
    layer = make_layer("auto")
    assert layer.resolved_recurrence() == "cudnn"
    assert layer.resolved_recurrence(tf.float16) == "cudnn"
    assert layer.resolved_recurrence(tf.bfloat16) == "scan"
    assert make_layer("scan").resolved_recurrence() == "scan"
    expected = make_layer("scan")(x)
    np.testing.assert_allclose(layer(x).numpy(), expected.numpy(), rtol=1e-5, atol=1e-6)
    assert (scan.calls, cudnn.calls) == (1, 1)
    # cuDNN has no XLA kernel: under jit_compile "auto" keeps the scan
    got = tf.function(lambda x: layer(x), jit_compile=True)(x)
    assert (scan.calls, cudnn.calls) == (2, 1)
    np.testing.assert_allclose(got.numpy(), expected.numpy(), rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("recurrence", ["scan", "cudnn"])
def test_jit_compiled_outputs_and_gradients(recurrence):
    # "scan" is the setting XLA runs; "cudnn" under XLA takes Keras's generic loop
    inputs = random_inputs(seed=8)
    expected = outputs_and_gradients(make_layer("scan", True), inputs, True, True)
    layer = make_layer(recurrence, True)
    got = tf.function(lambda: outputs_and_gradients(layer, inputs, True, True), jit_compile=True)()
    assert_same(got, expected, rtol=1e-4, atol=1e-5)


def test_empty_sequence_traced_and_eager():
    # T = 0 with the time axis unknown, as the trainer traces it: empty outputs, zero gradients
    layer = make_layer("cudnn")
    h0 = c0 = tf.ones([2, U])

    @tf.function(input_signature=[tf.TensorSpec([None, None, D])])
    def outputs_and_state_gradient(x):
        with tf.GradientTape() as tape:
            tape.watch(h0)
            out = layer(x, initial_state=[h0, c0])
            loss = tf.reduce_sum(out)
        return out, tape.gradient(loss, h0)

    out, dh0 = outputs_and_state_gradient(tf.zeros([2, 0, D]))
    assert out.shape == (2, 0, U)
    np.testing.assert_array_equal(dh0.numpy(), np.zeros((2, U)))
    out, dh0 = outputs_and_state_gradient(tf.ones([2, 3, D]))
    assert out.shape == (2, 3, U) and np.any(dh0.numpy() != 0)
    # and eagerly, where T = 0 is static (Keras's loop would index step 0 of nothing)
    assert layer(tf.zeros([2, 0, D]), initial_state=[h0, c0]).shape == (2, 0, U)


@pytest.mark.parametrize("with_t_rows", [False, True])
def test_cudnn_branch_against_a_stand_in_for_the_cudnn_op(with_t_rows):
    # What "cudnn" hands the cuDNN op (identity input kernel, zero biases, recurrent kernel, through
    # Keras's parameter packing) gives the scan's function and gradients under cuDNN's layout.
    inputs = random_inputs(seed=9)
    expected = outputs_and_gradients(make_layer("scan", with_t_rows), inputs, True, with_t_rows)
    with cudnn_stand_in() as calls:  # the op from cuDNN's canonical layout (tf_latentflow.cudnn_stand_in)
        got = outputs_and_gradients(make_layer("cudnn", with_t_rows), inputs, True, with_t_rows)
    assert calls == [T]
    assert_same(got, expected, rtol=1e-5, atol=1e-6)


@pytest.mark.skipif(NO_GPU, reason="the cuDNN kernel needs a GPU")
def test_real_cudnn_kernel_runs_and_equals_scan():
    inputs = random_inputs(seed=10)
    expected = outputs_and_gradients(make_layer("scan", True), inputs, True, True)
    layer = make_layer("cudnn", True)
    traced = tf.function(lambda: outputs_and_gradients(layer, inputs, True, True))
    op_types = {op.type for op in traced.get_concrete_function().graph.get_operations()}
    assert "CudnnRNNV3" in op_types
    assert_same(traced(), expected, rtol=1e-3, atol=1e-4)  # cuDNN may use TF32 tensor cores
