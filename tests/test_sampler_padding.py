"""The samplers' serial loops stop after the longest length, so a padded time axis (the
exporter's XLA buckets) costs no LSTM step: each part against the full loops it replaces
(the training recurrence, `call`, `skip_padding=False`), and whole draws against the
previous sampler recomposed from those parts with the same seeds, eagerly and under XLA.
The samplers name their generator (`seeds.SAMPLING_ALG`, Philox): the same numbers as
TensorFlow's default outside XLA; under XLA other numbers than the default's."""

import os
import pathlib
import subprocess
import sys

import keras
import numpy as np
import pytest
import tensorflow as tf

from export.signatures import default_buckets
from tf_latentflow.baseline import LSTMBaseline
from tf_latentflow.data import padded_length
from tf_latentflow.layers.emission import Emission
from tf_latentflow.layers.inference import StackedBiLSTM
from tf_latentflow.layers.lstm import FastLSTM, lstm_forward, lstm_recurrence
from tf_latentflow.model import LatentFlowVAE
from tf_latentflow.priors import make_prior
from tf_latentflow.seeds import SAMPLING_ALG, as_stateless_seed

H, MAX_LENGTH, UNITS, V, NOTES = 3, 12, 6, 5, 4
LENGTHS = [7, 2, 5]  # padded to STEPS: steps 7..STEPS-1 are padding in every row
STEPS = 10


def randomize(layer, seed=0, scale=0.4):
    rng = np.random.default_rng(seed)
    for w in layer.weights:
        w.assign(rng.normal(scale=scale, size=w.shape).astype(np.float32))


def run(fn, jit_compile):
    return fn() if jit_compile is None else tf.function(fn, jit_compile=jit_compile)()


def valid_mask(lengths, steps):
    return (np.arange(steps)[None, :] < np.asarray(lengths)[:, None])[..., None]


MODES = [None, False, True]  # eager, graph, XLA
MODE_IDS = ["eager", "graph", "xla"]


@pytest.mark.parametrize("jit_compile", MODES, ids=MODE_IDS)
@pytest.mark.parametrize("num_steps", [None, 0, 1, 4, 7, 20])
def test_lstm_forward_is_the_training_recurrence_up_to_num_steps_then_zero(num_steps, jit_compile):
    rng = np.random.default_rng(0)
    projected = tf.constant(rng.normal(size=(7, 2, 4 * UNITS)).astype(np.float32))
    recurrent = tf.constant(rng.normal(scale=0.5, size=(UNITS, 4 * UNITS)).astype(np.float32))
    h0, c0 = (tf.constant(rng.normal(size=(2, UNITS)).astype(np.float32)) for _ in range(2))
    expected = lstm_recurrence(projected, recurrent, h0, c0).numpy()
    got = run(lambda: lstm_forward(projected, recurrent, h0, c0, num_steps=num_steps), jit_compile).numpy()
    computed = 7 if num_steps is None else min(max(num_steps, 1), 7)  # clipped to [1, T]
    np.testing.assert_allclose(got[:computed], expected[:computed], rtol=1e-6, atol=1e-6)
    assert np.all(got[computed:] == 0)


def test_lstm_forward_on_an_empty_sequence_and_an_unknown_length():
    recurrent = tf.ones([UNITS, 4 * UNITS])
    zeros = tf.zeros([2, UNITS])
    assert lstm_forward(tf.zeros([0, 2, 4 * UNITS]), recurrent, zeros, zeros, num_steps=3).shape == (0, 2, UNITS)
    fn = tf.function(lambda p, n: lstm_forward(p, recurrent, zeros, zeros, num_steps=n),
                     input_signature=[tf.TensorSpec([None, 2, 4 * UNITS]), tf.TensorSpec([], tf.int32)])
    assert fn(tf.zeros([0, 2, 4 * UNITS]), tf.constant(0)).shape == (0, 2, UNITS)
    out = fn(tf.ones([5, 2, 4 * UNITS]), tf.constant(2)).numpy()
    assert np.all(out[:2] != 0) and np.all(out[2:] == 0)


@pytest.mark.parametrize("jit_compile", MODES, ids=MODE_IDS)
def test_fast_lstm_inference_equals_call_with_state_and_t_rows(jit_compile):
    rng = np.random.default_rng(1)
    x = tf.constant(rng.normal(size=(2, STEPS, 3)).astype(np.float32))
    lstm = FastLSTM(UNITS)
    lstm.build((None, None, 3 + 2 * MAX_LENGTH))
    randomize(lstm)
    lengths = tf.constant([7, 3])
    state = [tf.constant(rng.normal(size=(2, UNITS)).astype(np.float32)) for _ in range(2)]
    rows = lstm.t_feature_rows(lengths, STEPS, MAX_LENGTH)
    expected = lstm(x, initial_state=state, t_rows=rows).numpy()
    got = run(lambda: lstm.inference(x, tf.reduce_max(lengths), initial_state=state, t_rows=rows),
              jit_compile).numpy()
    np.testing.assert_allclose(got[:, :7], expected[:, :7], rtol=1e-6, atol=1e-6)
    assert np.all(got[:, 7:] == 0)


def test_fast_lstm_inference_computes_in_the_compute_dtype():
    try:
        keras.mixed_precision.set_global_policy("mixed_bfloat16")
        lstm = FastLSTM(UNITS)
        x = np.ones((2, 4, 3), np.float32)
        expected = lstm(x)
        got = lstm.inference(x, 3)
    finally:
        keras.mixed_precision.set_global_policy("float32")
    assert got.dtype == tf.bfloat16
    np.testing.assert_array_equal(tf.cast(got[:, :3], tf.float32).numpy(),
                                  tf.cast(expected[:, :3], tf.float32).numpy())


@pytest.mark.parametrize("jit_compile", MODES, ids=MODE_IDS)
def test_stacked_bilstm_skipping_padding_gives_the_same_states(jit_compile):
    rng = np.random.default_rng(2)
    bilstm = StackedBiLSTM(UNITS, num_layers=2)
    bilstm.build((None, None, H + 2 * MAX_LENGTH))
    randomize(bilstm)
    z = tf.constant(rng.normal(size=(3, STEPS, H)).astype(np.float32))
    lengths = tf.constant(LENGTHS)
    expected = bilstm(z, lengths, t_depth=MAX_LENGTH)
    got = run(lambda: bilstm(z, lengths, t_depth=MAX_LENGTH, skip_padding=True), jit_compile)
    for e, g in zip(expected, got):  # forward and backward states, exactly 0 at padding in both
        np.testing.assert_allclose(g.numpy(), e.numpy(), rtol=1e-6, atol=1e-6)
        assert np.all(g.numpy()[~valid_mask(LENGTHS, STEPS)[..., 0]] == 0)


@pytest.mark.parametrize("jit_compile", MODES, ids=MODE_IDS)
@pytest.mark.parametrize("name", ["iaf-scf", "af-af", "af-only"])
def test_prior_transform_skipping_padding_gives_the_same_z_at_valid_steps(name, jit_compile):
    prior = make_prior(name, latent_size=H, max_length=MAX_LENGTH, lstm_units=UNITS, num_flow_layers=2,
                       flow_hidden_units=(8,))
    prior.build()
    randomize(prior, scale=0.3)
    eps = tf.constant(np.random.default_rng(4).normal(size=(3, STEPS, H)).astype(np.float32))
    lengths = tf.constant(LENGTHS)
    valid = valid_mask(LENGTHS, STEPS)
    expected = prior.transform(eps, lengths).numpy() * valid
    got = run(lambda: prior.transform(eps, lengths, skip_padding=True), jit_compile).numpy() * valid
    np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("jit_compile", [None, True], ids=["eager", "xla"])
@pytest.mark.parametrize("text", [True, False], ids=["text", "music"])
def test_emission_sample_draws_from_the_full_logits_with_the_same_numbers(text, jit_compile):
    keras.utils.set_random_seed(0)
    emission = Emission(H, MAX_LENGTH, vocab_size=V if text else None, num_notes=None if text else NOTES,
                        hidden_units=UNITS)
    emission.build()
    randomize(emission)
    z = tf.constant(np.random.default_rng(5).normal(size=(3, STEPS, H)).astype(np.float32))
    lengths = tf.constant(LENGTHS)
    seed = tf.constant([3, 4], tf.int64)
    np.testing.assert_allclose(emission.logits(z, lengths, skip_padding=True).numpy() * valid_mask(LENGTHS, STEPS),
                               emission.logits(z, lengths).numpy() * valid_mask(LENGTHS, STEPS),
                               rtol=1e-6, atol=1e-6)
    if text and jit_compile:
        pytest.skip("int32 stateless_categorical has no XLA kernel (the text sampler runs without XLA)")

    def previous():  # the sampler before skip_padding: full-length BiLSTM, the same draws
        logits = emission.logits(z, lengths)
        valid = tf.sequence_mask(lengths, STEPS)
        if text:
            x = tf.random.stateless_categorical(tf.reshape(logits, [-1, V]), 1, seed=seed, dtype=tf.int32)
            return tf.where(valid, tf.reshape(x, [3, STEPS]), 0)
        u = tf.random.stateless_uniform(tf.shape(logits), seed=seed, alg=SAMPLING_ALG)
        return tf.where(valid[..., None], tf.cast(u < tf.sigmoid(logits), tf.int32), 0)

    np.testing.assert_array_equal(run(lambda: emission.sample(z, lengths, seed=seed), jit_compile).numpy(),
                                  run(previous, jit_compile).numpy())


def tiny_vae(prior, text):
    keras.utils.set_random_seed(0)
    model = LatentFlowVAE(MAX_LENGTH, vocab_size=V if text else None, num_notes=None if text else NOTES,
                          prior=prior, latent_size=H, embedding_size=UNITS, hidden_units=UNITS,
                          prior_lstm_units=UNITS, num_flow_layers=2, flow_hidden_units=(8,))
    randomize(model, scale=0.4)
    return model


def previous_vae_sample(model, lengths, seed, steps):
    """`LatentFlowVAE.sample` as it was before skip_padding: every loop over all `steps`."""
    seeds = tf.unstack(tf.random.experimental.stateless_split(as_stateless_seed(seed), 3))
    prior, emission = model.prior, model.emission
    valid = tf.sequence_mask(lengths, steps)
    eps = tf.random.stateless_normal(tf.stack([tf.shape(lengths)[0], steps, H]), seed=seeds[1], alg=SAMPLING_ALG)
    eps = tf.where(valid[..., None], eps, 0.0)
    z = tf.where(valid[..., None], prior.transform(eps, lengths), 0.0)
    logits = emission.logits(z, lengths)
    if model.is_text:
        x = tf.random.stateless_categorical(tf.reshape(logits, [-1, V]), 1, seed=seeds[2], dtype=tf.int32)
        return tf.where(valid, tf.reshape(x, tf.shape(logits)[:2]), 0)
    u = tf.random.stateless_uniform(tf.shape(logits), seed=seeds[2], alg=SAMPLING_ALG)
    return tf.where(valid[..., None], tf.cast(u < tf.sigmoid(logits), tf.int32), 0)


@pytest.mark.slow  # the default suite's 10-minute budget
@pytest.mark.parametrize("jit_compile", [None, True], ids=["eager", "xla"])
@pytest.mark.parametrize("prior", ["iaf-scf", "af-af"])
def test_vae_sample_in_a_padded_bucket_is_the_previous_sampler_draw(prior, jit_compile):
    model = tiny_vae(prior, text=False)
    lengths = tf.constant(LENGTHS)
    seed = tf.constant([7, 1], tf.int64)
    new = run(lambda: model.sample(3, lengths=lengths, seed=seed, max_length=STEPS)[0], jit_compile).numpy()
    old = run(lambda: previous_vae_sample(model, lengths, seed, STEPS), jit_compile).numpy()
    np.testing.assert_array_equal(new, old)
    assert new.shape == (3, STEPS, NOTES) and new[~valid_mask(LENGTHS, STEPS)[..., 0]].sum() == 0


def test_text_vae_sample_is_the_previous_sampler_draw():
    model = tiny_vae("iaf-scf", text=True)
    lengths = tf.constant(LENGTHS)
    seed = tf.constant([7, 2], tf.int64)
    np.testing.assert_array_equal(model.sample(3, lengths=lengths, seed=seed, max_length=STEPS)[0].numpy(),
                                  previous_vae_sample(model, lengths, seed, STEPS).numpy())


@pytest.mark.parametrize("jit_compile", [None, True], ids=["eager", "xla"])
def test_baseline_sample_in_a_padded_bucket_is_its_unpadded_draw_then_zeros(jit_compile):
    keras.utils.set_random_seed(0)
    model = LSTMBaseline(MAX_LENGTH, num_notes=NOTES, embedding_size=UNITS, hidden_units=UNITS)
    randomize(model, scale=0.5)
    lengths = tf.constant(LENGTHS)
    seed = tf.constant([7, 3], tf.int64)
    padded = run(lambda: model.sample(3, lengths=lengths, seed=seed, max_length=STEPS)[0], jit_compile).numpy()
    longest = max(LENGTHS)
    unpadded = run(lambda: model.sample(3, lengths=lengths, seed=seed, max_length=longest)[0], jit_compile).numpy()
    np.testing.assert_array_equal(padded[:, :longest], unpadded)
    assert np.all(padded[:, longest:] == 0) and np.any(padded != 0)


@pytest.mark.parametrize("jit_compile", [None, False], ids=["eager", "graph"])
def test_the_sampling_generator_draws_the_default_numbers_outside_xla(jit_compile):
    # TensorFlow's kernels resolve "auto_select" to Philox; under XLA the default lowers to a
    # slower generator with other numbers (the samplers' XLA draws changed with SAMPLING_ALG).
    seed = tf.random.experimental.stateless_split(tf.constant([7, 1], tf.int64), 3)[1]  # a large seed
    for draw in (tf.random.stateless_uniform, tf.random.stateless_normal):
        default = run(lambda: draw([2, 5, 4], seed=seed), jit_compile).numpy()
        named = run(lambda: draw([2, 5, 4], seed=seed, alg=SAMPLING_ALG), jit_compile).numpy()
        np.testing.assert_array_equal(named, default)


def test_default_buckets_are_the_training_grid_up_to_the_maximum_length():
    assert default_buckets(256) == tuple(range(16, 257, 16))
    assert default_buckets(200) == tuple(range(16, 193, 16)) + (200,)
    assert default_buckets(600) == tuple(range(16, 257, 16)) + tuple(range(288, 513, 32)) + (576, 600)
    assert default_buckets(10) == (10,)
    for max_length in (10, 100, 200, 256, 1000):
        buckets = default_buckets(max_length)
        for t in range(1, max_length + 1):  # the bucket a request runs: never more padding than the grid
            bucket = min(b for b in buckets if b >= t)
            assert bucket <= max(padded_length(t, 16), 16)


COMPILE_IAF_SCF = """
import keras, tensorflow as tf
from export.signatures import make_sample_fn
from tf_latentflow.layers import LengthModel
from tf_latentflow.runs import build_model
from tf_latentflow.training.config import default_config
keras.utils.set_random_seed(0)
config = default_config("jsb", "iaf-scf", "unused", hidden_units=16, embedding_size=16, prior_lstm_units=16,
                        latent_size=4, flow_hidden_units=(8,), num_flow_layers=5)
model = build_model(config.model_settings, LengthModel(64, name="length_model"), None)
sample = make_sample_fn(model, jit_compile=True, buckets=[32])
x = sample(tf.constant(2), tf.constant(30), tf.constant(1, tf.int64))["sequences"]
assert x.shape[:2] == (2, 30), x.shape
print("compiled")
"""


@pytest.mark.slow  # the default suite's 10-minute budget
def test_the_iaf_scf_xla_sampler_with_five_flow_layers_compiles():
    """Regression: stopping the IAF prior's time LSTMs after the longest length chained one
    data-dependent loop per flow layer and XLA's simplifier never finished compiling the
    5-layer sampler (4 layers: > 90 s; 3: ~10 s). The paper's 5 layers, tiny widths, in a
    fresh process bounded by a timeout (a hang must fail, not stall the suite)."""
    root = pathlib.Path(__file__).resolve().parents[1]
    env = dict(os.environ, PYTHONPATH=str(root), TF_CPP_MIN_LOG_LEVEL="2")
    proc = subprocess.run([sys.executable, "-c", COMPILE_IAF_SCF], cwd=root, env=env, capture_output=True,
                          text=True, timeout=240)
    assert proc.returncode == 0 and "compiled" in proc.stdout, proc.stderr[-2000:]
