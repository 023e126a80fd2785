"""benchmarks/figures.py figure6 and samples: the computations behind the pictures of trained runs.

A tiny af-af music run with latent size 2 is written by `export_testing.make_trained_run`:
the conditional prior densities integrate to one and are causal, the IAF prior is refused,
and the sampled and real piano rolls are 0/1 arrays of the requested shape. No matplotlib.
"""

import importlib.util
import pathlib

import numpy as np
import pytest
import tensorflow as tf

from export_testing import make_trained_run
from tf_latentflow.priors import SequenceFlowPrior
from tf_latentflow.runs import RunDirectory

BENCHMARKS = pathlib.Path(__file__).resolve().parents[1] / "benchmarks"
LENGTH = 6  # T of the density queries (the run's lengths are 3..8)


def _load(name):
    spec = importlib.util.spec_from_file_location(f"{name}_runs", BENCHMARKS / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def figure_data():
    return _load("figure_data")


@pytest.fixture
def figures(monkeypatch):
    monkeypatch.syspath_prepend(str(BENCHMARKS))  # figures.py imports figure_data and plotting
    return _load("figures")


def make_latent2_run(run_dir, model="af-af", steps=2, seed=0):
    """`export_testing.make_trained_run` with latent size 2: config.json and checkpoints/best."""
    make_trained_run(run_dir, model, steps=steps, seed=seed, latent_size=2)
    return RunDirectory(run_dir)


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    return make_latent2_run(tmp_path_factory.mktemp("figures_runs") / "run").load()


def test_loaded_run_is_a_latent2_af_prior(run, figure_data):
    assert run.config["model"] == "af-af" and run.config["dataset"] == "jsb_chorales"
    assert run.model.prior.time == "af" and run.model.prior.latent_size == 2
    figure_data.check_conditional_prior(run.model.prior)


@pytest.mark.parametrize("t", [0, 2])
def test_conditional_density_integrates_to_one(run, figure_data, t):
    prior = run.model.prior
    z = figure_data.prior_sequence(prior, LENGTH, seed=1)
    xs, ys, density = figure_data.conditional_density_grid(prior, z, t, LENGTH, (-9, 9), (-9, 9), 181)
    assert density.shape == (181, 181) and np.all(np.isfinite(density)) and np.all(density >= 0)
    mass = np.trapezoid(np.trapezoid(density, xs, axis=1), ys)
    assert mass == pytest.approx(1.0, abs=2e-2)


def test_conditional_density_is_column_t_and_ignores_later_steps(run, figure_data):
    prior, t = run.model.prior, 2
    z = figure_data.prior_sequence(prior, LENGTH, seed=2)
    points = np.random.default_rng(0).normal(size=(7, 2)) * 2.0
    got = figure_data.conditional_log_density(prior, z, t, LENGTH, points)
    # Column t of full-length copies (z_t = point), with two different sets of later steps.
    later = np.random.default_rng(1).normal(size=(2, 7, LENGTH - t - 1, 2)) * 3.0
    columns = []
    for rest in later:
        full = np.concatenate([np.broadcast_to(z[:t], (7, t, 2)), points[:, None], rest], axis=1)
        log_p = prior.log_prob(tf.constant(full, tf.float32), tf.fill([7], LENGTH))
        columns.append(log_p[:, t].numpy())
    np.testing.assert_allclose(columns[0], columns[1], rtol=0, atol=1e-5)  # causal in time
    np.testing.assert_allclose(got, columns[0], rtol=0, atol=1e-4)  # truncation at t + 1 is exact
    # ... and the prefix does matter (an AF in time, not independent steps).
    other = figure_data.conditional_log_density(prior, z + 1.0, t, LENGTH, points)
    assert np.max(np.abs(other - got)) > 1e-6


def test_iaf_and_wrong_latent_size_are_refused(figure_data):
    iaf = SequenceFlowPrior(latent_size=2, max_length=8, time="iaf", hidden="scf", lstm_units=4,
                            lstm_layers=1, num_flow_layers=1, flow_hidden_units=(4,))
    with pytest.raises(ValueError, match="IAF"):
        figure_data.conditional_density_grid(iaf, np.zeros((LENGTH, 2)), 1, LENGTH, (-1, 1), (-1, 1), 3)
    wide = SequenceFlowPrior(latent_size=3, max_length=8, time="af", lstm_units=4, lstm_layers=1,
                             num_flow_layers=1, flow_hidden_units=(4,))
    with pytest.raises(ValueError, match="latent size 3"):
        figure_data.check_conditional_prior(wide)


def test_sampled_and_real_rolls_are_binary_of_the_requested_shape(run, figure_data):
    rolls = figure_data.sample_rolls(run.model, 3, 7, seed=0)
    assert rolls.shape == (3, 7, 88) and rolls.dtype == np.uint8
    assert set(np.unique(rolls)) <= {0, 1}
    np.testing.assert_array_equal(rolls, figure_data.sample_rolls(run.model, 3, 7, seed=0))

    rng = np.random.default_rng(0)
    examples = [{"piano_roll": (rng.random((n, 88)) < 0.1).astype(np.uint8), "length": np.int32(n)}
                for n in (5, 12, 9, 4)]
    real = figure_data.real_rolls(iter(examples), 3, 8)
    assert [r.shape for r in real] == [(5, 88), (8, 88), (8, 88)]
    assert all(r.dtype == np.uint8 and set(np.unique(r)) <= {0, 1} for r in real)
    np.testing.assert_array_equal(real[1], examples[1]["piano_roll"][:8])


def test_run_subcommands_parse_and_all_skips_them(figures):
    parser = figures.build_parser()
    args = parser.parse_args(["samples", "--run-dir", "a", "--run-dir", "b", "--num", "2"])
    assert args.run_dir == ["a", "b"] and args.num == 2 and args.length == 64
    assert args.rolls_dir.endswith("samples") and parser.parse_args(["samples"]).run_dir == []
    args = parser.parse_args(["figure6", "--run-dir", "a", "--af-only-run-dir", "b"])
    assert args.steps == 4 and args.af_only_run_dir == "b"
    assert set(figures.NEEDS_RUNS) <= set(figures.SUBCOMMANDS)


def test_step_windows_hold_the_prior_mass_and_the_panels_use_them(run, figure_data):
    """The automatic grid of figure 6: per step, the central 99% of z_t over prior samples
    (widened 15% each side) holds nearly every fresh sample from the prior at that step, and
    figure6_panels spans exactly that window (grown to hold the drawn z_t) when lim is None."""
    prior = run.model.prior
    windows = figure_data.step_windows(prior, LENGTH, 3, first_step=1, num=400, seed=3)
    fresh = prior.sample(tf.fill([400], LENGTH), seed=11).numpy()
    for t, ((x0, x1), (y0, y1)) in zip(range(1, 4), windows):
        assert x0 < x1 and y0 < y1
        inside = ((fresh[:, t, 0] >= x0) & (fresh[:, t, 0] <= x1) &
                  (fresh[:, t, 1] >= y0) & (fresh[:, t, 1] <= y1))
        assert inside.mean() >= 0.95
    z, panels = figure_data.figure6_panels(prior, LENGTH, 2, None, 5, seed=0, first_step=1)
    for t, xs, ys, density in panels:
        (x0, x1), (y0, y1) = figure_data.step_windows(prior, LENGTH, 2, first_step=1)[t - 1]
        assert xs[0] <= min(x0, z[t, 0]) + 1e-9 and xs[-1] >= max(x1, z[t, 0]) - 1e-9
        assert ys[0] <= min(y0, z[t, 1]) + 1e-9 and ys[-1] >= max(y1, z[t, 1]) - 1e-9
    _, fixed = figure_data.figure6_panels(prior, LENGTH, 1, 2.0, 5, seed=0, first_step=1)
    assert fixed[0][1][0] == -2.0 and fixed[0][1][-1] == 2.0


def test_saved_rolls_round_trip_and_gather_in_model_order(figure_data, tmp_path):
    rng = np.random.default_rng(1)
    made = {}
    for model, seed in (("lstm", 1), ("iaf-scf", 0), ("af-af", 0)):
        rolls = (rng.random((2, 6, 88)) < 0.2).astype(np.uint8)
        caption = figure_data.run_caption({"model": model, "seed": seed}, {"test": {"nll": 6.5 + seed}})
        figure_data.save_rolls(tmp_path / f"{model}.json", rolls, {"model": model, "seed": seed}, caption, 0)
        made[model] = rolls
    assert figure_data.run_caption({"model": "af-af", "seed": 0}, {"test": {"nll": 6.514}}) == "af-af (seed 0, test 6.51)"
    assert figure_data.run_caption({"model": "lstm", "seed": 2}) == "lstm (seed 2)"

    rows = figure_data.saved_roll_rows(tmp_path)
    assert [caption.split()[0] for caption, _ in rows] == ["af-af", "iaf-scf", "lstm"]
    for caption, rolls in rows:
        np.testing.assert_array_equal(np.stack(rolls), made[caption.split()[0]])

    # A later run of the same model replaces its rolls.
    newer = np.zeros((2, 4, 88), np.uint8)
    newer[0, 1, [3, 40]] = 1
    figure_data.save_rolls(tmp_path / "lstm.json", newer, {"model": "lstm", "seed": 2}, "lstm (seed 2)", 0)
    caption, rolls = figure_data.load_rolls(tmp_path / "lstm.json")
    assert caption == "lstm (seed 2)" and rolls.shape == (2, 4, 88)
    np.testing.assert_array_equal(rolls, newer)
    assert len(figure_data.saved_roll_rows(tmp_path)) == 3
