"""One JSB Chorales training epoch per model, against the reference's epoch times.

    python benchmarks/jsb_epoch.py [--models af-af af-scf iaf-scf lstm] [--jit-compile]
                                   [--data-dir ../shared/data] [--out ...]

Trains each model for two epochs with the JSB defaults (batch 5, 1 ELBO sample,
48 steps per epoch) in a temporary run directory through the trainer, and
reports the second epoch's `epoch_seconds` from history.jsonl (the first one
holds the tracing and, with --jit-compile, the XLA compiles). An epoch here
includes the validation pass; the reference's figures (harvardnlp/TextFlow,
2 threads, this machine's kind) are for the training epoch alone, so the
comparison is conservative. Threads: whatever TF_NUM_INTRAOP_THREADS /
TF_NUM_INTEROP_THREADS say (TensorFlow's default: all cores).
"""

import argparse
import json
import os
import pathlib
import platform
import tempfile

import tensorflow as tf

from tf_latentflow.training import Trainer, default_config

REFERENCE_EPOCH_SECONDS = {"af-af": 38.8, "af-scf": 42.4, "iaf-scf": 69.4, "lstm": 10.6}


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", nargs="+", default=list(REFERENCE_EPOCH_SECONDS))
    parser.add_argument("--jit-compile", action="store_true")
    parser.add_argument("--data-dir", default=os.environ.get("LATENTFLOW_DATA_DIR", "../shared/data"))
    parser.add_argument("--out", default=None)
    args = parser.parse_args()
    suffix = "_xla" if args.jit_compile else ""
    out = pathlib.Path(args.out or pathlib.Path(__file__).parent / "results" / f"jsb_epoch{suffix}.json")

    rows = {}
    for name in args.models:
        with tempfile.TemporaryDirectory() as run_dir:
            config = default_config("jsb_chorales", name, run_dir, epochs=2, data_dir=args.data_dir,
                                    jit_compile=args.jit_compile)
            Trainer(config, log=lambda *_: None).fit()
            history = [json.loads(line) for line in
                       (pathlib.Path(run_dir) / "history.jsonl").read_text().splitlines()]
        seconds = history[1]["epoch_seconds"]
        reference = REFERENCE_EPOCH_SECONDS.get(name)
        rows[name] = {"first_epoch_s": round(history[0]["epoch_seconds"], 2),
                      "epoch_s": round(seconds, 2), "reference_epoch_s": reference,
                      "speedup_vs_reference": None if reference is None else round(reference / seconds, 2)}
        print(name, json.dumps(rows[name]), flush=True)
        _write(out, args.jit_compile, rows)  # after each model: a long run keeps what it measured


def _write(out, jit_compile, rows):
    result = {"benchmark": "jsb_epoch", "jit_compile": jit_compile,
              "threads": {k: os.environ.get(k) for k in ("TF_NUM_INTRAOP_THREADS",
                                                         "TF_NUM_INTEROP_THREADS")},
              "machine": {"platform": platform.platform(), "cpus": os.cpu_count(),
                          "tensorflow": tf.__version__},
              "models": rows}
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    main()
