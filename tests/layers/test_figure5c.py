"""Paper figure 5c: NLSq lets a 5-layer AF fit a four-mode 2-D density; affine maps cannot.

The longer run that prints both NLLs is benchmarks/figure5c_mixture.py.
"""

import keras
import numpy as np
import pytest

from tf_latentflow.layers import HiddenFlowStack
from tf_latentflow.toy_densities import FourGaussians, fit_flow_density


@pytest.mark.slow  # the default suite's 10-minute budget
def test_nlsq_af_fits_four_gaussians_better_than_affine_af():
    target = FourGaussians()
    train, test = target.sample(4096, seed=0), target.sample(4096, seed=1)
    best = -target.log_prob(test).mean()  # the true density's NLL, about 1.8 nats
    results = {}
    for scalar_map in ("nlsq", "affine"):
        keras.utils.set_random_seed(0)
        stack = HiddenFlowStack(2, kind="af", num_layers=5, hidden_units=(64, 64),
                                scalar_map=scalar_map)
        stack.build()
        results[scalar_map] = fit_flow_density(stack.bijector, stack.trainable_variables, train,
                                               test, steps=400, learning_rate=5e-3, seed=0)
    nlsq, affine = results["nlsq"].test_nll, results["affine"].test_nll
    print(f"held-out NLL (nats): nlsq {nlsq:.3f}, affine {affine:.3f}, true density {best:.3f}")
    assert np.isfinite(nlsq) and np.isfinite(affine)
    assert nlsq < affine - 0.15
    assert nlsq < best + 0.2
    assert affine > best + 0.2
