"""A 2-D toy density and a density-fitting loop for flows (paper figure 5c).

The paper's figure 5 shows that an AF with NLSq scalar maps fits a
multimodal 2-D density that the same AF with affine maps cannot. This module
holds the target (a mixture of four well-separated isotropic Gaussians) and a
small maximum-likelihood training loop, used by the tests and by
`benchmarks/figure5c_mixture.py`.
"""

import dataclasses
import math

import keras
import numpy as np
import tensorflow as tf

__all__ = ["FourGaussians", "FitResult", "fit_flow_density"]


@dataclasses.dataclass(frozen=True)
class FourGaussians:
    """Equal-weight mixture of N((+-offset, +-offset), scale^2 I)."""

    offset: float = 2.0
    scale: float = 0.3

    def centers(self):
        o = self.offset
        return np.array([[-o, -o], [-o, o], [o, -o], [o, o]], dtype=np.float64)

    def sample(self, n, seed):
        """`n` points, float32 `[n, 2]`, reproducible from `seed`."""
        rng = np.random.default_rng(seed)
        pick = rng.integers(0, 4, size=n)
        return (self.centers()[pick] + self.scale * rng.normal(size=(n, 2))).astype(np.float32)

    def log_prob(self, x):
        """Exact log density (NumPy), for reporting the best attainable NLL."""
        x = np.asarray(x, np.float64)
        sq = ((x[:, None, :] - self.centers()[None]) ** 2).sum(-1) / self.scale ** 2
        comp = -0.5 * sq - math.log(2 * math.pi * self.scale ** 2) - math.log(4.0)
        top = comp.max(-1)
        return top + np.log(np.exp(comp - top[:, None]).sum(-1))


@dataclasses.dataclass(frozen=True)
class FitResult:
    train_nll: float
    test_nll: float
    steps: int


def fit_flow_density(bijector, variables, train, test, steps, batch_size=512, learning_rate=5e-3,
                     seed=0, jit_compile=True):
    """Maximum likelihood for `x = bijector.forward(eps)`, eps ~ N(0, I).

    log p(x) = log N(bijector.inverse(x); 0, I) + ildj(x); the density uses the
    bijector's `inverse_and_log_det` (one pass for AF stacks).

    Returns the mean NLL in nats on the last training batch and on `test`.
    """
    optimizer = keras.optimizers.Adam(learning_rate)
    variables = list(variables)
    half_log_2pi = 0.5 * math.log(2 * math.pi)

    def nll(x):
        eps, ildj = bijector.inverse_and_log_det(x)
        return -tf.reduce_mean(tf.reduce_sum(-0.5 * tf.square(eps) - half_log_2pi, -1) + ildj)

    @tf.function(jit_compile=jit_compile)
    def step(x):
        with tf.GradientTape() as tape:
            loss = nll(x)
        optimizer.apply_gradients(zip(tape.gradient(loss, variables), variables))
        return loss

    rng = np.random.default_rng(seed)
    loss = float("nan")
    for _ in range(steps):
        loss = step(tf.constant(train[rng.integers(0, len(train), size=batch_size)]))
    return FitResult(train_nll=float(loss), test_nll=float(tf.function(nll)(tf.constant(test))),
                     steps=steps)
