"""Sampling time against sequence length of the exported samplers (the paper's figure 7).

    python benchmarks/generation.py [--models iaf-scf af-scf af-af lstm]
                                    [--lengths 25 50 100 200 400 1000] [--batch-sizes 1 32]
                                    [--repeats 5] [--budget-s 300] [--max-length 1000]
                                    [--no-xla] [--workdir DIR] [--out benchmarks/results/generation.json]

Builds each model untrained (timing does not depend on the weights) at the paper's
music sizes, as `default_config("jsb", model, ...)` gives them (H=50, BiLSTMs 2x500,
prior LSTM 2x500, 5 flow layers, MADE / coupling 2x100, embedding 500; the LSTM
baseline 2x500), with a uniform `LengthModel` up to --max-length, and exports it with
`export.savedmodel.export_model`: the XLA sampler compiled for one bucket per
requested length (so a request of length T runs exactly T steps, not the next power
of two). Then, in a fresh process per model that imports TensorFlow and nothing of
this project, it loads the SavedModel (`tf.saved_model.load`) and times
`serving_default(num_samples=B, length=T, seed=s)` for every T and B:

  first_call_ms   one warm-up call (includes the XLA compile of that bucket and
                  batch size; reported, never mixed into the statistics)
  times_ms        --repeats further calls (seeds 1..repeats), each to `.numpy()`
  median_ms, min_ms               of those calls
  median_ms_per_sequence, ...     the same divided by B

Lengths run shortest first, and every batch size at one length before the next
length. af-af samples serially over T and, within each step, over the H latent
dimensions (seconds per sequence at T=1000), so each model has a time budget
(--budget-s, counted from the loaded model's first call): a (T, B) is skipped when
the time already spent plus its projected time (from the model's previous length at
that batch size: its compile time again, and 1 + repeats calls scaled linearly in T)
would exceed the budget, and so are the longer lengths at that batch size. The
shortest length is always measured. A skipped entry stays in the JSON with status
"skipped" and the reason. The XLA compiles count against the budget.

Writes benchmarks/results/generation.json (the config, the machine, and per model /
batch size / length the timings) and prints ms per sequence at batch 1 (length x
model) with, per length, IAF/SCF against the LSTM. `benchmarks/figures.py figure7`
draws it. The timing loop (`time_sampler`) and the export (`build_and_export`) are
functions the tests run on tiny models.
"""

from __future__ import annotations

import argparse
import json
import os
import pathlib
import platform
import statistics
import subprocess
import sys
import tempfile
import time

MODELS = ("iaf-scf", "af-scf", "af-af", "lstm")
DEFAULT_LENGTHS = (25, 50, 100, 200, 400, 1000)
DEFAULT_BATCH_SIZES = (1, 32)
DEFAULT_OUT = pathlib.Path(__file__).resolve().parent / "results" / "generation.json"
THREAD_VARIABLES = ("TF_NUM_INTRAOP_THREADS", "TF_NUM_INTEROP_THREADS")
# Modules the timing process must not import: it runs the SavedModel with TensorFlow only.
PROJECT_MODULES = ("tf_latentflow", "export", "tensorflow_probability")


def machine() -> dict:
    """Platform, CPUs (all, and those this process may run on), TensorFlow, thread settings."""
    import tensorflow as tf

    usable = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else None
    return {"platform": platform.platform(), "processor": platform.processor() or platform.machine(),
            "cpus": os.cpu_count(), "usable_cpus": usable, "python": platform.python_version(),
            "tensorflow": tf.__version__,
            "threads": {k: os.environ.get(k) for k in THREAD_VARIABLES}}


# -- export (in the benchmark's own process) -------------------------------------------------


def export_path(workdir, name: str, max_length: int, jit_compile: bool) -> pathlib.Path:
    """Where the benchmark keeps (and reuses) the export of `name`: TF Serving's version 1."""
    return pathlib.Path(workdir) / f"{name}-T{max_length}{'' if jit_compile else '-graph'}" / "1"


def build_and_export(name: str, path, max_length: int, sizes: dict | None = None, *,
                     jit_compile: bool | None = None, buckets=None) -> pathlib.Path:
    """Export an untrained music model `name` with lengths up to `max_length` to `path`.

    sizes: TrainConfig overrides (default: the paper's JSB sizes); jit_compile: the XLA
    sampler (None: the config's `jit_compile`); buckets: the XLA sampler's padded
    lengths (None: `export.signatures.default_buckets(max_length)`).
    """
    import keras

    from export.savedmodel import export_model
    from export.signatures import default_buckets
    from tf_latentflow.layers import LengthModel
    from tf_latentflow.runs import build_model
    from tf_latentflow.training.config import default_config

    keras.utils.set_random_seed(0)
    config = default_config("jsb", name, str(pathlib.Path(path).parent), **(sizes or {}))
    model = build_model(config.model_settings, LengthModel(max_length, name="length_model"), None)
    jit_compile = config.jit_compile if jit_compile is None else jit_compile
    if jit_compile:  # the buckets `make_sample_fn` compiles
        buckets = sorted(set(map(int, buckets or default_buckets(max_length))) | {int(max_length)})
    metadata = {"model": name, "benchmark": "generation", "buckets": buckets if jit_compile else None}
    return export_model(model, path, nll_samples=config.nll_samples, jit_compile=jit_compile,
                        buckets=buckets, metadata=metadata)


def reusable(path, buckets) -> bool:
    """Whether `path` holds an export of this benchmark with the same XLA buckets (None: the
    plain-graph sampler); an export with other buckets is an error, not silently reused."""
    path = pathlib.Path(path)
    if not (path / "saved_model.pb").is_file():
        return False
    info = json.loads((path / "assets.extra" / "latentflow.json").read_text())
    expected = sorted(set(map(int, buckets)) | {int(info["max_length"])}) if buckets else None
    if info.get("benchmark") != "generation" or info.get("buckets") != expected:
        raise FileExistsError(f"{path} was exported with buckets {info.get('buckets')}, not for "
                              f"these lengths: use another --workdir")
    return True


# -- timing (in a fresh process that loads only the SavedModel) -------------------------------


def projected_seconds(previous: dict | None, length: int, repeats: int) -> float:
    """The wall time of the warm-up and `repeats` calls at `length`, from the entry of a
    shorter length (0 without one): its compile time (first call - median) again, and
    1 + repeats calls of its median scaled linearly in T."""
    if previous is None:
        return 0.0
    compile_ms = max(previous["first_call_ms"] - previous["median_ms"], 0.0)
    call_ms = previous["median_ms"] * length / previous["length"]
    return (compile_ms + (1 + repeats) * call_ms) / 1000.0


def time_sampler(saved_model_path, lengths, batch_sizes, repeats: int = 5,
                 budget_s: float | None = None) -> dict:
    """Load the SavedModel and time `serving_default(num_samples=B, length=T, seed)`.

    Returns {"load_s", "timing_s", "project_modules_loaded", "by_batch": {str(B): {str(T):
    entry}}}; an entry is {"status": "measured", "length", "batch_size", "first_call_ms",
    "times_ms", "median_ms", "min_ms", "median_ms_per_sequence", "min_ms_per_sequence",
    "output_shape"} or {"status": "skipped", "length", "batch_size", "reason"}. See the
    module docstring for the budget.
    """
    import numpy as np
    import tensorflow as tf

    started = time.perf_counter()
    sample = tf.saved_model.load(str(saved_model_path)).signatures["serving_default"]
    load_s = time.perf_counter() - started

    def call(batch_size, length, seed):
        out = sample(num_samples=tf.constant(batch_size, tf.int32), length=tf.constant(length, tf.int32),
                     seed=tf.constant(seed, tf.int64))
        return out["sequences"].numpy(), out["lengths"].numpy()

    lengths, batch_sizes = sorted(set(map(int, lengths))), [int(b) for b in batch_sizes]
    by_batch = {str(b): {} for b in batch_sizes}
    previous, over = {b: None for b in batch_sizes}, {b: None for b in batch_sizes}
    clock = time.perf_counter()
    for length in lengths:
        for batch_size in batch_sizes:
            entry = {"length": length, "batch_size": batch_size}
            spent = time.perf_counter() - clock
            projected = projected_seconds(previous[batch_size], length, repeats)
            if over[batch_size] is None and budget_s is not None and previous[batch_size] is not None \
                    and spent + projected > budget_s:
                over[batch_size] = (f"budget {budget_s:g} s: {spent:.1f} s spent, T={length} projected "
                                    f"{projected:.1f} s")
            if over[batch_size] is not None:
                by_batch[str(batch_size)][str(length)] = dict(entry, status="skipped",
                                                              reason=over[batch_size])
                continue
            tick = time.perf_counter()
            sequences, drawn = call(batch_size, length, 0)
            first_ms = 1000.0 * (time.perf_counter() - tick)
            if sequences.shape[:2] != (batch_size, length) or not np.all(drawn == length):
                raise AssertionError(f"asked for {batch_size} x T={length}, got sequences "
                                     f"{sequences.shape} and lengths {drawn}")
            times = []
            for seed in range(1, repeats + 1):
                tick = time.perf_counter()
                call(batch_size, length, seed)
                times.append(1000.0 * (time.perf_counter() - tick))
            entry.update(status="measured", first_call_ms=first_ms, times_ms=times,
                         median_ms=statistics.median(times), min_ms=min(times),
                         median_ms_per_sequence=statistics.median(times) / batch_size,
                         min_ms_per_sequence=min(times) / batch_size,
                         output_shape=list(sequences.shape))
            by_batch[str(batch_size)][str(length)] = entry
            previous[batch_size] = entry
    loaded = sorted(m for m in sys.modules if m.split(".")[0] in PROJECT_MODULES)
    return {"load_s": load_s, "timing_s": time.perf_counter() - clock,
            "project_modules_loaded": loaded, "by_batch": by_batch}


def time_in_subprocess(saved_model_path, lengths, batch_sizes, repeats: int = 5,
                       budget_s: float | None = None, timeout: float | None = None) -> dict:
    """`time_sampler` in a fresh Python that runs this file with --time-only (the
    environment's thread settings are inherited)."""
    command = [sys.executable, str(pathlib.Path(__file__).resolve()), "--time-only", str(saved_model_path),
               "--lengths", *map(str, lengths), "--batch-sizes", *map(str, batch_sizes),
               "--repeats", str(repeats)]
    if budget_s is not None:
        command += ["--budget-s", str(budget_s)]
    proc = subprocess.run(command, capture_output=True, text=True, timeout=timeout,
                          env=dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2"))
    if proc.returncode != 0:
        raise RuntimeError(f"timing {saved_model_path} failed:\n{proc.stderr[-3000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


# -- output ------------------------------------------------------------------------------------


def ms_per_sequence(row: dict, batch_size: int, length: int) -> float | None:
    entry = row["by_batch"].get(str(batch_size), {}).get(str(length))
    return entry["median_ms_per_sequence"] if entry and entry["status"] == "measured" else None


def comparison(models: dict, lengths, batch_size: int = 1, fast: str = "iaf-scf",
               slow: str = "lstm") -> dict:
    """Per length: {"<fast>_ms", "<slow>_ms", "ratio" (slow / fast), "faster"} or None
    where either model was not measured."""
    out = {}
    for length in lengths:
        a = ms_per_sequence(models[fast], batch_size, length) if fast in models else None
        b = ms_per_sequence(models[slow], batch_size, length) if slow in models else None
        out[str(length)] = None if a is None or b is None else {
            f"{fast}_ms": a, f"{slow}_ms": b, "ratio": b / a, "faster": a < b}
    return out


def table(models: dict, lengths, batch_size: int = 1) -> str:
    names = list(models)
    lines = [f"ms per sequence, batch {batch_size} (median of the timed calls; - = skipped)",
             f"{'T':>6}" + "".join(f"{n:>11}" for n in names) + "   iaf-scf faster than lstm?"]
    versus = comparison(models, lengths, batch_size)
    for length in lengths:
        cells = [ms_per_sequence(models[n], batch_size, length) for n in names]
        line = f"{length:>6}" + "".join(f"{c:>11.1f}" if c is not None else f"{'-':>11}" for c in cells)
        row = versus[str(length)]
        if row is not None:
            line += f"   {'yes' if row['faster'] else 'no '} (lstm / iaf-scf = {row['ratio']:.2f})"
        lines.append(line)
    return "\n".join(lines)


def write(out, args, models: dict) -> dict:
    result = {"benchmark": "generation",
              "config": {"dataset_sizes": "music (88 notes), paper sizes (default_config('jsb', ...))",
                         "weights": "untrained", "models": list(args.models), "lengths": list(args.lengths),
                         "batch_sizes": list(args.batch_sizes), "repeats": args.repeats,
                         "budget_s": args.budget_s, "max_length": args.max_length,
                         "xla_sampler": args.jit_compile,
                         "buckets": sorted(set(args.lengths) | {args.max_length}) if args.jit_compile
                         else None,
                         "signature": "serving_default(num_samples=B, length=T, seed)"},
              "machine": machine(),
              "models": models,
              "iaf_scf_vs_lstm": {str(b): comparison(models, args.lengths, b) for b in args.batch_sizes}}
    out = pathlib.Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2) + "\n")
    return result


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", nargs="+", choices=MODELS, default=list(MODELS))
    parser.add_argument("--lengths", type=int, nargs="+", default=list(DEFAULT_LENGTHS))
    parser.add_argument("--batch-sizes", type=int, nargs="+", default=list(DEFAULT_BATCH_SIZES))
    parser.add_argument("--repeats", type=int, default=5, help="timed calls per (T, B) after the warm-up")
    parser.add_argument("--budget-s", type=float, default=300.0,
                        help="per-model time budget in seconds; longer lengths beyond it are skipped "
                             "(default 300)")
    parser.add_argument("--max-length", type=int, default=None,
                        help="the length model's maximum (default: the largest --lengths)")
    parser.add_argument("--no-xla", dest="jit_compile", action="store_false",
                        help="export the plain-graph sampler instead of the XLA one")
    parser.add_argument("--workdir", help="where the SavedModels go (default: a temporary directory); "
                        "existing exports there are reused")
    parser.add_argument("--out", default=str(DEFAULT_OUT))
    parser.add_argument("--time-only", help=argparse.SUPPRESS)  # internal: the timing subprocess
    args = parser.parse_args(argv)
    args.lengths = sorted(set(args.lengths))
    if args.max_length is None:
        args.max_length = args.lengths[-1]
    if args.max_length < args.lengths[-1]:
        parser.error(f"--max-length {args.max_length} is below the longest length {args.lengths[-1]}")
    return args


def main(argv=None):
    args = parse_args(argv)
    if args.time_only:
        print(json.dumps(time_sampler(args.time_only, args.lengths, args.batch_sizes, args.repeats,
                                      args.budget_s)))
        return None

    workdir = pathlib.Path(args.workdir or tempfile.mkdtemp(prefix="generation_"))
    buckets = args.lengths if args.jit_compile else None
    models = {}
    for name in args.models:
        path = export_path(workdir, name, args.max_length, args.jit_compile)
        export_s = None
        if not reusable(path, buckets):
            started = time.perf_counter()
            build_and_export(name, path, args.max_length, jit_compile=args.jit_compile, buckets=buckets)
            export_s = time.perf_counter() - started
            print(f"{name}: exported in {export_s:.1f} s", flush=True)
        row = time_in_subprocess(path, args.lengths, args.batch_sizes, args.repeats, args.budget_s)
        models[name] = {"export_s": export_s, **row}
        print(f"{name}: loaded in {row['load_s']:.1f} s, timed in {row['timing_s']:.1f} s", flush=True)
        write(args.out, args, models)  # after every model: a crash keeps what was measured
    print(table(models, args.lengths, batch_size=1))
    print(f"wrote {args.out}")
    return json.loads(pathlib.Path(args.out).read_text())


if __name__ == "__main__":
    main()
