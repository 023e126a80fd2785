"""Time per sequence of the exported sampler (the `serving_default` signature of a reloaded SavedModel).

    python benchmarks/export_speed.py [--models iaf-scf af-af lstm] [--lengths 64 256]
                                      [--workdir DIR] [--out ...]

Builds each model at the paper's music sizes (H=50, BiLSTMs 2x500, prior LSTM
2x500, 5 flow layers, MADE/coupling 2x100, embedding 500; LSTM baseline 2x500),
untrained (timing does not depend on the weights), with a length model of
maximum length 256 so that T=256 is a valid request; exports it with
`export.savedmodel.export_model` (XLA sampler, buckets 16..256), then, in a fresh
process per model, loads the SavedModel and times `serving_default` with
num_samples=1 and a fixed length: median of --repeats calls after one warm-up
call (the warm-up includes XLA compilation; its time is reported separately).
Writes benchmarks/results/export_speed.json.
"""

from __future__ import annotations

import argparse
import json
import os
import pathlib
import platform
import subprocess
import sys
import tempfile
import time

MAX_LENGTH = 256


def export_paper_model(name: str, path: pathlib.Path, jit_compile: bool) -> None:
    """Export an untrained paper-size music model `name` to `path`."""
    import keras

    from export.savedmodel import export_model
    from tf_latentflow.layers import LengthModel
    from tf_latentflow.runs import build_model
    from tf_latentflow.training.config import default_config

    keras.utils.set_random_seed(0)
    config = default_config("jsb", name, str(path))
    model = build_model(config.model_settings, LengthModel(MAX_LENGTH, name="length_model"), None)
    export_model(model, path, nll_samples=config.nll_samples, jit_compile=jit_compile)


def time_saved_model(path: str, lengths, repeats: int) -> dict:
    """Load the SavedModel at `path` and time serving_default(num_samples=1, length=T)."""
    import numpy as np
    import tensorflow as tf

    started = time.perf_counter()
    sample = tf.saved_model.load(path).signatures["serving_default"]
    row = {"load_s": time.perf_counter() - started}
    for steps in lengths:
        def call(seed):
            out = sample(num_samples=tf.constant(1), length=tf.constant(steps),
                         seed=tf.constant(seed, tf.int64))
            return out["sequences"].numpy()

        started = time.perf_counter()
        first = call(0)
        row[f"T{steps}_first_call_s"] = time.perf_counter() - started
        assert first.shape[:2] == (1, steps), first.shape
        times = []
        for seed in range(1, repeats + 1):
            started = time.perf_counter()
            call(seed)
            times.append(time.perf_counter() - started)
        row[f"T{steps}_s_per_sequence"] = float(np.median(times))
    return row


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", nargs="+", default=["iaf-scf", "af-af", "lstm"])
    parser.add_argument("--lengths", type=int, nargs="+", default=[64, 256])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--no-xla", dest="jit_compile", action="store_false")
    parser.add_argument("--workdir", help="where the SavedModels go (default: a temporary directory); "
                        "existing exports there are reused")
    parser.add_argument("--out", default=str(pathlib.Path(__file__).parent / "results" / "export_speed.json"))
    parser.add_argument("--time-only", help=argparse.SUPPRESS)  # internal: the timing subprocess
    args = parser.parse_args()

    if args.time_only:
        print(json.dumps(time_saved_model(args.time_only, args.lengths, args.repeats)))
        return

    workdir = pathlib.Path(args.workdir or tempfile.mkdtemp(prefix="export_speed_"))
    rows = {}
    for name in args.models:
        path = workdir / f"{name}{'' if args.jit_compile else '-graph'}" / "1"
        if not (path / "saved_model.pb").is_file():
            started = time.perf_counter()
            export_paper_model(name, path, args.jit_compile)
            print(f"{name}: exported in {time.perf_counter() - started:.1f} s", flush=True)
        proc = subprocess.run([sys.executable, __file__, "--time-only", str(path), "--repeats",
                               str(args.repeats), "--lengths", *map(str, args.lengths)],
                              capture_output=True, text=True, env=dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2"))
        if proc.returncode != 0:
            raise RuntimeError(f"timing {name} failed:\n{proc.stderr[-3000:]}")
        rows[name] = json.loads(proc.stdout.strip().splitlines()[-1])
        print(name, json.dumps({k: round(v, 4) for k, v in rows[name].items()}), flush=True)

    import tensorflow as tf

    result = {"benchmark": "export_speed",
              "config": {"dataset_sizes": "music (88 notes), paper sizes", "max_length": MAX_LENGTH,
                         "num_samples": 1, "lengths": args.lengths, "repeats": args.repeats,
                         "xla_sampler": args.jit_compile, "weights": "untrained"},
              "machine": {"platform": platform.platform(), "cpus": os.cpu_count(),
                          "tensorflow": tf.__version__},
              "models": rows}
    pathlib.Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    pathlib.Path(args.out).write_text(json.dumps(result, indent=2) + "\n")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
