"""The computations behind the paper's figures (`figures.py`): NumPy in, NumPy out, no
matplotlib. NLSq maps and stacks (figure 5a, 5b), the four-Gaussian fits (5c), the
generation benchmark's series (7), a trained prior's conditional densities (6) and piano
rolls of trained runs and of test pieces (samples)."""

import json
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
