"""`python -m trainers.reproduce --table 3`: the paper's experiments as one resumable command.

Trains the selected runs of the declared plan (`tf_latentflow.training.plan`) one after
another into --runs-dir, resuming an interrupted run from its last checkpoint and
skipping finished ones, and copies each finished run's results to
--results-dir/<dataset>/<model>-seed<k>.json (experiments: results/experiments/...).
Run it again after any interruption; --dry-run shows each run's state and projected hours.
"""

import argparse
import os
import sys

from tf_latentflow.training import plan as plans
from tf_latentflow.training.reproduce import (Reproducer, ReproduceError, default_command, environment,
                                              project)


def parse(argv):
    parser = argparse.ArgumentParser(prog="python -m trainers.reproduce", description=__doc__.splitlines()[0])
    what = parser.add_argument_group("which runs")
    what.add_argument("--table", choices=("3", "1"),
                      help="the runs of the paper's table 3 (music) or table 1 (PTB, reduced scale)")
    what.add_argument("--group", action="append", default=[],
                      help="an experiment group of the plan (repeatable): "
                           + ", ".join(sorted({r.group for r in plans.paper_plan()} - {"table1", "table3"})))
    what.add_argument("--datasets", nargs="+", default=[], help="only these datasets (names or aliases)")
    what.add_argument("--models", nargs="+", default=[], help="only these models (or run names such as af-af-affine)")
    what.add_argument("--seeds", nargs="+", type=int, default=[], help="only these seeds")
    what.add_argument("--plan", help="a JSON plan file instead of the declared plan (a list of "
                                     "{dataset, model, seed, settings, name, folder, group})")
    where = parser.add_argument_group("where")
    where.add_argument("--runs-dir", default="runs", help="where the runs train (default: runs)")
    where.add_argument("--results-dir", default="results",
                       help="where finished runs' results.json and history.jsonl are copied, and where the "
                            "committed histories for --dry-run's projections are read (default: results)")
    where.add_argument("--data-dir", default=os.environ.get("LATENTFLOW_DATA_DIR"),
                       help="raw benchmark files (default: $LATENTFLOW_DATA_DIR)")
    where.add_argument("--prepared-dir", help="where TFDS keeps prepared datasets (default: the trainer's)")
    where.add_argument("--xla-cache-dir", help="the trainer's --xla-cache-dir (default: the trainer's)")
    how = parser.add_argument_group("how")
    how.add_argument("--dry-run", action="store_true",
                     help="print each selected run's state, projected hours and command; train nothing")
    how.add_argument("--retry-failed", action="store_true",
                     help="train runs marked failed again (resuming from their last checkpoint)")
    how.add_argument("--only-missing", action="store_true",
                     help="leave out runs whose results file already exists in --results-dir")
    return parser.parse_args(argv)


def dry_run(runs, reproducer: Reproducer, results_dir, command) -> None:
    total, unknown = 0.0, 0
    print(f"{'run':<40} {'state':<22} {'hours':>6}  projection from")
    for run, state in reproducer.states(runs):
        projection = project(run, state, results_dir, reproducer.run_dir(run))
        hours = "?" if projection.hours is None else f"{projection.hours:.1f}"
        total += projection.hours or 0.0
        unknown += projection.hours is None
        print(f"{run.key:<40} {state.describe():<22} {hours:>6}  {projection.source}")
    print(f"{len(runs)} runs, {total:.1f} hours projected" + (f" ({unknown} without a projection)" if unknown else ""))
    print("\ncommands:")
    for run in runs:
        print("  " + " ".join(command(run, reproducer.run_dir(run))[1:]))


def main(argv=None) -> int:
    args = parse(argv)
    try:
        runs = plans.load_plan(args.plan) if args.plan else plans.paper_plan()
        runs = plans.select(runs, table=args.table, groups=args.group, datasets=args.datasets,
                            models=args.models, seeds=args.seeds)
    except (ValueError, LookupError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    if args.only_missing:
        runs = [r for r in runs if not os.path.isfile(os.path.join(args.results_dir, r.folder, r.name + ".json"))]
    if not runs:
        print("no run selected", file=sys.stderr)
        return 2
    command = default_command(data_dir=args.data_dir, prepared_dir=args.prepared_dir,
                              xla_cache_dir=args.xla_cache_dir)
    reproducer = Reproducer(args.runs_dir, args.results_dir, command=command, env=environment(),
                            log=lambda line: print(line, flush=True))
    try:
        if args.dry_run:
            dry_run(runs, reproducer, args.results_dir, command)
            return 0
        return reproducer.run(runs, retry_failed=args.retry_failed)
    except ReproduceError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
