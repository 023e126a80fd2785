"""PTB characters at the paper's scale: training-step and NLL times, projected to an epoch and
to the paper's protocol on this machine.

    python benchmarks/ptb_full_scale.py [--models af-af lstm] [--shapes 3] [--repeats 5]
                                        [--nll-samples 50] [--small] [--data-dir ../shared/data]
                                        [--out benchmarks/results/ptb_full_scale.json]

Each model is the trainer's own PTB run (`training.Trainer` with
`default_config("ptb_char", model)`, in a temporary directory): the paper's sizes (H = 50,
embedding and LSTMs 500, 5 flow layers of 2 x 100; IAF/SCF 3), its batch (15; the LSTM
baseline 32), 10 ELBO samples for the flows, XLA, the whole training split. Nothing is
trained to convergence: the script times the trainer's training step on real training
batches of a few padded lengths and projects from there.

For each of the --shapes most frequent padded lengths L of the epoch-0 training batches
(the trainer's own batching: 4 length buckets, the XLA grid) it takes real batches of
that padded length and reports

  compile_s     the first call (tracing and the XLA compile of that shape)
  step_s        the median of --repeats further calls (different batches, same shape)

and fits step time = a + b L by least squares. The epoch projection is the sum of the
fit over the padded lengths of every batch of epoch 0 (the trainer's own batching), and
the first epoch adds one compile per shape the trainer precompiles (`data.batch_shapes`,
every grid length of a training sentence: 17 for PTB; the mean measured compile time).
For the NLL it times one evaluation batch (the trainer's eval batch size, the median
padded length of the test split) with --nll-samples importance samples and projects the
test split the same way (time proportional to the padded length). `protocol_hours`
is 100 epochs (the paper's schedule; its reference code validates every epoch, counted
here as one forward pass of the validation split at a third of a training step per
sequence, a stated assumption) plus the final NLL of validation and test.

Absolute times are this machine's at the time of the run: the JSON records the load
average, and a run beside other work gives upper bounds.
"""

from __future__ import annotations

import argparse
import collections
import json
import os
import pathlib
import platform
import statistics
import tempfile
import time

import numpy as np
import tensorflow as tf

from tf_latentflow import data as D
from tf_latentflow.training import Trainer, default_config
from tf_latentflow.training.inputs import batch_config, batches
from tf_latentflow.training.steps import step_seed

PAPER_EPOCHS = 100
SMALL_SIZES = dict(latent_size=8, embedding_size=16, hidden_units=16, prior_lstm_units=16,
                   num_flow_layers=2, flow_hidden_units=(16, 16))
VALIDATION_COST = 1 / 3  # a forward pass per sequence against a training step (assumed)


def batches_by_padded_length(config, bundle, num_shapes, repeats):
    """({L: [batch, ...]}, Counter): repeats + 1 real epoch-0 training batches of each of the
    `num_shapes` most frequent padded lengths L, and the Counter of padded lengths over the
    whole epoch (with 4 length buckets and PTB's ~42k sentences nearly every batch's longest
    sentence is near its bucket's upper end, so a few lengths cover most batches)."""
    kept = collections.defaultdict(list)
    counts = collections.Counter()
    for batch in batches(config, bundle, "train", epoch=0):
        steps = int(batch["x"].shape[1])
        counts[steps] += 1
        if len(kept[steps]) < repeats + 1:
            kept[steps].append(batch)
    chosen = [steps for steps, _ in counts.most_common(num_shapes)]
    return {steps: kept[steps] for steps in chosen}, counts


def time_training(trainer, found, repeats):
    """{L: (compile_s, step_s)} of the trainer's training step on the batches of each L."""
    config = trainer.config
    step = trainer._make_train_step(batches(config, trainer.bundle, "train", epoch=0).element_spec)
    out = {}
    for steps, items in sorted(found.items()):
        weight = tf.constant(1.0)
        start = time.perf_counter()
        loss = step(items[0], weight, step_seed(config, 0))[0]
        float(loss)
        compile_s = time.perf_counter() - start
        times = []
        for i, batch in enumerate(items[1:repeats + 1]):
            start = time.perf_counter()
            loss = step(batch, weight, step_seed(config, i + 1))[0]
            float(loss)  # wait for the step
            times.append(time.perf_counter() - start)
        out[steps] = (compile_s, statistics.median(times))
    return out


def fit_line(points):
    """(a, b) of the least-squares line t = a + b L through (L, t) points."""
    lengths, times = np.array([p[0] for p in points], float), np.array([p[1] for p in points], float)
    if len(points) == 1:
        return 0.0, float(times[0] / lengths[0])
    b, a = np.polyfit(lengths, times, 1)
    return float(a), float(b)


def time_nll(trainer, num_samples):
    """Seconds of one NLL batch (the trainer's eval batching, the test split's median padded
    length, second call) and the projection over the test split."""
    config = trainer.config
    test = list(batches(config, trainer.bundle, "test"))
    padded = sorted(int(b["x"].shape[1]) for b in test)
    median_length = padded[len(padded) // 2]
    batch = next(b for b in test if int(b["x"].shape[1]) == median_length)
    dataset = tf.data.Dataset.from_tensors(batch)
    start = time.perf_counter()
    trainer.steps.nll_sums(dataset, num_samples)
    first = time.perf_counter() - start
    start = time.perf_counter()
    trainer.steps.nll_sums(dataset, num_samples)
    seconds = time.perf_counter() - start
    per_step = seconds / median_length
    return {"num_samples": num_samples, "batch_rows": int(batch["x"].shape[0]),
            "padded_length": median_length, "first_call_s": round(first, 2), "batch_s": round(seconds, 3),
            "test_batches": len(test),
            "test_projected_s": round(per_step * sum(padded), 1)}


def measure(model, args):
    with tempfile.TemporaryDirectory() as run_dir:
        overrides = dict(data_dir=args.data_dir, jit_compile=True, **(SMALL_SIZES if args.small else {}))
        if args.elbo_samples and model != "lstm":
            overrides["elbo_samples"] = args.elbo_samples
        config = default_config("ptb_char", model, run_dir, **overrides)
        trainer = Trainer(config, log=lambda *_: None)
        found, counts = batches_by_padded_length(config, trainer.bundle, args.shapes, args.repeats)
        timed = time_training(trainer, found, args.repeats)
        a, b = fit_line([(steps, step_s) for steps, (_, step_s) in timed.items()])
        epoch_s = sum(n * (a + b * steps) for steps, n in counts.items())
        compile_mean = statistics.mean(c for c, _ in timed.values())
        precompiled = len(D.batch_shapes(trainer.bundle.lengths["train"],
                                         batch_config(config, trainer.bundle, epoch=0)))
        nll = time_nll(trainer, args.nll_samples)
        validation_sequences = len(trainer.bundle.lengths["validation"])
        train_sequences = len(trainer.bundle.lengths["train"])
        validation_s = VALIDATION_COST * epoch_s * validation_sequences / train_sequences
        protocol_s = (PAPER_EPOCHS * (epoch_s + validation_s) + precompiled * compile_mean
                      + 2 * nll["test_projected_s"])  # validation and test are about the same size
        return {
            "config": {"batch_size": config.batch_size, "elbo_samples": config.elbo_samples,
                       "hidden_units": config.hidden_units, "latent_size": config.latent_size,
                       "num_flow_layers": config.num_flow_layers},
            "steps": {str(steps): {"compile_s": round(c, 1), "step_s": round(s, 3)}
                      for steps, (c, s) in timed.items()},
            "fit_seconds": {"a": round(a, 4), "b_per_step": round(b, 6)},
            "steps_per_epoch": sum(counts.values()),
            "shapes_met_in_epoch_0": len(counts),
            "shapes_precompiled": precompiled,
            "epoch_projected_s": round(epoch_s, 1),
            "first_epoch_compiles_s": round(precompiled * compile_mean, 1),
            "nll": nll,
            "protocol_hours": round(protocol_s / 3600, 1),
        }


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", nargs="+", default=["af-af", "lstm"])
    parser.add_argument("--shapes", type=int, default=3, help="time the most frequent padded lengths")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--elbo-samples", type=int, default=None,
                        help="override the flows' ELBO samples (default: the trainer's PTB value, 10)")
    parser.add_argument("--nll-samples", type=int, default=50)
    parser.add_argument("--small", action="store_true", help="tiny model sizes (tests)")
    parser.add_argument("--data-dir", default=os.environ.get("LATENTFLOW_DATA_DIR", "../shared/data"))
    parser.add_argument("--out", default=str(pathlib.Path(__file__).parent / "results" / "ptb_full_scale.json"))
    args = parser.parse_args(argv)
    result = {"machine": {"platform": platform.platform(), "cpus": os.cpu_count(),
                          "tensorflow": tf.__version__, "load_average_at_start": os.getloadavg(),
                          "threads": {k: os.environ.get(k) for k in ("TF_NUM_INTRAOP_THREADS",
                                                                     "TF_NUM_INTEROP_THREADS")}},
              "paper_epochs": PAPER_EPOCHS, "models": {}}
    for model in args.models:
        result["models"][model] = measure(model, args)
        print(model, json.dumps(result["models"][model]), flush=True)
    result["machine"]["load_average_at_end"] = os.getloadavg()
    pathlib.Path(args.out).write_text(json.dumps(result, indent=1) + "\n")
    return result


if __name__ == "__main__":
    main()
