"""The paper's figures as PNG files (Ziegler & Rush 2019), from this package's bijectors and flows.

    python benchmarks/figures.py figure5 [--out-dir docs/figures] [--steps 3000] [--seed 0]
    python benchmarks/figures.py figure7 [--out-dir docs/figures]
                                         [--generation-json benchmarks/results/generation.json]
    python benchmarks/figures.py figure6 --run-dir RUN [--af-only-run-dir RUN2] [--steps 4]
                                         [--out-dir docs/figures]
    python benchmarks/figures.py samples [--run-dir RUN ...] [--num 3] [--length 64]
                                         [--rolls-dir docs/figures/samples] [--data-dir ../shared/data]
    python benchmarks/figures.py all [--out-dir docs/figures]   (figure5 and figure7 only)

figure5 writes three pictures of the NLSq scalar map (paper figure 5):

  figure5a.png  hand-set NLSq maps f(eps) = a + b*eps + c / (1 + (d*eps + g)^2) and
                their derivatives (`NLSq.forward` and exp of its
                `forward_log_det_jacobian`), one of them with c at 0.99 of the
                invertibility bound: nearly a step, still strictly increasing.
  figure5b.png  three NLSq layers (`tfb.Chain`) over a standard normal: the composed
                map, and the density of the `TransformedDistribution` (its `log_prob`,
                i.e. the cubic inverse) with a histogram of its samples (the forward map).
  figure5c.png  the four-Gaussian 2-D mixture (`toy_densities.FourGaussians`): the true
                density and the densities of a 5-layer AF with NLSq maps and with affine
                maps fitted by `toy_densities.fit_flow_density` (the recipe of
                `benchmarks/figure5c_mixture.py`), held-out NLL in each title.

With the default 3000 steps per fit, figure5 took 1.5 minutes with one TensorFlow
thread on the 2-core machine (2026-12-02): NLL 1.844 (NLSq), 1.972 (affine), 1.825
(true density).

figure7 draws the sampling time against the sequence length (paper figure 7) from the
JSON of `benchmarks/generation.py` (run that first, on an idle machine): ms per sequence
against T on log-log axes, one line per model, one panel per batch size (1 and 32 by
default); lengths the benchmark skipped (its time budget) are listed in the legend.

figure6 draws the conditional prior densities p(z_t | z_<t, T) (paper figure 6) of a
trained run with latent size 2 (an AF-in-time prior: `af-af`, `af-scf`, or `af-only`
alongside with --af-only-run-dir) on a 2-D grid, for --steps consecutive steps t of one
sequence z drawn from the prior, the sampled z_t marked on each panel. The IAF-in-time
prior (`iaf-scf`) is refused: its density at step t needs the serial inverse over z_<t
for every grid point.

samples draws piano rolls (time x pitch, 0/1) of --num samples of each trained music run
at length --length and saves them under --rolls-dir as `<model>.json` (the active notes of
each step, with the run's model, seed and test NLL; a later run of the same model replaces
its file), then draws every saved model's rolls, in the order AF/AF, AF/SCF, IAF/SCF,
AF-only, LSTM, next to the first --num JSB Chorales test pieces (cropped to --length), to
docs/figures/samples.png. The saved rolls are committed, so the picture can gather runs
trained at different times (and on different machines); without --run-dir it is redrawn
from them alone.

figure6 and samples read trained runs (`RunDirectory(path).load()`), so `all` skips them.

The computations are plain functions returning NumPy arrays (tested in
`tests/test_figures.py`); matplotlib (the `plots` extra) is imported by the plotting
functions only. A new figure is one `figureN(args)` function plus an entry in
`SUBCOMMANDS`; `all` runs every entry with its default settings.
"""

import argparse
import json
import math
import pathlib
import time

import keras
import numpy as np
import tensorflow as tf
import tensorflow_probability as tfp

from tf_latentflow.bijectors import NLSQ_C_BOUND, NLSq
from tf_latentflow.layers import HiddenFlowStack
from tf_latentflow.toy_densities import FourGaussians, fit_flow_density

tfb = tfp.bijectors
tfd = tfp.distributions

DEFAULT_OUT_DIR = pathlib.Path(__file__).resolve().parents[1] / "docs" / "figures"
DEFAULT_GENERATION_JSON = pathlib.Path(__file__).resolve().parent / "results" / "generation.json"
DEFAULT_SOURCE_DIR = pathlib.Path(__file__).resolve().parents[2] / "shared" / "data"  # ../shared/data
DPI = 100


def _bound_fraction(b, d, fraction):
    """c at `fraction` of the invertibility bound (8 sqrt(3) / 9) * b / d."""
    return fraction * NLSQ_C_BOUND * b / d


# Figure 5a: (label, parameters). The last one sits at 0.99 of the bound: its slope
# falls to 0.01 * b, so the map looks like a step and is still a bijection.
FIGURE5A_MAPS = (
    ("c = +0.30 bound, d = 1", dict(a=0.0, b=1.0, c=_bound_fraction(1.0, 1.0, 0.3), d=1.0, g=0.0)),
    ("c = -0.80 bound, d = 1", dict(a=0.5, b=0.8, c=_bound_fraction(0.8, 1.0, -0.8), d=1.0, g=1.0)),
    ("c = +0.99 bound, d = 3", dict(a=-0.5, b=1.0, c=_bound_fraction(1.0, 3.0, 0.99), d=3.0, g=-1.0)),
)

# Figure 5b: x = f3(f2(f1(eps))), eps ~ N(0, 1). Found by a 2000-step maximum-likelihood
# fit (Adam 0.03, batch 512) to 0.3 N(-2, 0.4^2) + 0.4 N(0, 0.4^2) + 0.3 N(2, 0.4^2), then
# rounded to 3 decimals; |c| d / b is 1.04, 1.01 and 0.93 against the bound 1.54.
FIGURE5B_LAYERS = (
    dict(a=-0.007, b=1.103, c=0.478, d=2.411, g=0.848),
    dict(a=0.563, b=1.253, c=1.161, d=1.092, g=-1.120),
    dict(a=-0.015, b=0.827, c=-1.770, d=0.433, g=-0.143),
)


# ---------------------------------------------------------------------------
# Computations (NumPy in, NumPy out; no matplotlib).
# ---------------------------------------------------------------------------

def _nlsq(params, dtype=tf.float64):
    return NLSq(**{k: tf.constant(v, dtype) for k, v in params.items()})


def nlsq_curves(params, x):
    """`(f(x), f'(x))` of `NLSq(**params)`, as float64 arrays of x's shape.

    f is the bijector's `forward`, f' the exp of its `forward_log_det_jacobian`.
    """
    nlsq = _nlsq(params)
    x = tf.constant(np.asarray(x, np.float64))
    y = nlsq.forward(x)
    slope = tf.exp(nlsq.forward_log_det_jacobian(x, event_ndims=0))
    return y.numpy(), slope.numpy()


def nlsq_stack_distribution(layers):
    """`TransformedDistribution` of N(0, 1) through NLSq layers, `layers[0]` applied first."""
    chain = tfb.Chain([_nlsq(p) for p in reversed(layers)])  # Chain applies its last one first
    return tfd.TransformedDistribution(tfd.Normal(np.float64(0.0), np.float64(1.0)), chain)


def nlsq_stack_maps(layers, eps):
    """The outputs after each layer, `[len(layers), *eps.shape]`: f1(eps), f2(f1(eps)), ..."""
    out, value = [], tf.constant(np.asarray(eps, np.float64))
    for params in layers:
        value = _nlsq(params).forward(value)
        out.append(value.numpy())
    return np.stack(out)


def stack_density_1d(layers, x, num_samples=20000, seed=0):
    """Density of the NLSq stack on the grid `x` (exp of `log_prob`) and `num_samples` samples."""
    dist = nlsq_stack_distribution(layers)
    density = np.exp(dist.log_prob(np.asarray(x, np.float64)).numpy())
    samples = dist.sample(num_samples, seed=tf.constant([seed, 0], tf.int32)).numpy()
    return density, samples


def flow_log_prob_fn(bijector, event_size=2):
    """log p(x) of `x = bijector.forward(eps)`, eps ~ N(0, I): the density `fit_flow_density` fits.

    Returns a function `[N, event_size]` array -> `[N]` float64 array.
    """
    dist = tfd.TransformedDistribution(
        tfd.Sample(tfd.Normal(tf.constant(0.0), 1.0), event_size), bijector)
    log_prob = tf.function(dist.log_prob)
    return lambda x: log_prob(tf.constant(np.asarray(x, np.float32))).numpy().astype(np.float64)


def density_on_grid(log_prob_fn, xlim, ylim, n, chunk=20000):
    """`(xs, ys, density)` with `density[i, j] = exp(log_prob_fn([xs[j], ys[i]]))`, n x n points.

    `log_prob_fn` maps an `[N, 2]` array to `[N]` log densities; it is called on
    chunks of at most `chunk` points.
    """
    xs, ys = np.linspace(*xlim, n), np.linspace(*ylim, n)
    grid_x, grid_y = np.meshgrid(xs, ys)
    points = np.stack([grid_x.ravel(), grid_y.ravel()], axis=-1)
    log_p = np.concatenate([np.asarray(log_prob_fn(points[i:i + chunk]), np.float64)
                            for i in range(0, len(points), chunk)])
    return xs, ys, np.exp(log_p).reshape(n, n)


def fit_mixture_flows(steps, seed=0, learning_rate=5e-3, scalar_maps=("nlsq", "affine")):
    """`benchmarks/figure5c_mixture.py`'s fit: a 5-layer AF (MADE 2 x 100) per scalar map.

    Returns `(target, test, {scalar_map: (stack, FitResult, seconds)})`.
    """
    target = FourGaussians()
    train, test = target.sample(20000, seed=100), target.sample(20000, seed=101)
    fits = {}
    for scalar_map in scalar_maps:
        keras.utils.set_random_seed(seed)
        stack = HiddenFlowStack(2, kind="af", num_layers=5, hidden_units=(100, 100),
                                scalar_map=scalar_map)
        stack.build()
        start = time.perf_counter()
        result = fit_flow_density(stack.bijector, stack.trainable_variables, train, test,
                                  steps=steps, learning_rate=learning_rate, seed=seed)
        fits[scalar_map] = (stack, result, time.perf_counter() - start)
    return target, test, fits


def load_generation(path):
    """The JSON written by `benchmarks/generation.py`."""
    path = pathlib.Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path} does not exist: run `python benchmarks/generation.py` first "
                                f"(on an idle machine), or pass --generation-json")
    result = json.loads(path.read_text())
    if result.get("benchmark") != "generation":
        raise ValueError(f"{path} is not a benchmarks/generation.py result")
    return result


def generation_series(result):
    """{batch size: {model: series}} of a generation result, in the order of its config.

    A series is {"lengths", "ms_per_sequence" (median), "min_ms_per_sequence"} (NumPy
    arrays over the measured lengths, increasing) and "skipped" (the lengths the
    benchmark skipped, a list).
    """
    out = {}
    for batch_size in result["config"]["batch_sizes"]:
        out[int(batch_size)] = {}
        for model, row in result["models"].items():
            entries = sorted(row["by_batch"].get(str(batch_size), {}).values(), key=lambda e: e["length"])
            measured = [e for e in entries if e["status"] == "measured"]
            out[int(batch_size)][model] = {
                "lengths": np.array([e["length"] for e in measured], np.int64),
                "ms_per_sequence": np.array([e["median_ms_per_sequence"] for e in measured], np.float64),
                "min_ms_per_sequence": np.array([e["min_ms_per_sequence"] for e in measured], np.float64),
                "skipped": [e["length"] for e in entries if e["status"] == "skipped"]}
    return out


def generation_title(result):
    config, machine = result["config"], result["machine"]
    threads = machine.get("threads") or {}
    names = {"TF_NUM_INTRAOP_THREADS": "intra-op", "TF_NUM_INTEROP_THREADS": "inter-op"}
    thread_note = ", ".join(f"{names.get(k, k)} threads {v}" for k, v in threads.items()
                            if v is not None) or "TensorFlow's default threads"
    sampler = "XLA sampler" if config.get("xla_sampler") else "graph sampler"
    return (f"Sampling time, untrained paper-size music models, exported SavedModel "
            f"(serving_default, {sampler}, median of {config['repeats']} calls)\n"
            f"{machine.get('cpus')} CPUs, {thread_note}, TensorFlow {machine.get('tensorflow')}, "
            f"{machine.get('platform')}")


def run_label(config):
    """"<model> on <dataset>" from a run's config.json."""
    return f"{config.get('model', '?')} on {config.get('dataset', '?')}"


def check_conditional_prior(prior):
    """Raise unless `prior` is a latent-size-2 prior with cheap conditionals p(z_t | z_<t, T)."""
    if getattr(prior, "time", None) == "iaf":
        raise ValueError("figure 6 needs p(z_t | z_<t, T) at many grid points z_t; the IAF-in-time "
                         "prior (iaf-scf) only has it through the serial inverse over z_<=t for every "
                         "point, so it is not drawn: use an af-af, af-scf or af-only run")
    if getattr(prior, "time", None) not in ("af", "none"):
        raise ValueError(f"not a SequenceFlowPrior with an AF or no flow in time: {prior!r}")
    if prior.latent_size != 2:
        raise ValueError(f"figure 6 draws 2-D densities; this prior has latent size {prior.latent_size} "
                         f"(train with --latent-size 2)")


def conditional_log_density(prior, z_prefix, t, length, points, chunk=4096):
    """log p(z_t = p | z_<t = z_prefix[:t], T = length) for each row p of `points` `[N, 2]`: `[N]` float64.

    Each point becomes one copy of the sequence (z_<t from `z_prefix`, z_t = p) scored by
    `prior.log_prob`, whose column t is read. For an AF in time (and for no flow in time)
    column t is log N(eps_t; 0, I) + log|det d eps_t / d z_t| with eps_t = f^{-1}(z_t; c_t)
    and c_t = LSTM(z_<t, T) run over the sequence shifted by one step (c_t = T-features
    only for "none"): it depends on z_<=t and T, and on no later step. So the copies stop
    at step t (padded time dimension t + 1) while `lengths` stays T, which the T-features
    read; tests/test_figures_runs.py checks that later steps change nothing and that
    this equals column t of the full-length sequence. For an IAF in time it would need
    the serial inverse per point (`check_conditional_prior` refuses it).
    """
    check_conditional_prior(prior)
    t, length = int(t), int(length)
    if not 0 <= t < length:
        raise ValueError(f"need 0 <= t < length; got t={t}, length={length}")
    prefix = np.asarray(z_prefix, np.float32)[:t].reshape(t, prior.latent_size)
    points = np.asarray(points, np.float32).reshape(-1, prior.latent_size)
    out = []
    for start in range(0, len(points), chunk):
        grid = points[start:start + chunk]
        z = np.concatenate([np.broadcast_to(prefix, (len(grid), t, prior.latent_size)),
                            grid[:, np.newaxis]], axis=1)
        lengths = tf.fill([len(grid)], length)
        out.append(prior.log_prob(tf.constant(z), lengths)[:, t].numpy().astype(np.float64))
    return np.concatenate(out)


def conditional_density_grid(prior, z_prefix, t, length, xlim, ylim, n, chunk=4096):
    """`(xs, ys, density)`: p(z_t | z_<t, T) on an n x n grid (`density[i, j]` at `(xs[j], ys[i])`).

    `z_prefix` `[>= t, 2]` holds z_<t (rows from t on are ignored); `length` is T.
    """
    return density_on_grid(lambda points: conditional_log_density(prior, z_prefix, t, length, points,
                                                                  chunk=chunk),
                           xlim, ylim, n, chunk=chunk)


def prior_sequence(prior, length, seed=0):
    """One sequence z `[length, H]` drawn from the prior at T = length (float64)."""
    z = prior.sample(tf.constant([int(length)], tf.int32), seed=int(seed))
    return z[0].numpy().astype(np.float64)


def step_windows(prior, length, steps, first_step=0, num=256, seed=1, coverage=0.99, margin=0.15):
    """`[(xlim, ylim), ...]` per step t = first_step .. first_step + steps - 1: the central
    `coverage` range of each coordinate of z_t over `num` sequences drawn from the prior at
    T = length, widened by `margin` of its width on each side (a trained prior's latents are
    not on the unit scale: the JSB runs' reach |z| ~ 8)."""
    z = prior.sample(tf.fill([int(num)], int(length)), seed=int(seed)).numpy()
    tail = 100 * (1 - coverage) / 2
    windows = []
    for t in range(first_step, first_step + steps):
        lims = []
        for d in range(2):
            lo, hi = np.percentile(z[:, t, d], [tail, 100 - tail])
            pad = margin * max(hi - lo, 1e-3)
            lims.append((float(lo - pad), float(hi + pad)))
        windows.append(tuple(lims))
    return windows


def figure6_panels(prior, length, steps, lim, n, seed=0, first_step=0):
    """`(z, [(t, xs, ys, density), ...])` for t = first_step .. first_step + steps - 1, with
    z `[length, 2]` the prior sample whose prefix conditions each panel. Each grid spans
    [-lim, lim]^2, or with lim None the window of `step_windows` (grown to hold the drawn
    z_t)."""
    check_conditional_prior(prior)
    if first_step + steps > length:
        raise ValueError(f"steps {first_step}..{first_step + steps - 1} do not fit in T = {length}")
    z = prior_sequence(prior, length, seed=seed)
    if lim is None:
        windows = [tuple((min(lo, z[t, d] - 0.5), max(hi, z[t, d] + 0.5)) for d, (lo, hi) in enumerate(w))
                   for t, w in zip(range(first_step, first_step + steps),
                                   step_windows(prior, length, steps, first_step))]
    else:
        windows = [((-lim, lim), (-lim, lim))] * steps
    panels = [(t, *conditional_density_grid(prior, z, t, length, xlim, ylim, n))
              for t, (xlim, ylim) in zip(range(first_step, first_step + steps), windows)]
    return z, panels


def sample_rolls(model, num, length, seed=0):
    """`num` piano rolls sampled from a trained music model at T = length: uint8
    `[num, length, 88]` in {0, 1}."""
    x, _ = model.sample(int(num), lengths=int(length), seed=int(seed))
    x = np.asarray(x.numpy())
    if x.ndim != 3:
        raise ValueError(f"not a music model: its samples have shape {x.shape}, not [N, T, notes]")
    return x.astype(np.uint8)


ROLL_ORDER = ("af-af", "af-scf", "iaf-scf", "af-only", "lstm")


def run_caption(config, results=None):
    """'<model> (seed k, test <nll>)' from a run's config.json and results.json (if any)."""
    parts = [f"seed {config.get('seed', '?')}"]
    if results and "test" in results:
        parts.append(f"test {results['test']['nll']:.2f}")
    return f"{config.get('model', '?')} ({', '.join(parts)})"


def save_rolls(path, rolls, config, caption, seed):
    """Write `rolls` (uint8 [N, T, 88]) as JSON: per roll, per step, the indices of the
    notes that sound (0 = the lowest of the 88 keys)."""
    path = pathlib.Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    record = {"model": config.get("model"), "dataset": config.get("dataset"),
              "run_seed": config.get("seed"), "caption": caption, "sample_seed": int(seed),
              "length": int(rolls.shape[1]), "notes": int(rolls.shape[2]),
              "rolls": [[np.flatnonzero(step).tolist() for step in roll] for roll in rolls]}
    path.write_text(json.dumps(record, separators=(",", ":")) + "\n")
    return path


def load_rolls(path):
    """(caption, uint8 [N, T, notes]) from a file of `save_rolls`."""
    record = json.loads(pathlib.Path(path).read_text())
    rolls = np.zeros((len(record["rolls"]), record["length"], record["notes"]), np.uint8)
    for n, roll in enumerate(record["rolls"]):
        for t, notes in enumerate(roll):
            rolls[n, t, notes] = 1
    return record["caption"], rolls


def saved_roll_rows(rolls_dir):
    """[(caption, [roll, ...]), ...] of every file in `rolls_dir`, models in ROLL_ORDER
    (others after them, by name)."""
    files = sorted(pathlib.Path(rolls_dir).glob("*.json"))
    rank = {name: k for k, name in enumerate(ROLL_ORDER)}
    files.sort(key=lambda f: (rank.get(f.stem, len(rank)), f.stem))
    return [(caption, list(rolls)) for caption, rolls in map(load_rolls, files)]


def load_test_pieces(name="jsb_chorales", data_dir="~/tensorflow_datasets", source_dir=None):
    """The test split of a prepared music dataset (`tf_latentflow.data.prepare`), a tf.data.Dataset
    of {"piano_roll" uint8 [T, 88], "length", "index"}."""
    from tf_latentflow import data

    builder = data.prepare(name, data_dir=pathlib.Path(data_dir).expanduser(), source_dir=source_dir)
    return builder.as_dataset(split="test")


def real_rolls(examples, num, length):
    """The first `num` piano rolls of `examples` (dicts with "piano_roll" and "length"), each
    cropped to at most `length` steps: a list of uint8 `[min(T, length), 88]` arrays."""
    out = []
    for example in examples:
        if len(out) == num:
            break
        steps = min(int(example["length"]), int(length))
        out.append(np.asarray(example["piano_roll"])[:steps].astype(np.uint8))
    return out



# ---------------------------------------------------------------------------
# Plotting (matplotlib imported here only).
# ---------------------------------------------------------------------------

def _pyplot():
    try:
        import matplotlib
    except ImportError as error:
        raise ImportError('the figures need matplotlib: pip install -e ".[plots]"') from error
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _save(fig, path):
    path = pathlib.Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=DPI)
    _pyplot().close(fig)
    return path


def plot_figure5a(maps, x, path):
    plt = _pyplot()
    fig, (ax_f, ax_d) = plt.subplots(1, 2, figsize=(9, 3.6), constrained_layout=True)
    for label, params in maps:
        y, slope = nlsq_curves(params, x)
        (line,) = ax_f.plot(x, y, label=label)
        ax_d.plot(x, slope, color=line.get_color())
    ax_f.set(title="NLSq maps f(eps)", xlabel="eps", ylabel="f(eps)")
    ax_d.set(title="derivatives f'(eps) = exp(forward log-det)", xlabel="eps", ylabel="f'(eps)")
    ax_d.axhline(0.0, color="0.6", lw=0.8)
    ax_f.legend(fontsize=8, title="c in units of the bound (8 sqrt(3) / 9) b / d", title_fontsize=8)
    return _save(fig, path)


def plot_figure5b(layers, path, num_samples=20000, seed=0):
    plt = _pyplot()
    eps = np.linspace(-3.5, 3.5, 701)
    x = np.linspace(-4.0, 4.0, 801)
    maps = nlsq_stack_maps(layers, eps)
    density, samples = stack_density_1d(layers, x, num_samples=num_samples, seed=seed)
    fig, (ax_m, ax_p) = plt.subplots(1, 2, figsize=(9, 3.6), constrained_layout=True)
    ax_m.plot(eps, eps, color="0.6", lw=0.8, ls="--", label="identity")
    for k, values in enumerate(maps, start=1):
        ax_m.plot(eps, values, label=f"after layer {k}")
    ax_m.set(title=f"{len(layers)} NLSq layers composed", xlabel="eps", ylabel="x", ylim=(-4, 4))
    ax_m.legend(fontsize=8)
    ax_p.hist(samples, bins=np.linspace(-4, 4, 81), density=True, color="C0", alpha=0.35,
              label=f"{num_samples} samples")
    ax_p.plot(x, density, color="C0", label="exp(log_prob)")
    ax_p.plot(x, np.exp(-0.5 * x ** 2) / math.sqrt(2 * math.pi), color="0.5", ls="--",
              label="base N(0, 1)")
    ax_p.set(title="density of x = f3(f2(f1(eps))), eps ~ N(0, 1)", xlabel="x", ylabel="density")
    ax_p.legend(fontsize=8)
    return _save(fig, path)


def plot_figure5c(panels, extent, path, suptitle):
    """`panels`: list of (title, density n x n), the true density first; `extent`: (x0, x1, y0, y1).

    All panels share the colour scale of the first, so that a fit's spike cannot wash
    out the others (values above it saturate).
    """
    plt = _pyplot()
    fig, axes = plt.subplots(1, len(panels), figsize=(4 * len(panels), 4.2), constrained_layout=True)
    vmax = float(panels[0][1].max())
    for ax, (title, density) in zip(axes, panels):
        ax.imshow(density, origin="lower", extent=extent, cmap="viridis", vmin=0.0, vmax=vmax,
                  interpolation="nearest")
        ax.set_title(title, fontsize=10)
        ax.set_xticks([-3, 0, 3])
        ax.set_yticks([-3, 0, 3])
    fig.suptitle(suptitle, fontsize=10)
    return _save(fig, path)


MODEL_LABELS = {"iaf-scf": "IAF / SCF", "af-scf": "AF / SCF", "af-af": "AF / AF", "lstm": "LSTM"}


def plot_figure7(series, path, suptitle):
    """`series`: `generation_series(...)`; one log-log panel per batch size."""
    plt = _pyplot()
    fig, axes = plt.subplots(1, len(series), figsize=(5.5 * len(series), 4.6), squeeze=False,
                             constrained_layout=True)
    for ax, (batch_size, models) in zip(axes[0], series.items()):
        for k, (model, line) in enumerate(models.items()):
            label = MODEL_LABELS.get(model, model)
            if line["skipped"]:
                label += f" (skipped T = {', '.join(map(str, line['skipped']))})"
            ax.plot(line["lengths"], line["ms_per_sequence"], marker="o", color=f"C{k}", label=label)
        ax.set_xscale("log")
        ax.set_yscale("log")
        ticks = sorted({int(t) for line in models.values() for t in line["lengths"]})
        ax.set_xticks(ticks, [str(t) for t in ticks])
        ax.xaxis.set_minor_locator(plt.NullLocator())
        ax.set(title=f"batch size {batch_size}", xlabel="sequence length T",
               ylabel="ms per sequence")
        ax.grid(True, which="both", color="0.9", lw=0.6)
        ax.legend(fontsize=8)
    fig.suptitle(suptitle, fontsize=9)
    return _save(fig, path)


def plot_figure6(rows, path, suptitle):
    """`rows`: list of (label, z `[T, 2]`, panels from `figure6_panels`); one row per run, one
    panel per step t, each with its own colour scale and the sampled z_t marked."""
    plt = _pyplot()
    steps = max(len(panels) for _, _, panels in rows)
    fig, axes = plt.subplots(len(rows), steps, figsize=(2.8 * steps, 2.9 * len(rows) + 0.5),
                             squeeze=False, constrained_layout=True)
    for r, (label, z, panels) in enumerate(rows):
        for c, (t, xs, ys, density) in enumerate(panels):
            ax = axes[r, c]
            ax.imshow(density, origin="lower", extent=(xs[0], xs[-1], ys[0], ys[-1]), cmap="viridis",
                      interpolation="nearest")
            ax.plot(z[t, 0], z[t, 1], marker="x", color="red", ms=6, mew=1.5)
            ax.set_xlim(xs[0], xs[-1])
            ax.set_ylim(ys[0], ys[-1])
            ax.set_title(f"{label}\np(z_{t} | z_<{t}, T)" if c == 0 else f"p(z_{t} | z_<{t}, T)",
                         fontsize=9)
            ax.tick_params(labelsize=7)
        for c in range(len(panels), steps):
            axes[r, c].axis("off")
    fig.suptitle(suptitle, fontsize=9)
    return _save(fig, path)


def plot_samples(rows, path, suptitle):
    """`rows`: list of (label, [roll uint8 [T, 88], ...]); one row per source, time across,
    pitch up (the notes any roll uses, with a margin)."""
    plt = _pyplot()
    used = np.flatnonzero(np.any([roll.any(axis=0) for _, rolls in rows for roll in rolls], axis=0))
    low, high = (max(int(used[0]) - 2, 0), min(int(used[-1]) + 3, 88)) if len(used) else (0, 88)
    cols = max(len(rolls) for _, rolls in rows)
    fig, axes = plt.subplots(len(rows), cols, figsize=(3.2 * cols, 2.0 * len(rows) + 0.4),
                             squeeze=False, constrained_layout=True)
    for r, (label, rolls) in enumerate(rows):
        for c in range(cols):
            ax = axes[r, c]
            if c >= len(rolls):
                ax.axis("off")
                continue
            roll = rolls[c][:, low:high]
            ax.imshow(roll.T, origin="lower", aspect="auto", cmap="Greys", vmin=0, vmax=1,
                      interpolation="nearest", extent=(0, len(roll), low + 21 - 0.5, high + 21 - 0.5))
            ax.set_title(f"{label} #{c + 1}", fontsize=8)
            ax.tick_params(labelsize=7)
            if c == 0:
                ax.set_ylabel("MIDI note", fontsize=8)
            if r == len(rows) - 1:
                ax.set_xlabel("time step", fontsize=8)
    fig.suptitle(suptitle, fontsize=9)
    return _save(fig, path)


# ---------------------------------------------------------------------------
# Subcommands.
# ---------------------------------------------------------------------------

def add_figure5_arguments(parser):
    parser.add_argument("--steps", type=int, default=3000,
                        help="fitting steps of each 2-D flow in figure 5c (default 3000)")
    parser.add_argument("--seed", type=int, default=0, help="initialisation and batch seed (5c)")
    parser.add_argument("--learning-rate", type=float, default=5e-3, help="Adam (5c)")
    parser.add_argument("--grid-size", type=int, default=200,
                        help="points per axis of the 5c density grid")


def figure5(args):
    """Figure 5a, 5b and 5c: NLSq maps, a 1-D NLSq stack, the 2-D four-Gaussian fit."""
    out_dir = pathlib.Path(args.out_dir)
    written = {}
    written["figure5a"] = plot_figure5a(FIGURE5A_MAPS, np.linspace(-3.0, 3.0, 601),
                                        out_dir / "figure5a.png")
    written["figure5b"] = plot_figure5b(FIGURE5B_LAYERS, out_dir / "figure5b.png", seed=args.seed)

    target, test, fits = fit_mixture_flows(args.steps, seed=args.seed,
                                           learning_rate=args.learning_rate)
    lim = (-3.5, 3.5)
    _, _, true_density = density_on_grid(target.log_prob, lim, lim, args.grid_size)
    true_nll = float(-target.log_prob(test).mean())
    panels = [(f"true density\nheld-out NLL {true_nll:.3f}", true_density)]
    nlls = {"true": true_nll}
    for scalar_map, name in (("nlsq", "NLSq"), ("affine", "affine")):
        stack, result, seconds = fits[scalar_map]
        _, _, density = density_on_grid(flow_log_prob_fn(stack.bijector), lim, lim, args.grid_size)
        panels.append((f"AF with {name} maps\nheld-out NLL {result.test_nll:.3f}", density))
        nlls[scalar_map] = result.test_nll
        print(f"figure5c {scalar_map}: held-out NLL {result.test_nll:.3f} nats "
              f"({args.steps} steps, {seconds:.0f} s)", flush=True)
    suptitle = (f"Four Gaussians: 5-layer AF (MADE 2x100) fitted for {args.steps} steps "
                f"(Adam {args.learning_rate:g}, batch 512, seed {args.seed}); "
                f"NLL in nats on 20000 held-out points")
    written["figure5c"] = plot_figure5c(panels, (*lim, *lim), out_dir / "figure5c.png", suptitle)
    for name, path in written.items():
        print(f"{name}: {path} ({path.stat().st_size / 1024:.0f} KB)")
    return {"files": {k: str(v) for k, v in written.items()}, "nll": nlls}


def add_figure7_arguments(parser):
    parser.add_argument("--generation-json", default=str(DEFAULT_GENERATION_JSON),
                        help="the result of benchmarks/generation.py")


def figure7(args):
    """Figure 7: sampling time against sequence length (from benchmarks/generation.py)."""
    result = load_generation(args.generation_json)
    series = generation_series(result)
    path = plot_figure7(series, pathlib.Path(args.out_dir) / "figure7.png", generation_title(result))
    print(f"figure7: {path} ({path.stat().st_size / 1024:.0f} KB)")
    return {"files": {"figure7": str(path)}}


def add_figure6_arguments(parser):
    parser.add_argument("--run-dir", required=True,
                        help="a trained run with latent size 2 and an AF in time (af-af, af-scf)")
    parser.add_argument("--af-only-run-dir", help="an af-only run (latent size 2), drawn alongside")
    parser.add_argument("--steps", type=int, default=4, help="consecutive steps t to draw (default 4)")
    parser.add_argument("--first-step", type=int, default=1, help="the first step t (default 1)")
    parser.add_argument("--length", type=int, default=20, help="the sequence length T (default 20)")
    parser.add_argument("--lim", type=float, default=None,
                        help="each grid spans [-lim, lim]^2 (default: per step, the central 99%% of "
                             "z_t over 256 prior samples)")
    parser.add_argument("--grid-size", type=int, default=120, help="points per grid axis")
    parser.add_argument("--seed", type=int, default=0, help="seed of the prior sample z")
    parser.add_argument("--checkpoint", choices=("best", "latest"), default="best")


def figure6(args):
    """Figure 6: conditional prior densities p(z_t | z_<t, T) of trained latent-size-2 runs."""
    from tf_latentflow.runs import RunDirectory

    rows, labels, datasets = [], [], []
    for run_dir in filter(None, (args.run_dir, args.af_only_run_dir)):
        run = RunDirectory(run_dir).load(args.checkpoint)
        prior = getattr(run.model, "prior", None)
        if prior is None:
            raise ValueError(f"{run_dir}: {run.config.get('model')} has no latent prior")
        start = time.perf_counter()
        z, panels = figure6_panels(prior, args.length, args.steps, args.lim, args.grid_size,
                                   seed=args.seed, first_step=args.first_step)
        label = run_label(run.config)
        print(f"figure6 {label}: {len(panels)} grids of {args.grid_size}^2 points "
              f"({time.perf_counter() - start:.0f} s)", flush=True)
        rows.append((label, z, panels))
        labels.append(str(run.config.get("model")))
        datasets.append(str(run.config.get("dataset")))
    suptitle = (f"Conditional prior densities p(z_t | z_<t, T), latent size 2, of {' and '.join(labels)} "
                f"trained on {' / '.join(sorted(set(datasets)))}\n(the paper's figure 6 used PTB); "
                f"z_<t drawn from each prior (seed {args.seed}, T = {args.length}), x: the drawn z_t")
    path = plot_figure6(rows, pathlib.Path(args.out_dir) / "figure6.png", suptitle)
    print(f"figure6: {path} ({path.stat().st_size / 1024:.0f} KB)")
    return {"files": {"figure6": str(path)}}


def add_samples_arguments(parser):
    parser.add_argument("--run-dir", action="append", default=[],
                        help="a trained music run (repeat for several); its rolls are saved under "
                             "--rolls-dir and replace that model's earlier ones")
    parser.add_argument("--rolls-dir", default=str(DEFAULT_OUT_DIR / "samples"),
                        help="the saved rolls that the picture shows (default docs/figures/samples)")
    parser.add_argument("--num", type=int, default=3, help="samples per run and real pieces (default 3)")
    parser.add_argument("--length", type=int, default=64, help="sample length T (default 64)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--data-dir", default=str(DEFAULT_SOURCE_DIR),
                        help="raw benchmark files (the source_dir of tf_latentflow.data.prepare)")
    parser.add_argument("--prepared-dir", default="~/tensorflow_datasets",
                        help="where TFDS keeps prepared datasets")
    parser.add_argument("--checkpoint", choices=("best", "latest"), default="best")


def samples(args):
    """Piano rolls sampled from trained music runs next to real JSB Chorales test pieces."""
    from tf_latentflow.runs import RunDirectory

    for run_dir in args.run_dir:
        run = RunDirectory(run_dir).load(args.checkpoint)
        start = time.perf_counter()
        rolls = sample_rolls(run.model, args.num, args.length, seed=args.seed)
        results_path = pathlib.Path(run_dir) / "results.json"
        results = json.loads(results_path.read_text()) if results_path.exists() else None
        caption = run_caption(run.config, results)
        saved = save_rolls(pathlib.Path(args.rolls_dir) / f"{run.config.get('model', 'run')}.json",
                           rolls, run.config, caption, args.seed)
        print(f"samples {caption}: {args.num} x T = {args.length} ({time.perf_counter() - start:.0f} s), "
              f"saved to {saved}", flush=True)
    rows = saved_roll_rows(args.rolls_dir)
    if not rows:
        raise SystemExit(f"no saved rolls in {args.rolls_dir}: give --run-dir")
    test = load_test_pieces("jsb_chorales", data_dir=args.prepared_dir, source_dir=args.data_dir)
    rows.append(("JSB test piece", real_rolls(test.take(args.num).as_numpy_iterator(), args.num,
                                              args.length)))
    suptitle = (f"Piano rolls (time x pitch): samples of trained JSB models at T = {args.length} and the "
                f"first {args.num} JSB Chorales test pieces (cropped to {args.length} steps)")
    path = plot_samples(rows, pathlib.Path(args.out_dir) / "samples.png", suptitle)
    print(f"samples: {path} ({path.stat().st_size / 1024:.0f} KB)")
    return {"files": {"samples": str(path)}}


# name -> (add its arguments to a parser, run it with the parsed arguments)
SUBCOMMANDS = {
    "figure5": (add_figure5_arguments, figure5),
    "figure7": (add_figure7_arguments, figure7),
    "figure6": (add_figure6_arguments, figure6),
    "samples": (add_samples_arguments, samples),
}
# Subcommands that read trained runs (required arguments): `all` skips them.
NEEDS_RUNS = ("figure6", "samples")


def build_parser():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    commands = parser.add_subparsers(dest="command", required=True)
    for name, (add_arguments, run) in SUBCOMMANDS.items():
        sub = commands.add_parser(name, help=(run.__doc__ or f"paper {name}").splitlines()[0])
        sub.add_argument("--out-dir", default=str(DEFAULT_OUT_DIR))
        add_arguments(sub)
    defaults = [name for name in SUBCOMMANDS if name not in NEEDS_RUNS]
    sub = commands.add_parser("all", help=f"every figure with its defaults: {', '.join(defaults)}")
    sub.add_argument("--out-dir", default=str(DEFAULT_OUT_DIR))
    return parser


def main(argv=None):
    args = build_parser().parse_args(argv)
    if args.command == "all":
        return {name: main([name, "--out-dir", args.out_dir]) for name in SUBCOMMANDS
                if name not in NEEDS_RUNS}
    return SUBCOMMANDS[args.command][1](args)


if __name__ == "__main__":
    main()
