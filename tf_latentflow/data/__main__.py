"""`python -m tf_latentflow.data info --dataset NAME [--data-dir DIR]`: per-split statistics.

Bad or missing input prints one line to stderr and exits with status 1.
"""

from __future__ import annotations

import argparse
import sys

from tf_latentflow.data import catalog, sources, stats
from tf_latentflow.data.errors import DataError


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m tf_latentflow.data",
                                     description="Benchmark data of tf_latentflow.")
    sub = parser.add_subparsers(dest="command", required=True)
    info = sub.add_parser("info", help="per-split sequences, time steps and lengths")
    info.add_argument("--dataset", required=True,
                      help=f"one of {', '.join(catalog.DATASETS)} (aliases: {', '.join(catalog.ALIASES)})")
    info.add_argument("--data-dir", default=None,
                      help=f"directory laid out like ../shared/data (default: ${sources.ENV_VAR})")
    return parser.parse_args(argv)


def main(argv=None) -> int:
    args = parse_args(argv)
    try:
        if args.command == "info":
            print(stats.format_stats(stats.source_stats(args.dataset, args.data_dir)))
    except DataError as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
