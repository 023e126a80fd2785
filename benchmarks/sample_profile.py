"""Where the IAF/SCF sampler's time goes, part by part, at batch 1 under XLA as the exporter runs it.

    python benchmarks/sample_profile.py [--model iaf-scf] [--lengths 100 200] [--repeats 15]
                                        [--bucket-steps 112 208] [--small]
                                        [--out benchmarks/results/sample_profile.json]

The model is built as `export_speed.py` builds it (untrained paper-size music
model, `runs.build_model` with `default_config("jsb", model, ...)`, a
`LengthModel` of maximum length 256; timing does not depend on the weights).
For each length T the sampler runs the exporter's program for T: the padded
time axis is the export bucket holding T (`export.signatures.default_buckets`
unless --bucket-steps gives one per length), lengths = [T], batch 1.

Each part is its own `tf.function(jit_compile=True)` on fixed-shape inputs
captured from one sample, as the exporter compiles `model.sample` per bucket,
and runs as `model.sample` runs it (the serial loops stop after T):

  prior_lstm      the prior's time LSTM (2 layers) over the shifted noise eps (the whole bucket)
  flow            the within-step flow stack (SCF) for all steps at once, given the context
  emission_l<i>_fwd / _bwd   one direction of emission BiLSTM layer i (with its
                  T-feature rows and, backward, the reversals within length)
  emission_bilstm the whole emission BiLSTM (both layers, both directions)
  output          shifted states, projection, tied output layer, Bernoulli draws
  sample          the whole `model.sample` (what one exported request runs)
  previous_sample the sampler before the serial loops stopped at T (every loop over
                  the whole padded axis: `prior.transform` and `emission.logits`
                  without skip_padding) and before it named its generator (the
                  default "auto_select", ~10x slower under XLA on CPU), in the previous
                  default bucket (powers of two: 128 for T = 100, 256 for T = 200)
  previous_sample_same_bucket   the same in the current bucket (separates the two changes)

With --variants, two ways of running each emission layer's two (independent)
directions at once, against emission_bilstm (not used by the sampler; here to
decide on an idle machine whether they pay; on this CPU XLA already splits
each 500 x 2000 recurrent product into 2 tasks over the 2 cores):

  emission_bilstm_stacked       per layer one while loop stepping both directions
                                (two matrix-vector products per iteration)
  emission_bilstm_two_clusters  per layer and direction its own XLA function, called
                                from a plain graph: TensorFlow's inter-op pool runs
                                the two directions of a layer concurrently

All parts are timed in rounds (part A, part B, ..., then again), and each
reports the median of --repeats rounds, so a load that varies over time
(another process on the machine) hits every part alike; the ratios between
parts are the robust figures, absolute times only on an idle machine.
"""

from __future__ import annotations

import argparse
import json
import os
import pathlib
import platform
import statistics
import time

import keras
import tensorflow as tf

from export.signatures import default_buckets
from tf_latentflow.layers import LengthModel
from tf_latentflow.layers.inference import _reverse_within_length
from tf_latentflow.layers.lstm import _cell
from tf_latentflow.runs import build_model
from tf_latentflow.seeds import as_stateless_seed
from tf_latentflow.training.config import default_config

MAX_LENGTH = 256


def build(name: str, small: bool):
    keras.utils.set_random_seed(0)
    settings = default_config("jsb", name, "/tmp/sample_profile").model_settings
    if small:
        import dataclasses
        settings = dataclasses.replace(settings, latent_size=4, embedding_size=8, hidden_units=8,
                                       prior_lstm_units=8, flow_hidden_units=(8,), num_flow_layers=2)
    return build_model(settings, LengthModel(MAX_LENGTH, name="length_model"), None)


def bucket_for(length: int, buckets) -> int:
    return min(b for b in buckets if b >= length)


POWERS_OF_TWO = (16, 32, 64, 128, 256)  # the exporter's default buckets before the training grid


def previous_sample(model, lengths, seed, steps):
    """`LatentFlowVAE.sample` before its serial loops stopped at the longest length and
    before it named its generator: every LSTM over all `steps`, TensorFlow's default
    generator ("auto_select", slow under XLA; other numbers than Philox there, the same
    outside XLA); see tests/test_sampler_padding.py."""
    seeds = tf.unstack(tf.random.experimental.stateless_split(as_stateless_seed(seed), 3))
    valid = tf.sequence_mask(lengths, steps)[..., tf.newaxis]
    eps = tf.random.stateless_normal(tf.stack([tf.shape(lengths)[0], steps, model.latent_size]),
                                     seed=seeds[1])
    eps = tf.where(valid, eps, tf.zeros_like(eps))
    z = tf.where(valid, model.prior.transform(eps, lengths), tf.zeros_like(eps))
    logits = model.emission.logits(z, lengths)
    u = tf.random.stateless_uniform(tf.shape(logits), seed=seeds[2])
    return tf.where(valid, tf.cast(u < tf.sigmoid(logits), tf.int32), 0)


def _joint_loop(projected, recurrent, num_steps):
    """Several independent LSTMs (zero initial state) stepped in one while loop over
    time-major `projected[k]` `[T, B, 4U]`, up to num_steps; `[T, B, U]` each, 0 after."""
    steps = projected[0].shape[0]
    zeros = [tf.zeros([p.shape[1], r.shape[0]]) for p, r in zip(projected, recurrent)]
    outs = [tf.TensorArray(tf.float32, size=steps, element_shape=z.shape) for z in zeros]

    def body(t, hs, cs, outs):
        new = [_cell(p[t] + tf.matmul(h, r), c)[:2] for p, r, h, c in zip(projected, recurrent, hs, cs)]
        hs, cs = [h for h, _ in new], [c for _, c in new]
        return t + 1, hs, cs, [o.write(t, h) for o, h in zip(outs, hs)]

    _, _, _, outs = tf.while_loop(lambda t, *_: t < num_steps, body, (0, zeros, zeros, outs),
                                  maximum_iterations=steps)
    return [o.stack() for o in outs]


def stacked_bilstm(bilstm, z, lengths, depth, num_steps):
    """`StackedBiLSTM(..., skip_padding=True)` with each layer's directions in one loop."""
    steps = z.shape[1]
    valid = tf.sequence_mask(lengths, steps, dtype=tf.float32)[..., tf.newaxis]
    h = z * valid
    for i, (fwd, bwd) in enumerate(zip(bilstm.forward_layers, bilstm.backward_layers)):
        f_rows = fwd.t_feature_rows(lengths, steps, depth) if i == 0 else None
        b_rows = _reverse_within_length(bwd.t_feature_rows(lengths, steps, depth), lengths) if i == 0 else None
        pf, rf = fwd._projected(h, None, f_rows)[:2]
        pb, rb = bwd._projected(_reverse_within_length(h, lengths), None, b_rows)[:2]
        hf, hb = _joint_loop([tf.transpose(pf, [1, 0, 2]), tf.transpose(pb, [1, 0, 2])], [rf, rb], num_steps)
        f = tf.transpose(hf, [1, 0, 2]) * valid
        b = _reverse_within_length(tf.transpose(hb, [1, 0, 2]), lengths) * valid
        h = tf.concat([f, b], -1)
    return f, b


def two_cluster_bilstm(bilstm, lengths, depth, num_steps):
    """A plain-graph function running `StackedBiLSTM(..., skip_padding=True)` with every
    direction of every layer in an XLA function of its own."""
    def direction(layer, first, backward):
        @tf.function(jit_compile=True)
        def run(h):
            steps = h.shape[1]
            rows = layer.t_feature_rows(lengths, steps, depth) if first else None
            if backward:
                h = _reverse_within_length(h, lengths)
                rows = None if rows is None else _reverse_within_length(rows, lengths)
            out = layer.inference(h, num_steps, t_rows=rows)
            out = _reverse_within_length(out, lengths) if backward else out
            return out * tf.sequence_mask(lengths, steps, dtype=tf.float32)[..., tf.newaxis]
        return run

    runs = [(direction(f, i == 0, False), direction(b, i == 0, True))
            for i, (f, b) in enumerate(zip(bilstm.forward_layers, bilstm.backward_layers))]

    @tf.function(jit_compile=False)
    def bilstm_fn(z):
        h = z
        for run_f, run_b in runs:
            f, b = run_f(h), run_b(h)  # independent: the inter-op pool may run them at once
            h = tf.concat([f, b], -1)
        return f, b
    return bilstm_fn


def parts(model, steps: int, length: int, variants: bool = False):
    """{name: zero-argument XLA function} for one padded length `steps` and T = `length`."""
    prior, emission = model.prior, model.emission
    bilstm = emission.bilstm
    lengths = tf.constant([length], tf.int32)
    seed = tf.constant([1, 2], tf.int64)
    xla = lambda fn: tf.function(fn, jit_compile=True)  # noqa: E731

    z, eps = prior.sample_with_noise(lengths, seed=seed, max_steps=steps)
    context = prior.conditioner.parallel(eps, lengths)
    f, b = bilstm(z, lengths, t_depth=emission.max_length, skip_padding=True)
    h1 = tf.concat([f, b], -1)  # what the second layer reads (its first layer's outputs)
    h0 = z

    def direction(layer, inputs, first, backward):
        def run():
            rows = layer.t_feature_rows(lengths, steps, emission.max_length) if first else None
            if not backward:
                return layer.inference(inputs, length, t_rows=rows)
            if rows is not None:
                rows = _reverse_within_length(rows, lengths)
            return _reverse_within_length(layer.inference(_reverse_within_length(inputs, lengths), length,
                                                          t_rows=rows), lengths)
        return run

    def output():
        f_prev = tf.pad(f[:, :-1], [[0, 0], [1, 0], [0, 0]])
        b_next = tf.pad(b[:, 1:], [[0, 0], [0, 1], [0, 0]])
        p = emission.projection(tf.concat([z, f_prev, b_next], -1))
        logits = emission.tied_embedding.attend(p) + emission.output_bias
        u = tf.random.stateless_uniform(tf.shape(logits), seed=seed)
        return tf.cast(u < tf.sigmoid(logits), tf.int32)

    fns = {
        "prior_lstm": lambda: prior.conditioner.parallel(eps, lengths),
        "flow": lambda: prior._apply_flow("forward", eps, context)[0],
    }
    layers = [(bilstm.forward_layers[i], bilstm.backward_layers[i], h) for i, h in enumerate((h0, h1))]
    for i, (fwd, bwd, inputs) in enumerate(layers):
        fns[f"emission_l{i}_fwd"] = direction(fwd, inputs, i == 0, False)
        fns[f"emission_l{i}_bwd"] = direction(bwd, inputs, i == 0, True)
    fns["emission_bilstm"] = lambda: bilstm(z, lengths, t_depth=emission.max_length, skip_padding=True)
    if variants:
        fns["emission_bilstm_stacked"] = lambda: stacked_bilstm(bilstm, z, lengths, emission.max_length, length)
    fns["output"] = output
    fns["sample"] = lambda: model.sample(1, lengths=lengths, seed=seed, max_length=steps)[0]
    previous_steps = bucket_for(length, POWERS_OF_TWO)
    fns["previous_sample"] = lambda: previous_sample(model, lengths, seed, previous_steps)
    if previous_steps != steps:
        fns["previous_sample_same_bucket"] = lambda: previous_sample(model, lengths, seed, steps)
    compiled = {name: xla(fn) for name, fn in fns.items()}
    if variants:  # a plain-graph function calling XLA functions: not compiled as a whole
        two_clusters = two_cluster_bilstm(bilstm, lengths, emission.max_length, length)
        compiled["emission_bilstm_two_clusters"] = lambda: two_clusters(z)
    return compiled


def run_rounds(fns: dict, repeats: int) -> dict:
    """Median seconds per function, timed in interleaved rounds after one warm-up call each."""
    def call(fn):
        out = fn()
        (out[0] if isinstance(out, (tuple, list)) else out).numpy()

    for fn in fns.values():
        call(fn)
    times = {name: [] for name in fns}
    for _ in range(repeats):
        for name, fn in fns.items():
            started = time.perf_counter()
            call(fn)
            times[name].append(time.perf_counter() - started)
    return {name: statistics.median(t) for name, t in times.items()}


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="iaf-scf")
    parser.add_argument("--lengths", type=int, nargs="+", default=[100, 200])
    parser.add_argument("--bucket-steps", type=int, nargs="+",
                        help="padded length per --lengths entry (default: the export's default bucket)")
    parser.add_argument("--parts", nargs="+", help="time only these parts (default: all)")
    parser.add_argument("--variants", action="store_true",
                        help="also time two concurrent-direction variants of the emission BiLSTM")
    parser.add_argument("--repeats", type=int, default=15)
    parser.add_argument("--small", action="store_true", help=argparse.SUPPRESS)  # tests
    parser.add_argument("--out", default=str(pathlib.Path(__file__).parent / "results" / "sample_profile.json"))
    args = parser.parse_args()

    model = build(args.model, args.small)
    buckets = default_buckets(MAX_LENGTH)
    rows = {}
    for i, length in enumerate(args.lengths):
        steps = args.bucket_steps[i] if args.bucket_steps else bucket_for(length, buckets)
        fns = parts(model, steps, length, variants=args.variants)
        if args.parts:
            fns = {k: v for k, v in fns.items() if k in set(args.parts) | {"sample", "previous_sample"}}
        medians = run_rounds(fns, args.repeats)
        total = medians["sample"]
        rows[f"T{length}"] = {"steps": steps, "previous_steps": bucket_for(length, POWERS_OF_TWO),
                              "ms": {k: round(1e3 * v, 2) for k, v in medians.items()},
                              "share_of_sample": {k: round(v / total, 3) for k, v in medians.items()},
                              "sample_over_previous": round(total / medians["previous_sample"], 3)}
        print(f"T={length} (steps {steps}):", json.dumps(rows[f"T{length}"]["ms"]),
              "sample / previous_sample:", rows[f"T{length}"]["sample_over_previous"], flush=True)

    result = {"benchmark": "sample_profile",
              "config": {"model": args.model, "batch": 1, "max_length": MAX_LENGTH, "xla": True,
                         "repeats": args.repeats, "weights": "untrained", "small": args.small},
              "machine": {"platform": platform.platform(), "cpus": os.cpu_count(),
                          "tensorflow": tf.__version__, "load_average": os.getloadavg()},
              "lengths": rows}
    pathlib.Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    pathlib.Path(args.out).write_text(json.dumps(result, indent=2) + "\n")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
