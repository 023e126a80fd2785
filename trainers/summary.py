"""`python -m trainers.summary --table 3`: the paper's tables, or one dataset's seed table, from results.

`--table 3` (music) or `--table 1` (PTB characters, reduced scale) prints the table of
the committed results in --results-dir (`tf_latentflow.training.tables`); `--update FILE`
also rewrites that table's block in FILE (README.md, results/README.md). With a
directory instead, e.g. `results/jsb`, it prints the seed table of that dataset: per
model the test NLL of every seed, their mean, sd and minimum, the paper's value and the
difference, the mean training time, and the command that reproduces the runs
(`tf_latentflow.training.summary`).
"""

import argparse
import pathlib
import sys

from tf_latentflow.training.summary import markdown, seed_rows
from tf_latentflow.training.tables import TABLES, replace_block, table_markdown


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m trainers.summary", description=__doc__.splitlines()[0])
    parser.add_argument("directory", nargs="?",
                        help="a folder of <model>-seed<k>.json results files, e.g. results/jsb")
    parser.add_argument("--table", choices=TABLES, help="the paper's table 3 (music) or 1 (PTB, reduced scale)")
    parser.add_argument("--results-dir", default="results", help="the results of --table (default: results)")
    parser.add_argument("--update", nargs="+", default=[], metavar="FILE",
                        help="with --table: rewrite the table's marked block in these files")
    args = parser.parse_args(argv)
    if bool(args.table) == bool(args.directory):
        parser.error("give either a results directory or --table")
    if args.table:
        table = table_markdown(args.results_dir, args.table)
        print(table, end="")
        for name in args.update:
            path = pathlib.Path(name)
            path.write_text(replace_block(path.read_text(), args.table, table))
        return 0
    rows = seed_rows(args.directory)
    if not rows:
        print(f"no <model>-seed<k>.json results in {args.directory}", file=sys.stderr)
        return 1
    print(markdown(rows), end="")
    return 0


if __name__ == "__main__":
    sys.exit(main())
