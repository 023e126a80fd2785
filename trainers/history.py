"""`python -m trainers.history RUN [RUN ...]`: what a run's history.jsonl says.

For each run directory or history.jsonl file: the epochs and their time, the best epoch
and its validation -ELBO, the epochs after which the learning rate was divided, the
first epoch at full KL weight, and the one-epoch training-loss spikes with their largest
batch loss and gradient norm where recorded (`tf_latentflow.training.history`).
"""

import argparse
import sys

from tf_latentflow.training.history import format_summary, read_history, summarize


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m trainers.history", description=__doc__.splitlines()[0])
    parser.add_argument("runs", nargs="+", help="run directories or history.jsonl files, e.g. "
                                                "results/nottingham/af-scf-seed0.history.jsonl")
    parser.add_argument("--spike-ratio", type=float, default=1.3,
                        help="an epoch is a spike when its mean training loss exceeds this many times "
                             "the larger of its neighbours' (default 1.3)")
    args = parser.parse_args(argv)
    for i, run in enumerate(args.runs):
        if len(args.runs) > 1:
            print(("\n" if i else "") + f"== {run}")
        print(format_summary(summarize(read_history(run), args.spike_ratio)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
