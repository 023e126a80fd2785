"""`python -m trainers.music --dataset jsb --model af-af`: train and evaluate on a music benchmark.

Re-running the same command with the same --output-dir resumes; --evaluate-only
evaluates the best checkpoint. --help lists the flags by group; --print-config
prints the settings resolved for a dataset and model (their defaults depend on both).
"""

import sys

from tf_latentflow.training.config import MUSIC_DATASETS
from trainers.cli import main

if __name__ == "__main__":
    sys.exit(main(sys.argv[1:], prog="python -m trainers.music", datasets=MUSIC_DATASETS,
                  default_dataset="jsb_chorales", description=__doc__.splitlines()[0]))
