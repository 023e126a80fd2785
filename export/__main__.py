"""`python -m export --run-dir RUN --output MODEL_BASE [--version N]`: a run as a TF Serving SavedModel.

Writes MODEL_BASE/<version>/ (TF Serving's layout; default version: the next
integer) with the signatures `serving_default` (sample) and `log_prob`; see
`export.signatures`.
"""

from __future__ import annotations

import argparse
import sys

from export.run import CHECKPOINT_KINDS, ExportError, IncompleteCheckpointError
from export.savedmodel import export_run


def parse_args(argv):
    parser = argparse.ArgumentParser(prog="python -m export", description=__doc__.splitlines()[0])
    parser.add_argument("--run-dir", required=True, help="a training run directory (config.json, checkpoints/)")
    parser.add_argument("--output", required=True, help="the model base directory (MODEL_BASE)")
    parser.add_argument("--version", type=int, help="version directory (default: the next integer)")
    parser.add_argument("--checkpoint", choices=CHECKPOINT_KINDS, default="best",
                        help="best (falls back to latest when the run has no best yet) or latest")
    parser.add_argument("--nll-samples", type=int,
                        help="importance samples of log_prob (default: the run's nll_samples)")
    parser.add_argument("--nll-seed", type=int, default=0, help="the fixed seed of log_prob's samples")
    parser.add_argument("--xla", dest="jit_compile", action=argparse.BooleanOptionalAction,
                        help="compile the sampler with XLA (default: for music models, not for text)")
    parser.add_argument("--max-samples", type=int, default=1024,
                        help="the largest num_samples one sampling request may ask for (default 1024)")
    parser.add_argument("--buckets", type=int, nargs="+",
                        help="padded lengths the XLA sampler is compiled for (default: the training grid "
                        "16, 32, 48, ..., 256, 288, ..., max; see export.signatures.default_buckets)")
    return parser.parse_args(argv)


def main(argv=None) -> int:
    args = parse_args(sys.argv[1:] if argv is None else argv)
    options = dict(jit_compile=args.jit_compile, buckets=args.buckets, nll_seed=(args.nll_seed, 0),
                   max_samples=args.max_samples)
    if args.nll_samples is not None:
        options["nll_samples"] = args.nll_samples
    try:
        path = export_run(args.run_dir, args.output, version=args.version, checkpoint=args.checkpoint,
                          **options)
    except (FileNotFoundError, FileExistsError, ExportError, IncompleteCheckpointError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    print(path)
    return 0


if __name__ == "__main__":
    sys.exit(main())
