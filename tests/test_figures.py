"""benchmarks/figures.py: the curves and densities behind the figure-5 pictures are right.

Only the computing functions are tested (no matplotlib): derivatives against finite
differences, densities against their integral and against samples.
"""

import math

import keras
import numpy as np
import pytest
import scipy.integrate
import scipy.stats

from tf_latentflow.bijectors import NLSQ_C_BOUND
from tf_latentflow.layers import HiddenFlowStack
from tf_latentflow.toy_densities import FourGaussians, fit_flow_density
from benchmark_testing import load_benchmark


@pytest.fixture
def figures(monkeypatch):
    return load_benchmark(monkeypatch, "figures")


@pytest.fixture
def figure_data(monkeypatch):
    return load_benchmark(monkeypatch, "figure_data")


def test_nlsq_curves_are_the_formula_and_its_finite_difference(figure_data):
    x = np.linspace(-3.0, 3.0, 601)
    h = 1e-5
    for label, p in figure_data.FIGURE5A_MAPS:
        y, slope = figure_data.nlsq_curves(p, x)
        expected = p["a"] + p["b"] * x + p["c"] / (1.0 + (p["d"] * x + p["g"]) ** 2)
        np.testing.assert_allclose(y, expected, rtol=1e-12, atol=1e-12, err_msg=label)
        central = (figure_data.nlsq_curves(p, x + h)[0] - figure_data.nlsq_curves(p, x - h)[0]) / (2 * h)
        np.testing.assert_allclose(slope, central, rtol=1e-6, atol=1e-8, err_msg=label)
        assert np.all(slope > 0), label  # every map drawn is invertible
    # the figure's point: one map sits near the bound, its slope almost 0 somewhere
    near = [p for _, p in figure_data.FIGURE5A_MAPS
            if abs(p["c"]) * p["d"] / p["b"] > 0.98 * NLSQ_C_BOUND]
    assert near
    assert figure_data.nlsq_curves(near[0], x)[1].min() < 0.05 * near[0]["b"]


def test_stack_density_integrates_to_one_matches_samples_and_is_multimodal(figure_data):
    layers = figure_data.FIGURE5B_LAYERS
    x = np.linspace(-8.0, 8.0, 3201)
    density, samples = figure_data.stack_density_1d(layers, x, num_samples=50000, seed=3)
    assert np.trapezoid(density, x) == pytest.approx(1.0, abs=1e-2)

    # Bin probabilities from the drawn density (trapezoid inside each bin) against the
    # sample histogram: total variation within sampling noise (~0.01 for 40 bins, 5e4 samples).
    edges = np.linspace(-4.0, 4.0, 41)
    fine = np.linspace(-4.0, 4.0, 40 * 50 + 1)
    fine_density, _ = figure_data.stack_density_1d(layers, fine, num_samples=1)
    bin_prob = np.diff(scipy.integrate.cumulative_trapezoid(fine_density, fine, initial=0.0)[::50])
    counts, _ = np.histogram(samples, bins=edges)
    tv = 0.5 * np.abs(counts / len(samples) - bin_prob).sum()
    tv += 0.5 * abs(np.mean((samples < -4.0) | (samples > 4.0)) - (1.0 - bin_prob.sum()))
    assert tv < 0.03, tv

    # the samples are N(0, 1) pushed through the forward maps: their ranks follow the base
    eps = np.random.default_rng(4).normal(size=20000)
    pushed = figure_data.nlsq_stack_maps(layers, eps)[-1]
    assert scipy.stats.ks_2samp(pushed, samples).pvalue > 1e-3

    peaks = (density[1:-1] > density[:-2]) & (density[1:-1] > density[2:])
    assert peaks.sum() == 3, x[1:-1][peaks]


def test_grid_density_of_an_af_stack_integrates_to_one(figure_data):
    keras.utils.set_random_seed(0)
    stack = HiddenFlowStack(2, kind="af", num_layers=2, hidden_units=(16, 16), scalar_map="nlsq")
    stack.build()
    # Random weights instead of the initialisation, which starts at the identity map; at
    # this scale the maps bend (without the log-det the grid mass would be ~1.5).
    rng = np.random.default_rng(0)
    for variable in stack.trainable_variables:
        variable.assign(rng.normal(scale=0.3, size=variable.shape).astype(np.float32))
    log_prob = figure_data.flow_log_prob_fn(stack.bijector)
    xs, ys, density = figure_data.density_on_grid(log_prob, (-12.0, 12.0), (-12.0, 12.0), 241)
    assert density.shape == (241, 241)
    assert abs(density.max() - 1 / (2 * math.pi)) > 0.01  # not the base density itself
    assert np.trapezoid(np.trapezoid(density, xs, axis=1), ys) == pytest.approx(1.0, abs=1e-2)
    # density[i, j] is the point (xs[j], ys[i])
    point = np.array([[xs[30], ys[200]]])
    assert density[200, 30] == pytest.approx(math.exp(log_prob(point)[0]), rel=1e-6)

    # the density drawn is the one fit_flow_density fits (steps=0: the held-out NLL only)
    test = FourGaussians().sample(1000, seed=1)
    result = fit_flow_density(stack.bijector, stack.trainable_variables, test, test, steps=0,
                              jit_compile=False)
    assert float(-log_prob(test).mean()) == pytest.approx(result.test_nll, rel=1e-5)


def test_true_density_on_grid_integrates_to_one(figure_data):
    xs, ys, density = figure_data.density_on_grid(FourGaussians().log_prob, (-4, 4), (-4, 4), 201,
                                              chunk=7000)  # several chunks, the last one short
    assert np.trapezoid(np.trapezoid(density, xs, axis=1), ys) == pytest.approx(1.0, abs=1e-3)


def test_parser_has_figure5_and_all(figures):
    args = figures.build_parser().parse_args(["figure5", "--steps", "10", "--out-dir", "x"])
    assert (args.command, args.steps, args.out_dir) == ("figure5", 10, "x")
    assert figures.build_parser().parse_args(["all"]).command == "all"
    assert set(figures.SUBCOMMANDS) >= {"figure5"}
