"""Coupling (SCF) layer: both directions one pass, log-dets, pass-through part."""

import numpy as np
import pytest
import tensorflow as tf

from flow_testing import log_det_from_autodiff, randomize_weights
from tf_latentflow.bijectors import Coupling, scalar_map_class
from tf_latentflow.layers import ContextMLP

D, C, B = 5, 3, 8


def make_coupling(scalar_map, with_context, num_masked, seed=0, dtype=np.float64):
    net = ContextMLP(scalar_map_class(scalar_map).num_unconstrained_params,
                     num_outputs=D - abs(num_masked), hidden_units=(16,))
    net.build((None, abs(num_masked)), (None, C) if with_context else None)
    randomize_weights(net, seed=seed, scale=0.5)
    rng = np.random.default_rng(seed + 1)
    x = rng.normal(size=(B, D)).astype(dtype)
    context = tf.constant(rng.normal(size=(B, C)).astype(dtype)) if with_context else None
    return Coupling(net, num_masked=num_masked, scalar_map=scalar_map), x, context


@pytest.mark.parametrize("scalar_map", ["nlsq", "affine"])
@pytest.mark.parametrize("with_context", [False, True])
@pytest.mark.parametrize("num_masked", [2, -2])
def test_round_trip_and_log_dets(scalar_map, with_context, num_masked):
    bij, eps, context = make_coupling(scalar_map, with_context, num_masked)
    z, fldj = bij.forward_and_log_det(eps, context=context)
    np.testing.assert_allclose(bij.inverse(tf.identity(z), context=context).numpy(), eps,
                               rtol=1e-9, atol=1e-9)
    logdet, jac = log_det_from_autodiff(lambda e: bij.forward(e, context=context), eps)
    np.testing.assert_allclose(fldj.numpy(), logdet, rtol=1e-8, atol=1e-8)
    np.testing.assert_allclose(
        bij.inverse_log_det_jacobian(tf.identity(z), event_ndims=1, context=context).numpy(),
        -logdet, rtol=1e-8, atol=1e-8)
    kept = slice(0, 2) if num_masked > 0 else slice(D - 2, D)
    moved = slice(2, D) if num_masked > 0 else slice(0, D - 2)
    # The pass-through part is copied; the moved part depends on the kept part.
    np.testing.assert_array_equal(z.numpy()[:, kept], eps[:, kept])
    assert np.all(np.abs(jac[:, moved, kept]).sum(0) > 0)
    # Within the moved part the map is elementwise: a diagonal block.
    block = jac[:, moved, moved]
    off_diag = block - np.einsum("bii->bi", block)[:, :, None] * np.eye(D - 2)
    assert np.all(off_diag == 0)


def test_float32_round_trip_and_zero_num_masked_error():
    bij, eps, context = make_coupling("nlsq", True, 2, dtype=np.float32)
    z = bij.forward(eps, context=context)
    np.testing.assert_allclose(bij.inverse(tf.identity(z), context=context).numpy(), eps,
                               rtol=1e-4, atol=1e-4)
    with pytest.raises(ValueError, match="num_masked"):
        Coupling(lambda x: x, num_masked=0)
