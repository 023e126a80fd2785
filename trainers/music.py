"""`python -m trainers.music`: not implemented yet (issue 5)."""

import sys


def main() -> int:
    print("trainers.music is not implemented yet (tracked in issue 5); "
          "the flow toolkit in tf_latentflow.bijectors is available.", file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main())
