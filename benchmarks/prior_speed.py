"""Speed of the sequence priors at the paper's sizes on this CPU.

    python benchmarks/prior_speed.py [--priors af-af af-scf iaf-scf af-only] [--out ...]

For each prior (H=50, LSTM 2x500, 5 flow layers, MADE 2x100, T-feature depth
200 as for JSB): the time of one gradient step of -log p(z) on a batch B=5,
T=64, and the time to sample one sequence of length 64 (and 100), with the
sampler traced by tf.function and, separately, compiled by XLA. Median of
several repeats after a warm-up call.
"""

import argparse
import json
import os
import pathlib
import platform
import keras
import tensorflow as tf
from timing import median_seconds

from tf_latentflow.priors import make_prior


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--priors", nargs="+", default=["af-af", "af-scf", "iaf-scf", "af-only"])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--out", default=str(pathlib.Path(__file__).parent / "results" / "prior_speed.json"))
    args = parser.parse_args()

    rows = {}
    for name in args.priors:
        keras.utils.set_random_seed(0)
        prior = make_prior(name, latent_size=50, max_length=200)
        prior.build()
        optimizer = keras.optimizers.Adam(1e-3)
        lengths = tf.fill([5], 64)
        z = tf.random.normal([5, 64, 50])

        @tf.function
        def train_step():
            with tf.GradientTape() as tape:
                loss = -tf.reduce_mean(tf.reduce_sum(prior.log_prob(z, lengths), -1))
            grads = tape.gradient(loss, prior.trainable_variables)
            optimizer.apply_gradients(zip(grads, prior.trainable_variables))
            return loss

        row = {"train_step_B5_T64_s": median_seconds(train_step, args.repeats)}
        for steps in (64, 100):
            one = tf.constant([steps])
            graph = tf.function(lambda n=one: prior.sample(n, seed=1))
            xla = tf.function(lambda n=one: prior.sample(n, seed=1), jit_compile=True)
            row[f"sample_T{steps}_graph_s"] = median_seconds(lambda: graph().numpy(), args.repeats)
            row[f"sample_T{steps}_xla_s"] = median_seconds(lambda: xla().numpy(), args.repeats)
        rows[name] = row
        print(name, json.dumps({k: round(v, 4) for k, v in row.items()}), flush=True)

    result = {"benchmark": "prior_speed",
              "config": {"latent_size": 50, "lstm": "2x500", "flow_layers": 5, "made": [100, 100],
                         "t_feature_depth": 200, "batch": 5, "steps": 64},
              "machine": {"platform": platform.platform(), "cpus": os.cpu_count(),
                          "tensorflow": tf.__version__},
              "priors": rows}
    pathlib.Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    pathlib.Path(args.out).write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    main()
