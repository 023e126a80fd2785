"""`python -m trainers.summary results/jsb`: the seed table of a dataset's finished runs.

Reads the `<model>-seed<k>.json` results files in the directory and prints, per model,
the test NLL of every seed, their mean, standard deviation and minimum, the paper's value
and the difference, the mean training time, and the command that reproduces the runs
(`tf_latentflow.training.summary`).
"""

import argparse
import sys

from tf_latentflow.training.summary import markdown, seed_rows


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m trainers.summary", description=__doc__.splitlines()[0])
    parser.add_argument("directory", help="a folder of <model>-seed<k>.json results files, e.g. results/jsb")
    args = parser.parse_args(argv)
    rows = seed_rows(args.directory)
    if not rows:
        print(f"no <model>-seed<k>.json results in {args.directory}", file=sys.stderr)
        return 1
    print(markdown(rows), end="")
    return 0


if __name__ == "__main__":
    sys.exit(main())
