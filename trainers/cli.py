"""The shared command line of `python -m trainers.music` and `python -m trainers.text`."""

import argparse
import sys

from tf_latentflow.data import DataError
from tf_latentflow.training import TrainingDiverged, run
from tf_latentflow.training.config import add_arguments, config_from_args


def main(argv, *, prog, datasets, default_dataset, description):
    parser = argparse.ArgumentParser(prog=prog, description=description)
    add_arguments(parser, datasets, default_dataset)
    config = config_from_args(parser.parse_args(argv))
    try:
        run(config)
    except DataError as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    except TrainingDiverged as error:
        print(f"error: {error}", file=sys.stderr)
        return 3
    return 0
