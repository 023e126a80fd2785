"""`python -m trainers.text --dataset ptb_char --model af-af`: train and evaluate on PTB characters.

Re-running the same command with the same --output-dir resumes; --evaluate-only
evaluates the best checkpoint. See `tf_latentflow.training.config` for the flags
and their per-dataset defaults.
"""

import sys

from tf_latentflow.training.config import TEXT_DATASETS
from trainers.cli import main

if __name__ == "__main__":
    sys.exit(main(sys.argv[1:], prog="python -m trainers.text", datasets=TEXT_DATASETS,
                  default_dataset="ptb_char", description=__doc__.splitlines()[0]))
