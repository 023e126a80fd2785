"""How long releasing an epoch's training iterator takes, at two commits, in one run.

    python benchmarks/iterator_release.py --base <rev> [--head <rev>|working tree]
        [--dataset jsb] [--epochs 4] [--steps 47] [--step-seconds 1.0]
        [--data-dir ../shared/data] [--out benchmarks/results/iterator_release.json]

The trainer makes a new training iterator every epoch and drops it at the epoch's
end. For each commit (`git worktree`, a fresh process with that tree on
PYTHONPATH), this builds the trainer's training pipeline
(`tf_latentflow.training.inputs.batches`, the dataset's defaults for AF/SCF),
reads `--steps` batches per epoch with a sleep of `--step-seconds` after each (in
place of the training step: a sleep keeps the CPU free, so what is measured is
waiting, and the script can run beside other work), then times releasing the
iterator. Before autotuning was turned off (`tf_latentflow.data.pipeline`), a JSB
iterator read for 47 s took ~35 s to release in every other epoch: the release
waits for the autotuning thread's current sleep. Writes per epoch (read seconds,
release seconds) for both sides and the ratio of the total release times.
"""

import argparse
import json
import os
import pathlib
import platform
import subprocess
import sys
import tempfile
import time

HERE = pathlib.Path(__file__).resolve().parent
ROOT = HERE.parent


def measure(dataset: str, epochs: int, steps: int, step_seconds: float, data_dir: str) -> list[dict]:
    """[{read_s, release_s, batches}] per epoch for the trainer's training pipeline of `dataset`."""
    from tf_latentflow.training import inputs
    from tf_latentflow.training.config import default_config

    config = default_config(dataset, "af-scf", os.path.join(tempfile.gettempdir(), "iterator_release"),
                            data_dir=data_dir)
    bundle = inputs.load_data(config)
    rows = []
    for epoch in range(epochs):
        started = time.perf_counter()
        iterator = iter(inputs.batches(config, bundle, "train", epoch=epoch))
        read = 0
        for _ in range(steps):
            if next(iterator, None) is None:
                break
            read += 1
            time.sleep(step_seconds)
        released = time.perf_counter()
        del iterator
        rows.append({"batches": read, "read_s": round(released - started, 3),
                     "release_s": round(time.perf_counter() - released, 3)})
    return rows


def git(*args) -> str:
    return subprocess.run(["git", *args], cwd=ROOT, check=True, capture_output=True, text=True).stdout.strip()


def run_side(tree: pathlib.Path, args) -> list[dict]:
    env = {**os.environ, "PYTHONPATH": str(tree), "TF_CPP_MIN_LOG_LEVEL": "2"}
    done = subprocess.run([sys.executable, str(HERE / "iterator_release.py"), "--worker",
                           "--dataset", args.dataset, "--epochs", str(args.epochs), "--steps", str(args.steps),
                           "--step-seconds", str(args.step_seconds), "--data-dir", args.data_dir],
                          cwd=tree, env=env, check=True, capture_output=True, text=True)
    return json.loads(done.stdout.strip().splitlines()[-1])


def summary(rows: list[dict]) -> dict:
    release = [r["release_s"] for r in rows]
    return {"release_total_s": round(sum(release), 3), "release_max_s": max(release),
            "epochs_over_1s": sum(r > 1.0 for r in release)}


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--base", help="the commit to compare against (needed unless --worker)")
    parser.add_argument("--head", default=None, help="default: the working tree")
    parser.add_argument("--dataset", default="jsb")
    parser.add_argument("--epochs", type=int, default=4)
    parser.add_argument("--steps", type=int, default=47)
    parser.add_argument("--step-seconds", type=float, default=1.0)
    parser.add_argument("--data-dir", default=os.path.abspath(
        os.environ.get("LATENTFLOW_DATA_DIR", ROOT.parent / "shared" / "data")))
    parser.add_argument("--out", default=str(HERE / "results" / "iterator_release.json"))
    parser.add_argument("--worker", action="store_true", help="measure this process's tree, print JSON")
    args = parser.parse_args(argv)
    if args.worker:
        print(json.dumps(measure(args.dataset, args.epochs, args.steps, args.step_seconds, args.data_dir)))
        return None
    if not args.base:
        parser.error("--base is required")

    import tensorflow as tf

    with tempfile.TemporaryDirectory() as tmp:
        trees = {}
        try:
            for side, rev in (("base", args.base), ("head", args.head)):
                if rev is None:
                    dirty = git("status", "--porcelain", "--untracked-files=no")
                    trees[side] = (ROOT, git("rev-parse", "HEAD") + (" + changes" if dirty else ""))
                    continue
                tree = pathlib.Path(tmp) / side
                git("worktree", "add", "--detach", str(tree), rev)
                trees[side] = (tree, git("rev-parse", rev))
            rows = {side: run_side(tree, args) for side, (tree, _) in trees.items()}
        finally:
            for tree, _ in trees.values():
                if tree != ROOT:
                    git("worktree", "remove", "--force", str(tree))
    sums = {side: summary(r) for side, r in rows.items()}
    head_total = sums["head"]["release_total_s"]
    result = {"benchmark": "iterator_release", "dataset": args.dataset, "epochs": args.epochs,
              "steps": args.steps, "step_seconds": args.step_seconds,
              "base": trees["base"][1], "head": trees["head"][1],
              "machine": {"platform": platform.platform(), "cpus": os.cpu_count(), "tensorflow": tf.__version__},
              "summary": sums,
              "release_base_over_head": None if head_total <= 0 else round(sums["base"]["release_total_s"] / head_total, 1),
              "rows": rows}
    out = pathlib.Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps({"summary": sums, "release_base_over_head": result["release_base_over_head"]}))
    return result


if __name__ == "__main__":
    main()
