"""HiddenFlowStack: AF-in-hidden and SCF-in-hidden stacks as TFP bijectors owned by Keras."""

import keras
import numpy as np
import pytest
import tensorflow as tf
import tensorflow_probability as tfp

from flow_testing import log_det_from_autodiff, randomize_weights
from tf_latentflow.layers import MADE, ContextMLP, HiddenFlowStack

tfb = tfp.bijectors
tfd = tfp.distributions

H, C, B = 5, 6, 7
CASES = [(kind, sm, ctx) for kind in ("af", "scf") for sm in ("nlsq", "affine")
         for ctx in (None, C)]
# the reference code's conditioners: damped NLSq, context into the first layer only
REFERENCE_CASES = [(kind, "nlsq-damping", C) for kind in ("af", "scf")]


def make_stack(kind, scalar_map, context_size, seed=0, scale=0.15, num_layers=3, **options):
    stack = HiddenFlowStack(H, kind=kind, num_layers=num_layers, hidden_units=(16, 16),
                            scalar_map=scalar_map, context_size=context_size, **options)
    stack.build()
    randomize_weights(stack, seed=seed, scale=scale)
    rng = np.random.default_rng(seed + 1)
    eps = rng.normal(size=(B, H))
    context = None if context_size is None else tf.constant(rng.normal(size=(B, context_size)))
    return stack, eps, context


# The AF stack's NLSq cases take ~10 s each: one stays in the default suite.
SLOW_CASES = {("af", "nlsq", None), ("af", "nlsq-damping", C)}


@pytest.mark.parametrize("kind,scalar_map,context_size", [
    pytest.param(*case, marks=pytest.mark.slow) if case in SLOW_CASES else case
    for case in CASES + REFERENCE_CASES])
def test_log_det_matches_autodiff_and_round_trips(kind, scalar_map, context_size):
    options = dict(context_layers="first") if scalar_map == "nlsq-damping" else {}
    stack, eps, context = make_stack(kind, scalar_map, context_size, **options)
    bij = stack.bijector
    z, fldj = bij.forward_and_log_det(eps, context=context)
    assert np.all(np.isfinite(z.numpy()))
    # The conditioners compute in float32, so the autodiff Jacobian (float64 flow
    # math through float32 conditioner derivatives) agrees to ~1e-5 relative.
    logdet, _ = log_det_from_autodiff(lambda e: bij.forward(e, context=context), eps)
    np.testing.assert_allclose(fldj.numpy(), logdet, rtol=1e-5, atol=1e-4)
    z = tf.identity(z)
    eps_back, ildj = stack(z, context=context)  # calling the layer = density direction
    np.testing.assert_allclose(eps_back.numpy(), eps, rtol=1e-8, atol=1e-8)
    np.testing.assert_allclose(ildj.numpy(), -fldj.numpy(), rtol=1e-8, atol=1e-8)
    logdet_inv, _ = log_det_from_autodiff(lambda y: bij.inverse(y, context=context), z)
    np.testing.assert_allclose(ildj.numpy(), logdet_inv, rtol=1e-5, atol=1e-4)


@pytest.mark.parametrize("kind", ["af", "scf"])
def test_float32_round_trip_and_layers_alternate_their_order(kind):
    stack, eps, context = make_stack(kind, "nlsq", C, num_layers=4)
    eps32 = eps.astype(np.float32)
    ctx32 = tf.cast(context, tf.float32)
    z = stack.bijector.forward(eps32, context=ctx32)
    np.testing.assert_allclose(stack.bijector.inverse(tf.identity(z), context=ctx32).numpy(), eps32,
                               rtol=1e-4, atol=1e-4)
    members = stack.bijector.bijectors
    assert len(members) == 4
    if kind == "af":
        assert [m.conditioner.order for m in members] == ["natural", "reversed"] * 2
    else:
        assert [m.num_masked for m in members] == [2, -3, 2, -3]  # H = 5: floor, then ceil


@pytest.mark.parametrize("kind", ["af", "scf"])
def test_every_dimension_is_transformed_and_mixed(kind):
    # After the reversal between layers no output dimension is a copy of its input,
    # and every z_i depends on every eps_j.
    stack, eps, context = make_stack(kind, "nlsq", C)
    _, jac = log_det_from_autodiff(lambda e: stack.bijector.forward(e, context=context), eps)
    assert np.all(np.abs(jac).sum(0) > 0)


@pytest.mark.parametrize("kind", ["af", "scf"])
def test_gradients_reach_every_variable_in_both_directions(kind):
    stack, eps, context = make_stack(kind, "nlsq", C)
    variables = stack.trainable_variables
    assert len(variables) == 3 * 9  # 3 layers x (3 kernels, 3 context kernels, 3 biases)
    for direction in ("density", "sampling"):
        with tf.GradientTape() as tape:
            if direction == "density":
                out, ldj = stack.bijector.inverse_and_log_det(eps, context=context)
            else:
                out, ldj = stack.bijector.forward_and_log_det(eps, context=context)
            loss = tf.reduce_sum(tf.square(out)) - tf.reduce_sum(ldj)
        grads = tape.gradient(loss, variables)
        for var, grad in zip(variables, grads):
            assert grad is not None and np.all(np.isfinite(grad.numpy())), (direction, var.path)
            assert np.any(grad.numpy() != 0), (direction, var.path)


def test_keras_model_tracks_the_stack_weights_and_checkpoints_them(tmp_path):
    class Density(keras.Model):
        def __init__(self):
            super().__init__()
            self.flow = HiddenFlowStack(3, kind="af", num_layers=2, hidden_units=(8,),
                                        context_size=2)

        def call(self, z, context):
            eps, ildj = self.flow(z, context=context)
            return tf.reduce_sum(tfd.Normal(0.0, 1.0).log_prob(eps), -1) + ildj

    model = Density()
    z = np.random.default_rng(0).normal(size=(4, 3)).astype(np.float32)
    c = np.ones((4, 2), np.float32)
    before = model(z, c).numpy()
    assert len(model.trainable_weights) == 2 * 6  # 2 layers x (2 kernels, 2 context kernels, 2 biases)
    model.save_weights(str(tmp_path / "m.weights.h5"))
    other = Density()
    other(z, c)
    assert not np.allclose(other(z, c).numpy(), before)
    other.load_weights(str(tmp_path / "m.weights.h5"))
    np.testing.assert_allclose(other(z, c).numpy(), before, rtol=1e-6)


def test_transformed_distribution_and_invert_in_a_tfp_pipeline():
    stack, _, context = make_stack("af", "nlsq", C)
    ctx = tf.cast(context, tf.float32)
    base = tfd.Sample(tfd.Normal(0.0, 1.0), H)
    dist = tfd.TransformedDistribution(base, stack.bijector)
    z = dist.sample(B, seed=5, bijector_kwargs={"context": ctx})
    lp = dist.log_prob(tf.identity(z), bijector_kwargs={"context": ctx})
    eps, ildj = stack.bijector.inverse_and_log_det(z, context=ctx)
    np.testing.assert_allclose(lp.numpy(), base.log_prob(eps).numpy() + ildj.numpy(), rtol=1e-5,
                               atol=1e-5)
    # IAF-in-hidden: Invert of the AF stack samples in one pass and scores serially.
    iaf = tfd.TransformedDistribution(base, tfb.Invert(stack.bijector))
    z_iaf = iaf.sample(B, seed=6, bijector_kwargs={"context": ctx})
    assert np.all(np.isfinite(iaf.log_prob(tf.identity(z_iaf), bijector_kwargs={"context": ctx})))


def test_sampling_compiles_with_xla_and_matches_eager():
    stack, eps, context = make_stack("af", "nlsq", C)
    eps32, ctx32 = eps.astype(np.float32), tf.cast(context, tf.float32)
    fn = tf.function(lambda e, c: stack.bijector.forward_and_log_det(e, context=c), jit_compile=True)
    z, fldj = fn(eps32, ctx32)
    z_eager, fldj_eager = stack.bijector.forward_and_log_det(eps32, context=ctx32)
    np.testing.assert_allclose(z.numpy(), z_eager.numpy(), rtol=1e-4, atol=1e-4)
    np.testing.assert_allclose(fldj.numpy(), fldj_eager.numpy(), rtol=1e-4, atol=1e-4)


def test_config_and_argument_errors():
    stack = HiddenFlowStack(4, kind="scf", num_layers=2, hidden_units=(8,), scalar_map="affine",
                            context_size=3, name="s")
    clone = HiddenFlowStack.from_config(stack.get_config())
    assert (clone.kind, clone.num_layers, clone.scalar_map, clone.context_size) == ("scf", 2,
                                                                                   "affine", 3)
    assert isinstance(stack.conditioners[0], ContextMLP)
    assert isinstance(HiddenFlowStack(4).conditioners[0], MADE)
    with pytest.raises(ValueError, match="kind"):
        HiddenFlowStack(4, kind="iaf")
    with pytest.raises(ValueError, match="event_size >= 2"):
        HiddenFlowStack(1, kind="scf")
    with pytest.raises(ValueError, match="unknown scalar map"):
        HiddenFlowStack(4, scalar_map="spline")
    with pytest.raises(ValueError, match="at least as many units"):
        HiddenFlowStack(50, hidden_units=(40,)).build()
