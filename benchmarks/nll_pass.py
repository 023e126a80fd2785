"""The importance-sampled NLL pass of a test split: seconds per call, against the reference's.

    python benchmarks/nll_pass.py [--model af-af] [--dataset jsb_chorales] [--samples 50]
                                  [--repeats 2] [--reference-json FILE]
                                  [--out benchmarks/results/nll_pass.json]

Builds the model as the trainer does (`default_config(dataset, model)`, XLA) with the
weights of seed 0's initialisation (the time does not depend on the values; a trained
checkpoint is re-evaluated with the trainer's `--evaluate-only`), and times
`Trainer.evaluate_nll("test", samples)`, the pass `results.json`'s "test" entry comes
from, `--repeats` times in one process: the first call holds the tracing and XLA
compiles (`first_call_s`), the others do not (`seconds_each`, `median_s`). The NLL of
each call is recorded too (the same seed every call: equal figures).

`--reference-json` adds the reference's figure measured in the same window (the
reference harness's JSON, docs/performance.md "Rebuilding the reference harness":
`time_reference.py --what nll`) and the ratio reference / ours of the medians.

The evaluation batches are counted as `padded_steps` (rows x padded length) over
`time_steps` (the split's sequence lengths).
"""

from __future__ import annotations

import argparse
import json
import os
import pathlib
import statistics
import tempfile
import time

from timing import machine

from tf_latentflow.training import Trainer, default_config
from tf_latentflow.training.inputs import batches


def measure(model: str, dataset: str, samples: int, repeats: int, data_dir: str) -> dict:
    with tempfile.TemporaryDirectory() as scratch:
        config = default_config(dataset, model, scratch, epochs=1, data_dir=data_dir)
        trainer = Trainer(config, log=lambda *_: None)
        test = list(batches(config, trainer.bundle, "test"))
        seconds, nlls = [], []
        for _ in range(repeats):
            started = time.perf_counter()
            record = trainer.evaluate_nll("test", samples)
            seconds.append(round(time.perf_counter() - started, 2))
            nlls.append(record["nll"])
    return {"model": model, "dataset": config.dataset, "samples": samples,
            "eval_batch_size": config.eval_batch_size, "batches": len(test),
            "time_steps": int(trainer.bundle.lengths["test"].sum()),
            "padded_steps": sum(int(b["x"].shape[0]) * int(b["x"].shape[1]) for b in test),
            "first_call_s": seconds[0], "seconds_each": seconds[1:],
            "median_s": statistics.median(seconds[1:]) if len(seconds) > 1 else None,
            "nll_each": nlls}


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="af-af")
    parser.add_argument("--dataset", default="jsb_chorales")
    parser.add_argument("--samples", type=int, default=50)
    parser.add_argument("--repeats", type=int, default=2, help="calls in one process (the first compiles)")
    parser.add_argument("--reference-json", default=None,
                        help="the reference harness's JSON for the same pass (time_reference.py --what nll)")
    parser.add_argument("--data-dir", default=os.environ.get("LATENTFLOW_DATA_DIR", "../shared/data"))
    parser.add_argument("--out", default=str(pathlib.Path(__file__).parent / "results" / "nll_pass.json"))
    args = parser.parse_args(argv)
    if args.repeats < 1:
        parser.error("--repeats must be >= 1")
    row = measure(args.model, args.dataset, args.samples, args.repeats, args.data_dir)
    result = {"benchmark": "nll_pass", "machine": machine(), **row}
    if args.reference_json:
        reference = json.loads(pathlib.Path(args.reference_json).read_text())
        reference_s = statistics.median(reference["seconds_each"])
        result["reference"] = reference
        result["reference_median_s"] = reference_s
        result["speedup_vs_reference"] = (None if row["median_s"] is None
                                          else round(reference_s / row["median_s"], 2))
    out = pathlib.Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps({k: v for k, v in result.items() if k not in ("machine", "reference")}))
    return result


if __name__ == "__main__":
    main()
