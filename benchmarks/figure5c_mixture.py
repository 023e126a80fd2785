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
import time

import keras
import numpy as np

from tf_latentflow.layers import HiddenFlowStack
from tf_latentflow.toy_densities import FourGaussians, fit_flow_density


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=3000)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--learning-rate", type=float, default=5e-3)
    parser.add_argument("--out", default=str(pathlib.Path(__file__).parent / "results" / "figure5c.json"))
    args = parser.parse_args()

    target = FourGaussians()
    train, test = target.sample(20000, seed=100), target.sample(20000, seed=101)
    runs = []
    for seed in args.seeds:
        row = {"seed": seed, "true_density_nll": float(-target.log_prob(test).mean())}
        for scalar_map in ("nlsq", "affine"):
            keras.utils.set_random_seed(seed)
            stack = HiddenFlowStack(2, kind="af", num_layers=5, hidden_units=(100, 100),
                                    scalar_map=scalar_map)
            stack.build()
            start = time.perf_counter()
            result = fit_flow_density(stack.bijector, stack.trainable_variables, train, test,
                                      steps=args.steps, learning_rate=args.learning_rate, seed=seed)
            row[scalar_map] = {"test_nll": result.test_nll, "train_nll_last_batch": result.train_nll,
                               "seconds": time.perf_counter() - start}
        print(f"seed {seed}: held-out NLL nlsq {row['nlsq']['test_nll']:.3f}  "
              f"affine {row['affine']['test_nll']:.3f}  true density {row['true_density_nll']:.3f}",
              flush=True)
        runs.append(row)
    summary = {
        "benchmark": "figure5c_mixture",
        "config": {"steps": args.steps, "batch_size": 512, "learning_rate": args.learning_rate,
                   "layers": 5, "made_hidden": [100, 100], "train_points": len(train),
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
