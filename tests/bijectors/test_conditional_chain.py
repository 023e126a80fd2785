"""ConditionalChain: member order, shared context, fused and TFP-API paths agree."""

import numpy as np
import tensorflow as tf
import tensorflow_probability as tfp

from flow_testing import log_det_from_autodiff, randomize_weights
from tf_latentflow.bijectors import AutoregressiveFlow, ConditionalChain, Coupling
from tf_latentflow.layers import MADE, ContextMLP

tfb = tfp.bijectors
D, C, B = 4, 3, 6


def build_chain():
    made = MADE(5, hidden_units=(12,))
    made.build((None, D), (None, C))
    net = ContextMLP(2, num_outputs=2, hidden_units=(12,))
    net.build((None, 2), (None, C))
    for i, layer in enumerate((made, net)):
        randomize_weights(layer, seed=i, scale=0.25)
    af = AutoregressiveFlow(made, scalar_map="nlsq")
    coupling = Coupling(net, num_masked=2, scalar_map="affine")
    reverse = tfb.Permute(list(range(D))[::-1])
    return ConditionalChain([af, reverse, tfb.Invert(coupling)]), (af, reverse, coupling)


def test_chain_order_and_log_dets():
    chain, (af, reverse, coupling) = build_chain()
    rng = np.random.default_rng(0)
    eps = rng.normal(size=(B, D))
    context = tf.constant(rng.normal(size=(B, C)))
    # TFP Chain order: forward applies the last member first.
    expected = af.forward(reverse.forward(coupling.inverse(eps, context=context)), context=context)
    z, fldj = chain.forward_and_log_det(eps, context=context)
    assert np.all(np.isfinite(z.numpy())) and np.all(np.isfinite(fldj.numpy()))
    np.testing.assert_allclose(z.numpy(), expected.numpy(), rtol=1e-10)
    np.testing.assert_allclose(chain.forward(eps, context=context).numpy(), z.numpy(), rtol=1e-10)
    logdet, _ = log_det_from_autodiff(lambda e: chain.forward(e, context=context), eps)
    np.testing.assert_allclose(fldj.numpy(), logdet, rtol=1e-6, atol=1e-6)
    z = tf.identity(z)
    eps_back, ildj = chain.inverse_and_log_det(z, context=context)
    np.testing.assert_allclose(eps_back.numpy(), eps, rtol=1e-9, atol=1e-9)
    np.testing.assert_allclose(ildj.numpy(), -logdet, rtol=1e-6, atol=1e-6)
    np.testing.assert_allclose(
        chain.inverse_log_det_jacobian(z, event_ndims=1, context=context).numpy(), -logdet,
        rtol=1e-6, atol=1e-6)
    np.testing.assert_allclose(
        chain.forward_log_det_jacobian(eps, event_ndims=1, context=context).numpy(), logdet,
        rtol=1e-6, atol=1e-6)


def test_context_changes_the_output():
    chain, _ = build_chain()
    eps = np.zeros((2, D))
    c1, c2 = np.zeros((2, C)), np.ones((2, C))
    assert not np.allclose(chain.forward(eps, context=c1).numpy(),
                           chain.forward(eps, context=c2).numpy())
