"""Where one training step's time goes, per model: encoder, prior LSTM, flows, emission, optimizer.

    python benchmarks/profile_step.py [--models af-af af-scf iaf-scf lstm] [--batch 5] [--steps 64]
                                      [--jit-compile | --no-jit-compile] [--repeats 5] [--small]
                                      [--out benchmarks/results/profile_step.json]

Models are built as the trainer builds them: `runs.build_model` with
`default_config("jsb_chorales", model, ...)` (the paper's JSB sizes: H=50,
BiLSTMs 2x500, prior LSTM 2x500, 5 flow layers, MADE / coupling 2x100) and a
`LengthModel` of synthetic lengths up to 160 (so T_max = 200 as for JSB), on
one synthetic batch of B x T 88-note piano rolls (every sequence of length T).
`--small` shrinks every size (for the tests).

The full training step is the trainer's own, `training.steps.TrainSteps.build_train_step`
on one device (row weights all 1: no filler rows): the model's `loss_terms` with
training=True, the batch mean of the per-step loss, gradients, the gradient norm,
`clip_across_replicas` at the config's clip norm, the trainer's Adam (`FusedAdam`)
`apply_gradients`; with --jit-compile the loss and gradients are compiled by XLA and
the update is not.

Each part is cut out of that step and timed as its own `tf.function` (forward +
backward; XLA when --jit-compile) on the tensors it sees inside the step,
captured from one forward pass: the gradient of the sum of its outputs w.r.t.
its trainable weights and w.r.t. those inputs the real step differentiates.

  LatentFlowVAE (af-af, af-scf, iaf-scf, af-only)
    encoder     InferenceNetwork.sample_and_log_prob(x): embedding, BiLSTM, Gaussian
                head, reparameterised z and log q (weights incl. the tied embedding)
    prior_lstm  the prior's TimeConditioner producing the flows' per-step context;
                af-*: `parallel` over z (d/dz too); iaf-scf: `step` inside the same
                `serial_scan` loop as the prior's density, over the shifted eps (d/deps
                too); af-only has no LSTM (its T-feature context is in the overhead)
    flows       the within-step flow stack (MADE or coupling conditioners + NLSq) in the
                density direction given the context, plus the standard-normal base
                term: the prior's log p(z) given the context (d/dz, d/dcontext too);
                af-*: all steps at once; iaf-scf: step by step in a `serial_scan` loop
    emission    Emission.log_prob(x | z): BiLSTM over z, projection, tied output,
                Bernoulli log-likelihood (d/dz too; weights incl. the tied embedding)
  LSTMBaseline (lstm)
    lstm        input embedding, start vector, dropout and the LSTM layers (to h)
    output      projection, tied output layer, Bernoulli log-likelihood (d/dh too)
  both
    optimizer   `clip_across_replicas` + the trainer's Adam `apply_gradients` on gradients of the
                weights' shapes (random: the update's cost does not depend on the values);
                never XLA, as the trainer does not compile the update
    overhead    full step - sum of the timed parts

Separately timed parts need not add up to the full step, and the overhead row
can be negative: the full step is one graph (one XLA cluster with
--jit-compile) in which TensorFlow overlaps independent ops across the 2 cores
and XLA fuses across part boundaries, while each part pays its own function
call, its own output copies and its own sum-of-outputs seed gradient; for
iaf-scf the loop machinery of the serial density (while loop, TensorArrays,
per-step recompute in the backward pass) is counted in both prior_lstm and
flows, since each runs in a loop of its own. The positive overhead is what the
parts do not cover: the glue of the ELBO (reshapes, KL and loss sums, log p(T)),
the per-sequence loss, gradient bookkeeping and the step's dispatch.

Every time is the median of --repeats calls after one warm-up call
(`timing.timed`), with the cores it kept busy: the process's CPU time over the wall
time of a call (median; 2.0 is both cores of this machine). Before timing, the cut
is checked against the model: the parts recomposed (without dropout) must give the
model's own log p(z) / log-likelihood, and every trainable weight must belong to some
part.
"""

from __future__ import annotations

import argparse
import json
import os
import pathlib
import platform
import tempfile

import keras
import numpy as np
import tensorflow as tf
from timing import timed

from tf_latentflow.baseline import LSTMBaseline
from tf_latentflow.layers import LengthModel
from tf_latentflow.layers.t_features import t_features
from tf_latentflow.priors.gaussian import standard_normal_log_prob, step_mask
from tf_latentflow.priors.serial_scan import serial_scan
from tf_latentflow.training import default_config
from tf_latentflow.runs import build_model
from tf_latentflow.training.distribution import clip_across_replicas
from tf_latentflow.training.steps import TrainSteps
from tf_latentflow.training.trainer import make_optimizer

MODELS = ("af-af", "af-scf", "iaf-scf", "af-only", "lstm")
VAE_PARTS = ("encoder", "prior_lstm", "flows", "emission", "optimizer")
LSTM_PARTS = ("lstm", "output", "optimizer")
SMALL_SIZES = dict(latent_size=8, embedding_size=16, hidden_units=16, prior_lstm_units=16,
                   num_flow_layers=2, flow_hidden_units=(16, 16))
SYNTHETIC_LONGEST = 160  # JSB's longest chorale is about this long: T_max = 1.25 * 160 = 200
KL_WEIGHT = 0.5
SEED = (0, 7919)


def expected_parts(model_name: str) -> tuple[str, ...]:
    """The timed parts of a model (without the overhead row)."""
    if model_name == "lstm":
        return LSTM_PARTS
    if model_name == "af-only":
        return tuple(p for p in VAE_PARTS if p != "prior_lstm")
    return VAE_PARTS


# -- construction --------------------------------------------------------------------------


def make_config(model_name: str, small: bool, jit_compile: bool = True):
    """The trainer's JSB configuration of the model (its output directory is never written)."""
    return default_config("jsb_chorales", model_name, os.path.join(tempfile.gettempdir(), "unused"),
                          jit_compile=jit_compile, **(SMALL_SIZES if small else {}))


def length_model_depth(steps: int) -> int:
    """T_max of the synthetic length model: floor(1.25 * longest length), music's rule."""
    return int(max(SYNTHETIC_LONGEST, steps) * 1.25)


def make_batch(batch: int, steps: int):
    x = tf.cast(tf.random.stateless_uniform([batch, steps, 88], seed=[1, 2]) < 0.05, tf.float32)
    return {"x": x, "lengths": tf.fill([batch], steps), "weight": tf.ones([batch])}


def make_model(config, steps: int):
    """build_model with a length model of synthetic lengths (1 .. max(160, T)), seeded as the
    trainer seeds it, and the trainer's optimizer (no clipnorm: the step clips)."""
    keras.utils.set_random_seed(config.seed)
    longest = max(SYNTHETIC_LONGEST, steps)
    lengths = np.concatenate([np.arange(1, longest + 1), np.full(50, min(steps, longest))])
    length_model = LengthModel.from_lengths(lengths, smoothing=True, name="length_model")
    model = build_model(config.model_settings, length_model, vocab_size=None)
    optimizer = make_optimizer(config, "float32")  # the trainer's: FusedAdam
    optimizer.build(model.trainable_variables)
    return model, optimizer


def _dense(gradients):
    return [tf.convert_to_tensor(g) if isinstance(g, tf.IndexedSlices) else g for g in gradients]


def make_full_step(model, optimizer, config, batch):
    """The trainer's training step for batches like `batch`, on one device
    (`training.steps.TrainSteps.build_train_step`; XLA as `config.jit_compile` says)."""
    steps = TrainSteps(config, model, optimizer, tf.distribute.get_strategy())
    return steps.build_train_step(tf.nest.map_structure(tf.TensorSpec.from_tensor, batch))


# -- the parts' forward functions (glue around the library's layers) ----------------------


def conditioner_parallel(prior, z, lengths, training):
    """af-*: the prior's context c_t = LSTM(z_<t, T), as SequenceFlowPrior._parallel computes it."""
    return prior.conditioner.parallel(z, lengths, training=training)


def conditioner_serial(prior, eps, lengths, training):
    """iaf-scf: c_t = LSTM(eps_<t, T) by TimeConditioner.step in a serial_scan loop, as in
    SequenceFlowPrior._serial, with eps_<t given (it is the flows' output in the real loop)."""
    conditioner = prior.conditioner
    batch, steps = tf.shape(eps)[0], tf.shape(eps)[1]
    previous = tf.concat([conditioner.start_input(batch, eps.dtype)[:, tf.newaxis], eps[:, :-1]], 1)

    def step(states, elems):
        previous_t, features_t, masks_t = elems
        context, states = conditioner.step(previous_t, features_t, states, masks=masks_t)
        return states, context

    elems = (tf.transpose(previous, [1, 0, 2]), conditioner.step_features(lengths, steps, eps.dtype),
             conditioner.dropout_masks(batch, steps, eps.dtype) if training else ())
    spec = tf.TensorSpec([None, conditioner.units], eps.dtype)
    contexts = serial_scan(step, conditioner.initial_state(lengths), elems, spec)
    return tf.transpose(contexts, [1, 0, 2])


def _masked_log_prob(eps, log_det, valid):
    return tf.where(valid, standard_normal_log_prob(eps) + log_det, tf.zeros_like(log_det))


def flows_parallel(prior, z, context, lengths):
    """af-*: log p(z_t | c_t) for all steps at once (SequenceFlowPrior.log_prob / _apply_flow)."""
    valid = step_mask(lengths, tf.shape(z)[1], tf.bool)
    z = tf.where(valid[..., tf.newaxis], z, tf.zeros_like(z))
    shape = tf.shape(z)
    flat_c = tf.reshape(context, tf.stack([-1, tf.shape(context)[-1]]))
    eps, log_det = prior.flow.bijector.inverse_and_log_det(tf.reshape(z, [-1, prior.latent_size]),
                                                           context=flat_c)
    return _masked_log_prob(tf.reshape(eps, shape), tf.reshape(log_det, shape[:2]), valid)


def flows_serial(prior, z, context, lengths):
    """iaf-scf: log p(z_t | c_t) step by step in a serial_scan loop (SequenceFlowPrior._serial)."""
    valid = step_mask(lengths, tf.shape(z)[1], tf.bool)
    z = tf.where(valid[..., tf.newaxis], z, tf.zeros_like(z))
    bijector = prior.flow.bijector

    def step(carry, elems):
        z_t, context_t = elems
        eps_t, log_det_t = bijector.inverse_and_log_det(z_t, context=context_t)
        return carry, (eps_t, log_det_t)

    spec = (tf.TensorSpec([None, prior.latent_size], z.dtype), tf.TensorSpec([None], z.dtype))
    eps, log_det = serial_scan(step, (), (tf.transpose(z, [1, 0, 2]), tf.transpose(context, [1, 0, 2])),
                               spec)
    return _masked_log_prob(tf.transpose(eps, [1, 0, 2]), tf.transpose(log_det), valid)


def iaf_noise_and_contexts(prior, z, lengths):
    """iaf-scf: eps = f^{-1}(z) by the prior's own serial density loop (no dropout), and the
    contexts c_t = LSTM(eps_<t, T) it used; the inputs the iaf parts see."""
    valid = step_mask(lengths, tf.shape(z)[1], tf.bool)
    z = tf.where(valid[..., tf.newaxis], z, tf.zeros_like(z))
    eps, _ = prior._serial("inverse", z, lengths, training=False)
    return eps, conditioner_serial(prior, eps, lengths, training=False)


def baseline_hidden(model, x, lengths, training):
    """LSTMBaseline.logits up to the last LSTM layer's (dropped-out) output h."""
    steps = tf.shape(x)[1]
    mask = tf.sequence_mask(lengths, steps)[..., tf.newaxis]
    x = tf.where(mask, x, tf.zeros_like(x))
    emb = tf.matmul(tf.cast(x, model.compute_dtype), tf.cast(model.embeddings, model.compute_dtype))
    start = tf.broadcast_to(tf.cast(model.start, model.compute_dtype),
                            tf.stack([tf.shape(emb)[0], 1, model.embedding_size]))
    h = model.input_dropout(tf.concat([start, emb[:, :-1]], axis=1), training=training)
    for i, (layer, drop) in enumerate(zip(model.lstm_layers, model.lstm_dropouts)):
        rows = layer.t_feature_rows(lengths, steps, model.max_length) if i == 0 else None
        h = drop(layer(h, t_rows=rows), training=training)
    return h


def baseline_output(model, h, x, lengths):
    """LSTMBaseline's output layer and Bernoulli log-likelihood per step from h."""
    proj = model.projection(h)
    emb = tf.cast(model.embeddings, model.compute_dtype)
    logits = tf.cast(tf.matmul(proj, emb, transpose_b=True)
                     + tf.cast(model.output_bias, model.compute_dtype), tf.float32)
    valid = tf.sequence_mask(lengths, tf.shape(x)[1])
    x = tf.where(valid[..., tf.newaxis], tf.cast(x, tf.float32), 0.0)
    ll = -tf.reduce_sum(tf.nn.sigmoid_cross_entropy_with_logits(labels=x, logits=logits), axis=-1)
    return tf.where(valid, ll, tf.zeros_like(ll))


# -- parts ---------------------------------------------------------------------------------


class Part:
    """One timed part: fn(**inputs) -> outputs; d(sum of outputs) / d(variables, inputs[wrt])."""

    def __init__(self, name, description, fn, inputs, variables, wrt=()):
        self.name, self.description, self.fn = name, description, fn
        self.inputs, self.variables, self.wrt = inputs, list(variables), tuple(wrt)


def make_timed(part: Part, jit_compile: bool):
    variables, wrt = part.variables, part.wrt

    @tf.function(jit_compile=jit_compile)
    def forward_backward(inputs):
        with tf.GradientTape() as tape:
            watched = [inputs[k] for k in wrt]
            tape.watch(watched)
            outputs = part.fn(**inputs)
            target = tf.add_n([tf.reduce_sum(tf.cast(o, tf.float32)) for o in tf.nest.flatten(outputs)])
        gradients = _dense(tape.gradient(target, variables + watched))
        return target, gradients

    return lambda: forward_backward(part.inputs)[0].numpy()


def vae_parts(model, config, batch, seed):
    """The VAE's parts and their captured inputs; and the cut's check against the model."""
    prior, x, lengths = model.prior, batch["x"], batch["lengths"]
    k = config.elbo_samples
    z, _ = model.inference.sample_and_log_prob(x, lengths, k, seed=seed, training=True)
    steps = tf.shape(z)[2]
    flat_z = tf.reshape(z, [-1, steps, model.latent_size])
    flat_lengths = tf.tile(lengths, [k])
    flat_x = tf.tile(x, [k, 1, 1])
    parts = [Part("encoder", "InferenceNetwork.sample_and_log_prob (z and log q)",
                  lambda x, lengths, seed: model.inference.sample_and_log_prob(
                      x, lengths, k, seed=seed, training=True),
                  {"x": x, "lengths": lengths, "seed": seed}, model.inference.trainable_variables)]
    time = prior.time
    if time == "none":
        context = t_features(flat_lengths, steps, prior.max_length, dtype=flat_z.dtype)
        checks = {"prior_log_p_max_abs_diff": _max_abs_diff(
            flows_parallel(prior, flat_z, context, flat_lengths), prior.log_prob(flat_z, flat_lengths))}
    elif time == "af":
        context = conditioner_parallel(prior, flat_z, flat_lengths, training=True)
        parts.append(Part("prior_lstm", "TimeConditioner.parallel over z",
                          lambda z, lengths: conditioner_parallel(prior, z, lengths, training=True),
                          {"z": flat_z, "lengths": flat_lengths}, prior.conditioner.trainable_variables,
                          wrt=("z",)))
        clean = conditioner_parallel(prior, flat_z, flat_lengths, training=False)
        checks = {"prior_log_p_max_abs_diff": _max_abs_diff(
            flows_parallel(prior, flat_z, clean, flat_lengths), prior.log_prob(flat_z, flat_lengths))}
    else:  # iaf
        eps, context = iaf_noise_and_contexts(prior, flat_z, flat_lengths)
        parts.append(Part("prior_lstm", "TimeConditioner.step in serial_scan over eps_<t",
                          lambda eps, lengths: conditioner_serial(prior, eps, lengths, training=True),
                          {"eps": eps, "lengths": flat_lengths}, prior.conditioner.trainable_variables,
                          wrt=("eps",)))
        checks = {"prior_log_p_max_abs_diff": _max_abs_diff(
            flows_serial(prior, flat_z, context, flat_lengths), prior.log_prob(flat_z, flat_lengths))}
    flows = flows_serial if time == "iaf" else flows_parallel
    parts.append(Part("flows", f"HiddenFlowStack ({prior.hidden}) density given the context"
                      + (", per step in serial_scan" if time == "iaf" else ", all steps at once"),
                      lambda z, context, lengths: flows(prior, z, context, lengths),
                      {"z": flat_z, "context": context, "lengths": flat_lengths},
                      prior.flow.trainable_variables,
                      wrt=("z", "context") if prior.conditioner is not None else ("z",)))
    parts.append(Part("emission", "Emission.log_prob (x | z)",
                      lambda x, z, lengths: model.emission.log_prob(x, z, lengths, training=True),
                      {"x": flat_x, "z": flat_z, "lengths": flat_lengths},
                      model.emission.trainable_variables, wrt=("z",)))
    return parts, checks


def lstm_parts(model, batch):
    x, lengths = batch["x"], batch["lengths"]
    h = baseline_hidden(model, x, lengths, training=True)
    parts = [Part("lstm", "input embedding, start vector and LSTM layers (to h)",
                  lambda x, lengths: baseline_hidden(model, x, lengths, training=True),
                  {"x": x, "lengths": lengths},
                  [model.embeddings, model.start] + [v for layer in model.lstm_layers
                                                     for v in layer.trainable_variables]),
             Part("output", "projection, tied output layer and Bernoulli log-likelihood",
                  lambda h, x, lengths: baseline_output(model, h, x, lengths),
                  {"h": h, "x": x, "lengths": lengths},
                  model.projection.trainable_variables + [model.embeddings, model.output_bias],
                  wrt=("h",))]
    glue = baseline_output(model, baseline_hidden(model, x, lengths, training=False), x, lengths)
    checks = {"log_p_max_abs_diff": _max_abs_diff(glue, model.log_prob_steps(x, lengths))}
    return parts, checks


def _max_abs_diff(a, b):
    return float(tf.reduce_max(tf.abs(tf.cast(a, tf.float32) - tf.cast(b, tf.float32))).numpy())


# -- one model -----------------------------------------------------------------------------


def profile_model(name: str, args) -> dict:
    config = make_config(name, args.small, args.jit_compile)
    model, optimizer = make_model(config, args.steps)
    batch = make_batch(args.batch, args.steps)
    kl_weight = tf.constant(KL_WEIGHT, tf.float32)
    seed = tf.constant(SEED, tf.int64)

    if isinstance(model, LSTMBaseline):
        parts, checks = lstm_parts(model, batch)
    else:
        parts, checks = vae_parts(model, config, batch, seed)
    covered = {v.path for part in parts for v in part.variables}
    checks["weights_in_no_part"] = sorted(v.path for v in model.trainable_variables
                                          if v.path not in covered)
    bad = {k: v for k, v in checks.items() if k.endswith("diff") and not v <= 1e-2}
    if bad or checks["weights_in_no_part"]:
        raise RuntimeError(f"{name}: the cut does not match the model: {checks}")

    train_step = make_full_step(model, optimizer, config, batch)
    # Gradients of the weights' shapes for the optimizer part (its cost does not depend on
    # their values; the real ones would cost one more trace of the loss and its gradients).
    gradients = [0.01 * tf.random.stateless_normal(v.shape, seed=[i, 3], dtype=v.dtype)
                 for i, v in enumerate(model.trainable_variables)]

    @tf.function
    def update(gradients):
        if config.clip_norm:
            gradients = clip_across_replicas(gradients, config.clip_norm, 1.0)
        optimizer.apply_gradients(zip(gradients, model.trainable_variables))
        return tf.constant(0.0)

    descriptions = {part.name: part.description for part in parts}
    descriptions["optimizer"] = (f"clip_across_replicas (global norm {config.clip_norm}) + "
                                 f"{type(optimizer).__name__}.apply_gradients, never XLA (as the trainer)")
    measured = {"full_step": timed(lambda: train_step(batch, kl_weight, seed)[0].numpy(), args.repeats)}
    for part in parts:
        measured[part.name] = timed(make_timed(part, args.jit_compile), args.repeats)
    measured["optimizer"] = timed(lambda: update(gradients).numpy(), args.repeats)

    full_ms = 1000.0 * measured["full_step"][0]
    part_ms = {p: 1000.0 * measured[p][0] for p in expected_parts(name)}
    overhead_ms = full_ms - sum(part_ms.values())
    return {"full_step_ms": full_ms, "full_step_cores": measured["full_step"][1],
            "parts": {p: {"ms": ms, "share": ms / full_ms, "cores": measured[p][1]}
                      for p, ms in part_ms.items()},
            "overhead": {"ms": overhead_ms, "share": overhead_ms / full_ms},
            "descriptions": descriptions, "checks": checks}


# -- output --------------------------------------------------------------------------------


def table(rows: dict) -> str:
    lines = []
    for name, row in rows.items():
        lines.append(f"{name}: full step {row['full_step_ms']:.1f} ms, "
                     f"{row.get('full_step_cores', float('nan')):.2f} cores busy")
        entries = list(row["parts"].items()) + [("overhead", row["overhead"])]
        for part, value in entries:
            cores = f"{value['cores']:>8.2f} cores" if "cores" in value else ""
            lines.append(f"  {part:<12}{value['ms']:>10.1f} ms{100 * value['share']:>8.1f} %{cores}")
    return "\n".join(lines)


def write(out: pathlib.Path, args, rows: dict) -> None:
    sizes = SMALL_SIZES if args.small else {
        key: getattr(make_config("af-af", False), key) for key in SMALL_SIZES}
    result = {"benchmark": "profile_step",
              "config": {"batch": args.batch, "steps": args.steps, "notes": 88,
                         "jit_compile": args.jit_compile, "repeats": args.repeats, "small": args.small,
                         "kl_weight": KL_WEIGHT, "t_feature_depth": length_model_depth(args.steps),
                         **{k: list(v) if isinstance(v, tuple) else v for k, v in sizes.items()}},
              "threads": {k: os.environ.get(k) for k in ("TF_NUM_INTRAOP_THREADS",
                                                         "TF_NUM_INTEROP_THREADS")},
              "machine": {"platform": platform.platform(), "cpus": os.cpu_count(),
                          "tensorflow": tf.__version__},
              "models": rows}
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2) + "\n")


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", nargs="+", choices=MODELS, default=["af-af", "af-scf", "iaf-scf", "lstm"])
    parser.add_argument("--batch", type=int, default=5)
    parser.add_argument("--steps", type=int, default=64, help="time steps T of the batch")
    parser.add_argument("--jit-compile", action=argparse.BooleanOptionalAction, default=True,
                        help="XLA for the loss and gradients (and for every part but the optimizer)")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--small", action="store_true", help="tiny model sizes (tests)")
    parser.add_argument("--out", default=str(pathlib.Path(__file__).parent / "results" / "profile_step.json"))
    return parser.parse_args(argv)


def main(argv=None) -> dict:
    args = parse_args(argv)
    out = pathlib.Path(args.out)
    rows = {}
    for name in args.models:
        rows[name] = profile_model(name, args)
        print(table({name: rows[name]}), flush=True)
        write(out, args, rows)  # after each model: a long run keeps what it measured
    return rows


if __name__ == "__main__":
    main()
