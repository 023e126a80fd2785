"""`python -m trainers.pieces RUN_DIR`: each piece's share of a trained run's validation (or test) figure.

Restores the run's best checkpoint (else its latest), evaluates every sequence of the
split on its own (`tf_latentflow.training.pieces`: the importance-sampled NLL and the
-ELBO, K samples each, K the run's --nll-samples unless --samples), prints the split's
figures, its worst pieces and the figure without them, and writes the whole record as
JSON (default: RUN_DIR/pieces-<split>.json).

    python -m trainers.pieces runs/muse_data/af-scf-seed0 --split validation
"""

import argparse
import dataclasses
import json
import os
import pathlib
import sys

from tf_latentflow.runs.directory import RunDirectory
from tf_latentflow.training import Trainer
from tf_latentflow.training.config import TrainConfig
from tf_latentflow.training.pieces import piece_terms, summarize


def parse(argv):
    parser = argparse.ArgumentParser(prog="python -m trainers.pieces", description=__doc__.splitlines()[0])
    parser.add_argument("run_dir", help="a trained run's --output-dir")
    parser.add_argument("--split", choices=("validation", "test", "train"), default="validation")
    parser.add_argument("--samples", type=int, default=None,
                        help="importance samples per piece (default: the run's --nll-samples)")
    parser.add_argument("--top", type=int, default=10, help="how many of the worst pieces to list")
    parser.add_argument("--data-dir", default=os.environ.get("LATENTFLOW_DATA_DIR"),
                        help="raw benchmark files (default: $LATENTFLOW_DATA_DIR, else the run's)")
    parser.add_argument("--prepared-dir", default=None, help="where TFDS keeps prepared datasets (default: the run's)")
    parser.add_argument("--out", default=None, help="the JSON record (default: RUN_DIR/pieces-<split>.json)")
    return parser.parse_args(argv)


def format_summary(summary: dict) -> str:
    unit = summary["unit"]
    lines = [f"{summary['split']}: {summary['pieces']} pieces, NLL {summary['nll']:.3f} and -ELBO "
             f"{summary['neg_elbo']:.3f} {unit} ({summary['num_samples']} samples)",
             "without the worst k pieces: " + ", ".join(
                 f"k={k} {v:.3f}" for k, v in summary["nll_without_worst"].items()),
             f"{'piece':>6}{'length':>8}{'NLL':>9}{'-ELBO':>9}{'share':>8}{'steps':>8}"]
    for p in summary["worst"]:
        lines.append(f"{p['index']:>6}{p['length']:>8}{p['nll']:>9.3f}{p['neg_elbo']:>9.3f}"
                     f"{p['share_of_nll']:>8.1%}{p['share_of_steps']:>8.1%}")
    return "\n".join(lines)


def main(argv=None) -> int:
    args = parse(argv)
    run = RunDirectory(args.run_dir)
    try:
        saved = TrainConfig.from_json(json.dumps({**run.read_config(), "output_dir": str(run.path)}))
    except FileNotFoundError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    overrides = {"evaluate_only": True, "jit_compile": False}
    if args.data_dir:
        overrides["data_dir"] = args.data_dir
    if args.prepared_dir:
        overrides["prepared_dir"] = args.prepared_dir
    config = dataclasses.replace(saved, **overrides)
    trainer = Trainer(config, log=lambda *_: None)
    checkpoint = trainer.checkpoints.restore_for_evaluation()
    summary = summarize(piece_terms(trainer, args.split, args.samples or config.nll_samples),
                        config.dataset, top=args.top)
    summary = {"run": str(run.path), "checkpoint": os.path.relpath(checkpoint, run.path),
               "epoch": int(trainer.state.epoch.numpy()), **summary}
    out = pathlib.Path(args.out or run.path / f"pieces-{args.split}.json")
    out.write_text(json.dumps(summary, indent=2) + "\n")
    print(format_summary(summary))
    print(f"written: {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
