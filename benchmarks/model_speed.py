"""Speed of the full models at the paper's sizes on this CPU (JSB-sized batches).

    python benchmarks/model_speed.py [--models af-af af-scf iaf-scf af-only lstm] [--out ...]

For each model (LatentFlowVAE with the named prior, or the LSTM baseline; H=50,
LSTMs 500, 5 flow layers, MADE 2x100, 88 notes, T-feature depth 200): the
median time of one training step (B=5, T=64: ELBO with 1 sample, gradients,
clipping, Adam) traced by tf.function, without and with XLA for the loss and
gradients (the trainer's --jit-compile), and the time to sample one sequence of
length 64 (graph mode and XLA).
"""

import argparse
import json
import os
import pathlib
import platform
import keras
import tensorflow as tf
from timing import median_seconds

from tf_latentflow import evaluation
from tf_latentflow.baseline import LSTMBaseline
from tf_latentflow.model import LatentFlowVAE


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", nargs="+", default=["af-af", "af-scf", "iaf-scf", "af-only", "lstm"])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--out", default=str(pathlib.Path(__file__).parent / "results" / "model_speed.json"))
    args = parser.parse_args()

    rows = {}
    x = tf.cast(tf.random.uniform([5, 64, 88]) < 0.05, tf.float32)
    lengths = tf.fill([5], 64)
    for name in args.models:
        keras.utils.set_random_seed(0)
        if name == "lstm":
            model = LSTMBaseline(max_length=200, num_notes=88)
            loss_fn = lambda: model.nll(x, lengths, training=True)  # noqa: E731
        else:
            model = LatentFlowVAE(max_length=200, num_notes=88, prior=name,
                                  prior_kwargs=None if name == "af-only" else {"lstm_dropout": 0.2})
            loss_fn = lambda: model.elbo(x, lengths, num_samples=1, kl_weight=0.5, seed=1,  # noqa: E731
                                         training=True)["loss"]
        optimizer = keras.optimizers.Adam(1e-3, global_clipnorm=0.25)
        optimizer.build(model.trainable_variables)

        def loss_and_gradients():
            with tf.GradientTape() as tape:
                loss = tf.reduce_mean(evaluation.per_step(loss_fn(), lengths))
            return loss, tape.gradient(loss, model.trainable_variables)

        def make_train_step(jit_compile):
            # As the trainer's --jit-compile: XLA for the loss and gradients, not the update.
            compute = tf.function(loss_and_gradients, jit_compile=True) if jit_compile else loss_and_gradients

            @tf.function
            def train_step():
                loss, grads = compute()
                optimizer.apply_gradients(zip(grads, model.trainable_variables))
                return loss
            return train_step

        row = {}
        for key, jit_compile in (("train_step_B5_T64_s", False), ("train_step_B5_T64_xla_s", True)):
            step = make_train_step(jit_compile)
            row[key] = median_seconds(lambda: float(step()), args.repeats)
        one = tf.constant([64])
        graph = tf.function(lambda: model.sample(1, lengths=one, seed=3))
        row["sample_T64_graph_s"] = median_seconds(lambda: tf.nest.map_structure(
            lambda t: t.numpy(), graph()), args.repeats)
        try:
            xla = tf.function(lambda: model.sample(1, lengths=one, seed=3), jit_compile=True)
            row["sample_T64_xla_s"] = median_seconds(lambda: tf.nest.map_structure(
                lambda t: t.numpy(), xla()), args.repeats)
        except Exception as error:  # report, do not hide, an XLA limitation
            row["sample_T64_xla_error"] = f"{type(error).__name__}: {str(error).splitlines()[0][:200]}"
        rows[name] = row
        print(name, json.dumps({k: (round(v, 4) if isinstance(v, float) else v) for k, v in row.items()}),
              flush=True)

    result = {"benchmark": "model_speed",
              "config": {"batch": 5, "steps": 64, "notes": 88, "latent_size": 50, "lstm_units": 500,
                         "flow_layers": 5, "made": [100, 100], "t_feature_depth": 200},
              "machine": {"platform": platform.platform(), "cpus": os.cpu_count(),
                          "tensorflow": tf.__version__},
              "models": rows}
    pathlib.Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    pathlib.Path(args.out).write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    main()
