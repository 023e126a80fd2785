"""The shared command line of `python -m trainers.music` and `python -m trainers.text`."""

import argparse
import sys

from tf_latentflow.data import DataError
from tf_latentflow.training import ConfigMismatch, Interrupted, TrainingDiverged, results_table, run
from tf_latentflow.training import xla_cache
from tf_latentflow.training.cluster import EXIT_NO_CLUSTER, ClusterError
from tf_latentflow.training.config import DEFAULTS_NOTE, add_arguments, config_from_args
from tf_latentflow.training.resume import inherit_saved


def build_parser(*, prog, datasets, default_dataset, description) -> argparse.ArgumentParser:
    """The trainer's flags (`training.config.add_arguments`) and the command's own, in groups."""
    parser = argparse.ArgumentParser(prog=prog, description=description, epilog=DEFAULTS_NOTE)
    run = add_arguments(parser, datasets, default_dataset)["run"]
    run.add_argument("--force-new", action="store_true",
                     help="delete the run in --output-dir (checkpoints, history, results) and start over")
    run.add_argument("--print-config", action="store_true",
                     help="print the resolved configuration (JSON: the dataset's and model's defaults "
                          "and the given flags) and exit, touching neither the data nor --output-dir")
    run.add_argument("--xla-cache-dir", default=xla_cache.default_directory(),
                     help="keep the XLA-compiled steps in this directory and reuse them in later runs "
                          "and resumes; one directory per machine type (default: $%s, else none)"
                          % xla_cache.ENV_VAR)
    return parser


def main(argv, *, prog, datasets, default_dataset, description):
    parser = build_parser(prog=prog, datasets=datasets, default_dataset=default_dataset,
                          description=description)
    args = parser.parse_args(argv)
    force_new, cache_dir, print_config = args.force_new, args.xla_cache_dir, args.print_config
    del args.force_new, args.xla_cache_dir, args.print_config
    # Before anything touches TensorFlow's devices: listing them (the default of --jit-compile
    # asks whether a GPU is visible) reads TF_XLA_FLAGS, and a cache flag added later is ignored.
    if args.jit_compile is not False and not print_config:
        cache_dir = xla_cache.enable(cache_dir)
    else:
        cache_dir = None
    try:
        config = config_from_args(args)
        if not force_new:  # a run to resume keeps how its batches are made (resume.INHERITED_SETTINGS)
            config = inherit_saved(config, {name for name, value in vars(args).items() if value is not None})
    except ValueError as error:  # settings that cannot work: refused before anything is written
        print(f"{prog}: error: {error}", file=sys.stderr)
        return 2
    if print_config:
        print(config.to_json())
        return 0
    if config.jit_compile and cache_dir:
        print(f"XLA compilation cache: {cache_dir}", file=sys.stderr)
    try:
        results = run(config, force_new=force_new)
    except (DataError, ConfigMismatch) as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    except TrainingDiverged as error:
        print(f"error: {error}", file=sys.stderr)
        return 3
    except ClusterError as error:  # --strategy multiworker: TF_CONFIG, or a worker that stopped
        print(f"error: {error}", file=sys.stderr)
        return EXIT_NO_CLUSTER
    except Interrupted as error:
        print(f"\n{error}", file=sys.stderr)
        return 130
    except KeyboardInterrupt:  # a second Ctrl-C: stopped at once, the last checkpoint stands
        print("\nstopped; the last saved checkpoint is intact: re-run the same command to resume",
              file=sys.stderr)
        return 130
    if results:  # {} on a worker other than the chief: the chief evaluates and prints
        print(results_table(results))
    return 0
