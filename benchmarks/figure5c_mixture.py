"""Paper figure 5c, longer run: a 5-layer AF with NLSq vs affine maps on four 2-D Gaussians.

    python benchmarks/figure5c_mixture.py [--steps 3000] [--seeds 0 1 2] [--out benchmarks/results/figure5c.json]

Prints the held-out NLL (nats) of both flows and of the true density, per seed,
and writes them as JSON.
"""

import argparse
import json
import os
import pathlib
import platform

import numpy as np

from figure_data import fit_mixture_flows


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=3000)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--learning-rate", type=float, default=5e-3)
    parser.add_argument("--out", default=str(pathlib.Path(__file__).parent / "results" / "figure5c.json"))
    args = parser.parse_args()

    runs = []
    for seed in args.seeds:
        target, test, fits = fit_mixture_flows(args.steps, seed=seed, learning_rate=args.learning_rate)
        row = {"seed": seed, "true_density_nll": float(-target.log_prob(test).mean())}
        for scalar_map, (_, result, seconds) in fits.items():
            row[scalar_map] = {"test_nll": result.test_nll, "train_nll_last_batch": result.train_nll,
                               "seconds": seconds}
        print(f"seed {seed}: held-out NLL nlsq {row['nlsq']['test_nll']:.3f}  "
              f"affine {row['affine']['test_nll']:.3f}  true density {row['true_density_nll']:.3f}",
              flush=True)
        runs.append(row)
    summary = {
        "benchmark": "figure5c_mixture",
        "config": {"steps": args.steps, "batch_size": 512, "learning_rate": args.learning_rate,
                   "layers": 5, "made_hidden": [100, 100], "train_points": 20000,
                   "test_points": len(test)},
        "machine": {"platform": platform.platform(), "cpus": os.cpu_count()},
        "runs": runs,
        "mean_test_nll": {k: float(np.mean([r[k]["test_nll"] for r in runs])) for k in ("nlsq", "affine")},
    }
    print(json.dumps(summary["mean_test_nll"]))
    pathlib.Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    pathlib.Path(args.out).write_text(json.dumps(summary, indent=2) + "\n")


if __name__ == "__main__":
    main()
