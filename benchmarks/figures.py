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

This file is the command line only: the computations are plain functions returning
NumPy arrays in `figure_data.py` (tested in `tests/test_figures.py`), the drawing is
`plotting.py`, the only module that imports matplotlib (the `plots` extra). A new
figure is one `figureN(args)` function here plus an entry in `SUBCOMMANDS`; `all` runs
every entry with its default settings.
"""

import argparse
import json
import pathlib
import time

import numpy as np

from figure_data import (FIGURE5A_MAPS, FIGURE5B_LAYERS, density_on_grid, figure6_panels, fit_mixture_flows,
                         flow_log_prob_fn, generation_series, generation_title, load_generation,
                         load_test_pieces, real_rolls, run_caption, run_label, sample_rolls, save_rolls,
                         saved_roll_rows)
from plotting import plot_figure5a, plot_figure5b, plot_figure5c, plot_figure6, plot_figure7, plot_samples

DEFAULT_OUT_DIR = pathlib.Path(__file__).resolve().parents[1] / "docs" / "figures"
DEFAULT_GENERATION_JSON = pathlib.Path(__file__).resolve().parent / "results" / "generation.json"
DEFAULT_SOURCE_DIR = pathlib.Path(__file__).resolve().parents[2] / "shared" / "data"  # ../shared/data


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
