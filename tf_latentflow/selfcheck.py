"""`python -m tf_latentflow.selfcheck`: does this machine compute what the CPU path computes?

Run it first after installing on a GPU machine, and paste its report into an issue:

    python -m tf_latentflow.selfcheck --output selfcheck.json [--data-dir ../shared/data]

It prints one line per check and writes every number to JSON. The checks:

  devices             TensorFlow, Keras, CUDA and cuDNN versions; the visible devices
  lstm_cudnn_vs_scan  `FastLSTM`'s cuDNN recurrence against its scan on the same weights:
                      outputs, gradients, and a padded batch (masked loss). On a GPU the
                      real cuDNN kernel (CudnnRNNV3 in the graph); without one, the
                      cuDNN branch against a CPU stand-in of the op (`cudnn_stand_in`),
                      and `lstm_cudnn_kernel` is reported as skipped
  mixed_float16/M     one training step of model M (every registry model) in mixed
                      float16 against float32 on the same weights and batch: loss and
                      gradients within `TOLERANCES`, nothing non-finite, and a
                      loss-scaled Adam update that leaves the weights finite
  xla_step_gpu        one XLA-compiled loss-and-gradient step on the GPU against the
                      same step without XLA (skipped without a GPU)
  timing/M            seconds per training step of a JSB epoch slice (paper sizes, the
                      first step with its compile apart) and per sampling call at batch
                      1 and 32 (skipped without the JSB files)

Status: "passed", "failed" or "skipped" (with the reason); the exit code is 1 when a
check failed. Dropout is off in the comparisons (both sides compute one function).
"""

from __future__ import annotations

import argparse
import dataclasses
import itertools
import json
import os
import pathlib
import platform
import sys
import tempfile
import time

import numpy as np

__all__ = ["TOLERANCES", "Check", "main", "run_checks"]

MODELS = ("af-af", "af-scf", "iaf-scf", "af-only", "lstm")
# max |a - b| <= atol + rtol |b| elementwise (outputs); relative global norms (gradients)
TOLERANCES = {
    "lstm_cpu_stand_in": dict(rtol=1e-5, atol=1e-6),
    "lstm_gpu": dict(rtol=1e-3, atol=1e-4),  # cuDNN may use TF32 tensor cores
    "mixed_float16_loss": dict(rtol=1e-2, atol=1e-2),
    "mixed_float16_gradient_norm": 2e-2,  # ||g16 - g32|| / ||g32||
    "xla_loss": dict(rtol=1e-4, atol=1e-4),
    "xla_gradient_norm": 1e-3,
}
TINY_SIZES = dict(latent_size=4, embedding_size=8, hidden_units=8, prior_lstm_units=8, num_flow_layers=2,
                  flow_hidden_units=(8,))


@dataclasses.dataclass
class Check:
    name: str
    status: str  # "passed", "failed", "skipped"
    detail: str
    seconds: float = 0.0
    values: dict = dataclasses.field(default_factory=dict)


def _max_error(got, expected) -> float:
    return float(np.max(np.abs(np.asarray(got, np.float64) - np.asarray(expected, np.float64)), initial=0.0))


def _within(got, expected, rtol, atol) -> bool:
    got, expected = np.asarray(got, np.float64), np.asarray(expected, np.float64)
    return bool(np.all(np.abs(got - expected) <= atol + rtol * np.abs(expected)))


def _relative_norm(got, expected) -> float:
    diff = np.sqrt(sum(np.sum((np.asarray(g, np.float64) - np.asarray(e, np.float64)) ** 2)
                       for g, e in zip(got, expected)))
    norm = np.sqrt(sum(np.sum(np.asarray(e, np.float64) ** 2) for e in expected))
    return float(diff / max(norm, 1e-30))


def _timed(name, fn) -> Check:
    started = time.perf_counter()
    try:
        check = fn()
    except Exception as error:  # a check that crashes is a failed check, with its reason
        check = Check(name, "failed", f"{type(error).__name__}: {str(error).splitlines()[0][:300] if str(error) else ''}")
    check.seconds = time.perf_counter() - started
    return check


# -- devices ---------------------------------------------------------------------------------


def device_report() -> dict:
    import keras
    import tensorflow as tf
    import tensorflow_probability as tfp

    build = tf.sysconfig.get_build_info()
    gpus = []
    for device in tf.config.list_physical_devices("GPU"):
        details = tf.config.experimental.get_device_details(device)
        gpus.append({"name": device.name, **{k: str(v) for k, v in details.items()}})
    return {"python": platform.python_version(), "platform": platform.platform(),
            "tensorflow": tf.__version__, "keras": keras.__version__, "tensorflow_probability": tfp.__version__,
            "cuda_build": build.get("cuda_version"), "cudnn_build": build.get("cudnn_version"),
            "cpus": [d.name for d in tf.config.list_physical_devices("CPU")], "gpus": gpus}


# -- FastLSTM: cuDNN against the scan ----------------------------------------------------------


def _lstm_case(recurrence, padded: bool, seed=0):
    """Outputs and gradients (inputs, initial state, weights) of a FastLSTM with fixed
    random weights; `padded`: rows of lengths (T, T-3, 2), zero after, masked loss."""
    import tensorflow as tf

    from tf_latentflow.layers.lstm import FastLSTM

    batch, steps, size, units = 3, 9, 5, 6
    rng = np.random.default_rng(seed)
    layer = FastLSTM(units, recurrence=recurrence)
    layer.build((None, None, size))
    for w, scale in zip(layer.weights, (0.5, 0.5, 0.3)):
        w.assign(rng.normal(scale=scale, size=w.shape).astype(np.float32))
    x = rng.normal(size=(batch, steps, size)).astype(np.float32)
    h0, c0 = (rng.normal(size=(batch, units)).astype(np.float32) for _ in range(2))
    weights = rng.normal(size=(batch, steps, units)).astype(np.float32)
    if padded:
        mask = (np.arange(steps)[None, :] < np.array([steps, steps - 3, 2])[:, None]).astype(np.float32)
        x, weights = x * mask[..., None], weights * mask[..., None]
    x, h0, c0 = (tf.constant(v) for v in (x, h0, c0))
    with tf.GradientTape() as tape:
        tape.watch([x, h0, c0])
        out = layer(x, initial_state=[h0, c0])
        loss = tf.reduce_sum(weights * out)
    grads = tape.gradient(loss, [x, h0, c0] + layer.trainable_variables)
    out = out.numpy() * (weights != 0) if padded else out.numpy()  # the valid steps only
    return out, [g.numpy() for g in grads]


def check_lstm(gpu: bool) -> Check:
    import tensorflow as tf

    from tf_latentflow.cudnn_stand_in import cudnn_stand_in

    tolerance = TOLERANCES["lstm_gpu" if gpu else "lstm_cpu_stand_in"]
    values, ok = {}, True
    for padded in (False, True):
        expected = _lstm_case("scan", padded)
        if gpu:
            got = _lstm_case("cudnn", padded)
            graph = tf.function(lambda: _lstm_case_graph()).get_concrete_function().graph
            ran_kernel = "CudnnRNNV3" in {op.type for op in graph.get_operations()}
        else:
            with cudnn_stand_in() as calls:
                got = _lstm_case("cudnn", padded)
            ran_kernel = bool(calls)
        key = "padded" if padded else "full"
        values[f"{key}_output_max_error"] = _max_error(got[0], expected[0])
        values[f"{key}_gradient_max_error"] = max(_max_error(g, e) for g, e in zip(got[1], expected[1]))
        values[f"{key}_cudnn_op_called"] = ran_kernel
        ok &= ran_kernel and _within(got[0], expected[0], **tolerance) and all(
            _within(g, e, **tolerance) for g, e in zip(got[1], expected[1]))
        ok &= all(np.all(np.isfinite(g)) for g in got[1])
    where = "the real cuDNN kernel" if gpu else "the cuDNN branch against a CPU stand-in of CudnnRNNV3"
    return Check("lstm_cudnn_vs_scan", "passed" if ok else "failed",
                 f"{where}: outputs and gradients, full and padded batches, within rtol "
                 f"{tolerance['rtol']:g}, atol {tolerance['atol']:g}", values=values)


def _lstm_case_graph():
    import tensorflow as tf

    from tf_latentflow.layers.lstm import FastLSTM

    layer = FastLSTM(4, recurrence="cudnn")
    return layer(tf.zeros([2, 3, 5]))


# -- one training step of each model -----------------------------------------------------------


def _model(name: str, policy: str, sizes: dict, seed: int = 0):
    import keras

    from tf_latentflow.runs import build_model, make_length_model
    from tf_latentflow.training.config import default_config

    config = default_config("jsb", name, "unused", baseline_dropout=0.0, **sizes)
    keras.utils.set_random_seed(seed)
    lengths = np.array([8, 10, 12, 14, 16, 20, 24, 32])
    return build_model(config.model_settings, make_length_model(lengths, dataset="jsb_chorales"), None, policy)


def _music_batch(seed=1, batch=4, steps=16):
    import tensorflow as tf

    rng = np.random.default_rng(seed)
    lengths = np.array([steps, steps - 3, steps - 7, 9][:batch], np.int32)
    x = (rng.random((batch, steps, 88)) < 0.1).astype(np.float32)
    x *= (np.arange(steps)[None, :] < lengths[:, None])[..., None]
    return tf.constant(x), tf.constant(lengths)


def _loss_and_gradients(model, x, lengths, scale=1.0):
    import tensorflow as tf

    from tf_latentflow import evaluation

    with tf.GradientTape() as tape:
        terms = model.loss_terms(x, lengths, kl_weight=1.0, num_samples=1,
                                 seed=tf.constant([3, 4], tf.int64), training=False)
        loss = tf.reduce_mean(evaluation.per_step(tf.cast(terms["loss"], tf.float32), lengths))
        scaled = loss * scale
    grads = tape.gradient(scaled, model.trainable_variables)
    return loss, [tf.convert_to_tensor(g) / scale for g in grads]


def check_mixed_float16(name: str, sizes: dict) -> Check:
    import keras
    import tensorflow as tf

    x, lengths = _music_batch()
    reference, mixed = _model(name, "float32", sizes), _model(name, "mixed_float16", sizes)
    for a, b in zip(mixed.weights, reference.weights):
        a.assign(tf.cast(b, a.dtype))
    loss32, grads32 = _loss_and_gradients(reference, x, lengths)
    optimizer = keras.optimizers.LossScaleOptimizer(keras.optimizers.Adam(1e-3))
    optimizer.build(mixed.trainable_variables)
    scale = float(optimizer.dynamic_scale.numpy())
    loss16, grads16 = _loss_and_gradients(mixed, x, lengths, scale)
    optimizer.apply_gradients(zip([g * scale for g in grads16], mixed.trainable_variables))  # scaled, as trained
    finite = (bool(np.isfinite(loss16.numpy())) and all(bool(np.all(np.isfinite(g))) for g in grads16)
              and all(bool(np.all(np.isfinite(v))) for v in mixed.trainable_variables))
    loss_ok = _within(loss16.numpy(), loss32.numpy(), **TOLERANCES["mixed_float16_loss"])
    relative = _relative_norm([g.numpy() for g in grads16], [g.numpy() for g in grads32])
    ok = finite and loss_ok and relative <= TOLERANCES["mixed_float16_gradient_norm"]
    return Check(f"mixed_float16/{name}", "passed" if ok else "failed",
                 f"loss {float(loss16):.4f} (float32 {float(loss32):.4f}), gradients ||g16 - g32|| / ||g32|| = "
                 f"{relative:.2e} (<= {TOLERANCES['mixed_float16_gradient_norm']:g}), "
                 f"{'all finite' if finite else 'NON-FINITE values'}",
                 values=dict(loss=float(loss16), loss_float32=float(loss32), gradient_relative_error=relative,
                             finite=finite, loss_scale=scale))


def check_xla_gpu(gpu: bool, sizes: dict) -> Check:
    import tensorflow as tf

    if not gpu:
        return Check("xla_step_gpu", "skipped", "no GPU visible (XLA on the CPU is covered by the test suite)")
    model = _model("af-scf", "float32", sizes)
    x, lengths = _music_batch()
    with tf.device("/GPU:0"):
        loss, grads = _loss_and_gradients(model, x, lengths)
        compiled = tf.function(lambda x, lengths: _loss_and_gradients(model, x, lengths), jit_compile=True)
        loss_xla, grads_xla = compiled(x, lengths)
    device = grads_xla[0].device
    relative = _relative_norm([g.numpy() for g in grads_xla], [g.numpy() for g in grads])
    ok = ("GPU" in device.upper() and _within(loss_xla.numpy(), loss.numpy(), **TOLERANCES["xla_loss"])
          and relative <= TOLERANCES["xla_gradient_norm"])
    return Check("xla_step_gpu", "passed" if ok else "failed",
                 f"af-scf loss {float(loss_xla):.5f} (without XLA {float(loss):.5f}), gradients relative error "
                 f"{relative:.1e}, on {device}", values=dict(loss=float(loss_xla), loss_no_xla=float(loss),
                                                             gradient_relative_error=relative, device=device))


# -- speed -------------------------------------------------------------------------------------


def check_timing(name: str, data_dir, prepared_dir, steps: int, sizes: dict, sample_length: int) -> Check:
    import tensorflow as tf

    from tf_latentflow.data import DataError
    from tf_latentflow.training.config import default_config
    from tf_latentflow.training.inputs import batches, length_model, load_data
    from tf_latentflow.training.steps import TrainSteps, step_seed
    from tf_latentflow.training.trainer import make_optimizer
    from tf_latentflow.runs import build_model

    if not data_dir:
        return Check(f"timing/{name}", "skipped", "no JSB Chorales files (--data-dir or $LATENTFLOW_DATA_DIR)")
    config = default_config("jsb", name, "unused", data_dir=str(data_dir), prepared_dir=str(prepared_dir), **sizes)
    try:
        bundle = load_data(config)
    except DataError as error:
        return Check(f"timing/{name}", "skipped", f"JSB Chorales not readable: {str(error).splitlines()[0]}")
    model = build_model(config.model_settings, length_model(config, bundle), None, "float32")
    optimizer = make_optimizer(config, "float32")
    optimizer.build(model.trainable_variables)
    strategy = tf.distribute.get_strategy()
    train = TrainSteps(config, model, optimizer, strategy)
    dataset = strategy.experimental_distribute_dataset(batches(config, bundle, "train", epoch=0))
    step = train.build_train_step(dataset.element_spec)
    # The slice twice: the first pass traces (and with XLA compiles every batch shape it
    # meets), the second is the steady state.
    slice_batches = list(itertools.islice(iter(dataset), steps))
    passes = []
    for _ in range(2):
        started = time.perf_counter()
        for i, batch in enumerate(slice_batches):
            loss, _, _ = step(batch, tf.constant(1.0), step_seed(config, i))
        float(loss)
        passes.append((time.perf_counter() - started) / len(slice_batches))
    values = dict(first_pass_step_seconds=passes[0], step_seconds=passes[1], steps=len(slice_batches),
                  batch_size=config.batch_size, jit_compile=config.jit_compile, sample_length=sample_length)
    for size in (1, 32):
        lengths = tf.fill([size], sample_length)
        model.sample(size, lengths=lengths, seed=tf.constant([5, 6], tf.int64))  # traces
        started = time.perf_counter()
        samples = model.sample(size, lengths=lengths, seed=tf.constant([7, 8], tf.int64))
        tf.nest.map_structure(lambda t: t.numpy() if hasattr(t, "numpy") else t, samples)
        values[f"sample_batch{size}_seconds"] = time.perf_counter() - started
    finite = np.isfinite(float(loss))
    return Check(f"timing/{name}", "passed" if finite else "failed",
                 f"training step {passes[1]:.3f} s (batch {config.batch_size}, mean of {len(slice_batches)}, "
                 f"XLA {'on' if config.jit_compile else 'off'}; first pass with compiles {passes[0]:.1f} s), "
                 f"sampling {sample_length} "
                 f"steps: batch 1 {values['sample_batch1_seconds']:.2f} s, batch 32 "
                 f"{values['sample_batch32_seconds']:.2f} s", values=values)


# -- the report --------------------------------------------------------------------------------


def run_checks(models=MODELS, *, data_dir=None, prepared_dir=None, train_steps=5, tiny=False,
               sample_length=32, log=print) -> dict:
    """Every check (module docstring); returns the JSON record."""
    import tensorflow as tf

    started = time.perf_counter()
    devices = device_report()
    gpu = bool(tf.config.list_physical_devices("GPU"))
    sizes = TINY_SIZES if tiny else {}
    checks = []

    def add(check):
        checks.append(check)
        log(f"{check.status.upper():8s}{check.name:26s}{check.detail}  ({check.seconds:.1f} s)")

    log(f"tf_latentflow selfcheck: TensorFlow {devices['tensorflow']}, Keras {devices['keras']}, "
        f"{len(devices['gpus'])} GPU(s) {[g.get('device_name', g['name']) for g in devices['gpus']]}, "
        f"CUDA {devices['cuda_build']}, cuDNN {devices['cudnn_build']}")
    add(_timed("lstm_cudnn_vs_scan", lambda: check_lstm(gpu)))
    if not gpu:
        add(Check("lstm_cudnn_kernel", "skipped", "no GPU visible: the real cuDNN kernel did not run "
                                                  "(lstm_cudnn_vs_scan used the CPU stand-in)"))
    for name in models:
        add(_timed(f"mixed_float16/{name}", lambda name=name: check_mixed_float16(name, TINY_SIZES)))
    add(_timed("xla_step_gpu", lambda: check_xla_gpu(gpu, TINY_SIZES)))
    prepared_dir = prepared_dir or tempfile.mkdtemp(prefix="latentflow-selfcheck-")
    for name in models:
        add(_timed(f"timing/{name}", lambda name=name: check_timing(
            name, data_dir, prepared_dir, train_steps, sizes, sample_length)))
    summary = {status: [c.name for c in checks if c.status == status] for status in ("passed", "failed", "skipped")}
    verdict = ("FAILED: " + ", ".join(summary["failed"]) if summary["failed"] else
               "all run checks passed" + (f"; SKIPPED {len(summary['skipped'])}: " + ", ".join(summary["skipped"])
                                          if summary["skipped"] else ""))
    if not gpu:
        verdict += " (no GPU: this report does not show that the GPU path works)"
    log(verdict)
    return {"devices": devices, "gpu": gpu, "tiny": tiny, "tolerances": TOLERANCES,
            "checks": [dataclasses.asdict(c) for c in checks], "summary": summary, "verdict": verdict,
            "seconds": time.perf_counter() - started}


def default_data_dir():
    """$LATENTFLOW_DATA_DIR, else ../shared/data beside a source checkout, when it holds JSB."""
    here = pathlib.Path(__file__).resolve().parents[2] / "shared" / "data"
    for candidate in (os.environ.get("LATENTFLOW_DATA_DIR"), here):
        if candidate and (pathlib.Path(candidate) / "jsb_chorales").is_dir():
            return str(candidate)
    return None


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tf_latentflow.selfcheck", description=__doc__.splitlines()[0])
    parser.add_argument("--output", default="selfcheck.json", help="the JSON report (default selfcheck.json)")
    parser.add_argument("--data-dir", default=None,
                        help="raw benchmark files with jsb_chorales/ (default: $LATENTFLOW_DATA_DIR); "
                             "'none' skips the timings")
    parser.add_argument("--prepared-dir", help="prepared TFDS data (default: a temporary directory)")
    parser.add_argument("--models", nargs="+", choices=MODELS, default=list(MODELS))
    parser.add_argument("--train-steps", type=int, default=5, help="timed training steps per model (default 5)")
    parser.add_argument("--sample-length", type=int, default=32, help="steps per sampled sequence (default 32)")
    parser.add_argument("--tiny", action="store_true", help="tiny model sizes for the timings (a quick run)")
    args = parser.parse_args(argv)
    data_dir = None if args.data_dir == "none" else (args.data_dir or default_data_dir())
    record = run_checks(args.models, data_dir=data_dir, prepared_dir=args.prepared_dir,
                        train_steps=max(args.train_steps, 1), tiny=args.tiny, sample_length=args.sample_length,
                        log=lambda line: print(line, flush=True))
    pathlib.Path(args.output).write_text(json.dumps(record, indent=2, default=str) + "\n")
    print(f"wrote {args.output}")
    return 1 if record["summary"]["failed"] else 0


if __name__ == "__main__":
    sys.exit(main())
