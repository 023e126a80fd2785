"""JSB Chorales training epochs per model, against the reference's epoch times
(and another music dataset's epochs against JSB's).

    python benchmarks/jsb_epoch.py [--models af-af af-scf iaf-scf lstm] [--epochs 6]
                                   [--no-jit-compile] [--length-grid-size K] [--elbo-samples K]
                                   [--data-dir ../shared/data] [--out ...]
                                   [--reference-json train_af-af.json train_lstm.json ...]
    python benchmarks/jsb_epoch.py --dataset nottingham --ratio-to-jsb --models af-scf --epochs 2

Trains each model for `--epochs` epochs with the JSB defaults (batch 5, 1 ELBO
sample, 46-48 steps per epoch; XLA unless --no-jit-compile) in a temporary run
directory through the trainer, and reports from history.jsonl:

  first_epoch_s     epoch 1, training and validation, with the tracing and compiles
  train_s           median training pass of epochs 2..N; with --reference-json, the
                    reference's training pass of the same model measured in the same
                    window (`reference_train_s`, the harness of docs/performance.md,
                    `time_reference.py --what train`) and `speedup_vs_reference`
  epoch_s           median of epochs 2..N with the validation pass
  steadiness        slowest / fastest of the training passes of epochs 2..N: a compile
                    in a later epoch (a batch shape not met before) shows as > 1.3
  train_loss_each,  every epoch's training and validation loss (seed 0), so that a
  validation_loss_each  speed change can show it left the results alone
  test_nll_s        with --nll-samples K: the importance-sampled NLL of the test split
                    (K samples, the trainer's evaluation), timed on its second call (the
                    first, with the compiles, is test_nll_first_s); `nll_pass.py` times
                    that pass alone

  train_time_steps  the training split's time steps (sum of the sequence lengths) and
  train_padded_steps  the padded steps its batches hold (batch x padded length, fill rows
                    included): what an epoch computes

`--batching bucketed` measures the batching of the runs trained before length pooling
(output `..._bucketed.json`). With `--dataset D` (default jsb_chorales) the epochs are D's with D's defaults
(`default_config`); `--ratio-to-jsb` first measures the same models on JSB in the
same process and adds, per model, `jsb_train_s`, `ratio_to_jsb` (D's training pass /
JSB's) and `time_step_ratio` / `padded_step_ratio` (D's steps / JSB's), the issue's
yardstick for a larger dataset (Nottingham: at most 14x JSB's epoch for 12.8x its
time steps). Output: `results/jsb_epoch_xla.json`, or `results/<D>_epoch_xla.json`.

Commits that predate `train_seconds` in history.jsonl report train_s = null (use
epoch_s to compare them). Threads: whatever TF_NUM_INTRAOP_THREADS /
TF_NUM_INTEROP_THREADS say (TensorFlow's default: one per core), recorded in the
JSON. `benchmarks/ab_epoch.py` runs this script for two commits in one session.
"""

import argparse
import json
import os
import pathlib
import statistics
import tempfile
import time

from timing import machine

from tf_latentflow.training import Trainer, default_config
from tf_latentflow.training.config import DATASET_ALIASES
from tf_latentflow.training.inputs import batches

MODELS = ("af-af", "af-scf", "iaf-scf", "lstm")


def reference_seconds(paths) -> dict:
    """{model: median seconds} of the reference harness's training-pass JSON files."""
    seconds = {}
    for path in paths or ():
        record = json.loads(pathlib.Path(path).read_text())
        if record.get("what") != "train":
            raise ValueError(f"{path}: not a training-pass measurement (what={record.get('what')!r})")
        seconds[record["model"]] = statistics.median(record["seconds_each"])
    return seconds


def measure(name: str, epochs: int, jit_compile: bool, data_dir: str, nll_samples: int = 0, *,
            dataset: str = "jsb_chorales", prepared_dir: str | None = None, batching: str = "pooled",
            length_grid_size: int | None = None, elbo_samples: int | None = None,
            reference: float | None = None) -> dict:
    """Train `name` for `epochs` epochs of `dataset` in a temporary run directory; the row of
    the JSON."""
    nll = {}
    with tempfile.TemporaryDirectory() as run_dir:
        config = default_config(dataset, name, run_dir, epochs=epochs, data_dir=data_dir,
                                jit_compile=jit_compile, prepared_dir=prepared_dir, batching=batching,
                                length_grid_size=length_grid_size, elbo_samples=elbo_samples)
        trainer = Trainer(config, log=lambda *_: None)
        steps = {"train_time_steps": int(trainer.bundle.lengths["train"].sum()),
                 "train_padded_steps": padded_steps(trainer)}
        trainer.fit()
        if nll_samples:
            for key in ("test_nll_first_s", "test_nll_s"):
                started = time.perf_counter()
                trainer.evaluate_nll("test", nll_samples)
                nll[key] = round(time.perf_counter() - started, 2)
        history = [json.loads(line) for line in
                   (pathlib.Path(run_dir) / "history.jsonl").read_text().splitlines()]
    later = history[1:]
    train = [h["train_seconds"] for h in later] if all("train_seconds" in h for h in later) else None
    epoch = [h["epoch_seconds"] for h in later]
    basis = train or epoch
    reference = reference if config.dataset == "jsb_chorales" else None
    train_s = None if train is None else round(statistics.median(train), 2)
    return {"length_grid_size": config.length_grid_size, "elbo_samples": config.elbo_samples,
            "first_epoch_s": round(history[0]["epoch_seconds"], 2),
            "train_s": train_s, "epoch_s": round(statistics.median(epoch), 2),
            "train_seconds_each": None if train is None else [round(t, 2) for t in train],
            "epoch_seconds_each": [round(t, 2) for t in epoch],
            "steadiness": round(max(basis) / min(basis), 3),
            "train_loss_each": [h["train_loss"] for h in history],
            "validation_loss_each": [h["validation_loss"] for h in history],
            "reference_train_s": reference,
            "speedup_vs_reference": None if reference is None or train_s is None
            else round(reference / train_s, 2), **steps, **nll}


def padded_steps(trainer: Trainer) -> int:
    """Batch rows x padded length summed over one epoch's training batches (epoch 0)."""
    return sum(int(b["x"].shape[0]) * int(b["x"].shape[1])
               for b in batches(trainer.config, trainer.bundle, "train", epoch=0))


def add_ratios(rows: dict, jsb_rows: dict) -> None:
    """Per model: this dataset's training pass and steps over JSB's (in place)."""
    for name, row in rows.items():
        jsb = jsb_rows[name]
        row["jsb_train_s"] = jsb["train_s"]
        row["ratio_to_jsb"] = round(row["train_s"] / jsb["train_s"], 2)
        row["time_step_ratio"] = round(row["train_time_steps"] / jsb["train_time_steps"], 2)
        row["padded_step_ratio"] = round(row["train_padded_steps"] / jsb["train_padded_steps"], 2)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", nargs="+", default=list(MODELS))
    parser.add_argument("--epochs", type=int, default=6)
    parser.add_argument("--jit-compile", action=argparse.BooleanOptionalAction, default=True)
    parser.add_argument("--data-dir", default=os.environ.get("LATENTFLOW_DATA_DIR", "../shared/data"))
    parser.add_argument("--prepared-dir", default=None, help="the trainer's --prepared-dir (default: its own)")
    parser.add_argument("--dataset", default="jsb_chorales")
    parser.add_argument("--ratio-to-jsb", action="store_true",
                        help="also measure the models on JSB first and report the ratios")
    parser.add_argument("--nll-samples", type=int, default=0,
                        help="also time the test split's importance-sampled NLL with this many samples")
    parser.add_argument("--batching", choices=("pooled", "bucketed"), default="pooled",
                        help="the trainer's --batching (default pooled; bucketed: the runs before pooling)")
    parser.add_argument("--length-grid-size", type=int, default=None,
                        help="the trainer's --length-grid-size (default: the dataset's)")
    parser.add_argument("--elbo-samples", type=int, default=None,
                        help="the trainer's --elbo-samples (default: the dataset's)")
    parser.add_argument("--reference-json", nargs="+", default=(),
                        help="the reference harness's training-pass JSON files, measured in the same window")
    parser.add_argument("--out", default=None)
    args = parser.parse_args(argv)
    reference = reference_seconds(args.reference_json)
    if args.epochs < 2:
        parser.error("--epochs must be >= 2 (epoch 1 holds the compiles)")
    suffix = ("_xla" if args.jit_compile else "_graph") + ("_bucketed" if args.batching == "bucketed" else "")
    dataset = DATASET_ALIASES.get(args.dataset, args.dataset)
    stem = "jsb" if dataset == "jsb_chorales" else dataset
    out = pathlib.Path(args.out or pathlib.Path(__file__).parent / "results" / f"{stem}_epoch{suffix}.json")
    result = {"benchmark": "jsb_epoch", "dataset": dataset, "jit_compile": args.jit_compile,
              "batching": args.batching,
              "epochs": args.epochs, "machine": machine(), "models": {}}

    def run(name, on):
        row = measure(name, args.epochs, args.jit_compile, args.data_dir, args.nll_samples,
                      dataset=on, prepared_dir=args.prepared_dir, batching=args.batching,
                      length_grid_size=args.length_grid_size, elbo_samples=args.elbo_samples,
                      reference=reference.get(name))
        print(on, name, json.dumps(row), flush=True)
        return row

    if args.ratio_to_jsb and dataset != "jsb_chorales":
        result["jsb_models"] = {name: run(name, "jsb_chorales") for name in args.models}
    for name in args.models:
        result["models"][name] = run(name, dataset)
        if "jsb_models" in result:
            add_ratios({name: result["models"][name]}, result["jsb_models"])
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(json.dumps(result, indent=2) + "\n")  # after each model: keeps what it measured


if __name__ == "__main__":
    main()
