"""`python -m trainers.text --dataset ptb_char --model af-af`: train and evaluate on PTB characters.

Re-running the same command with the same --output-dir resumes; --evaluate-only
evaluates the best checkpoint. --help lists the flags by group; --print-config
prints the settings resolved for a dataset and model (their defaults depend on both).
"""

import sys

from tf_latentflow.training.config import TEXT_DATASETS
from trainers.cli import main

if __name__ == "__main__":
    sys.exit(main(sys.argv[1:], prog="python -m trainers.text", datasets=TEXT_DATASETS,
                  default_dataset="ptb_char", description=__doc__.splitlines()[0]))
