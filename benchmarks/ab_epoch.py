"""A before/after speed comparison of two commits in one session: `jsb_epoch.py` for each.

    python benchmarks/ab_epoch.py --base <rev> [--head <rev>|working tree] [--models ...]
                                  [--epochs 6] [--data-dir ../shared/data] [--out ...]

Checks out `--base` (and `--head`, default: this working tree) with `git worktree`
into a temporary directory and runs this tree's `benchmarks/jsb_epoch.py` once per
model and commit, base and head alternating model by model (so slow drift of the
machine hits both sides alike), each in a fresh process whose PYTHONPATH is that
commit's tree. Writes both rows and the ratios base / head (> 1: head is faster)
of the training pass (or, if the base does not record it, the whole epoch) and of
the first epoch (compiles), and the largest difference of the epochs' training and
validation losses between the two sides (same seed and batches: what a speed change
did to the results), to `benchmarks/results/jsb_epoch_ab.json`.

Meaningful only on an otherwise idle machine: stop (or SIGSTOP) other runs first.
"""

import argparse
import json
import os
import pathlib
import subprocess
import sys
import tempfile

HERE = pathlib.Path(__file__).resolve().parent
ROOT = HERE.parent


def git(*args, cwd=ROOT) -> str:
    return subprocess.run(["git", *args], cwd=cwd, check=True, capture_output=True, text=True).stdout.strip()


def run_side(tree: pathlib.Path, model: str, epochs: int, data_dir: str, out: pathlib.Path) -> dict:
    env = {**os.environ, "PYTHONPATH": str(tree), "TF_CPP_MIN_LOG_LEVEL": "2"}
    subprocess.run([sys.executable, str(HERE / "jsb_epoch.py"), "--models", model, "--epochs", str(epochs),
                    "--data-dir", data_dir, "--out", str(out)], cwd=tree, env=env, check=True)
    return json.loads(out.read_text())


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--base", required=True, help="the commit to compare against")
    parser.add_argument("--head", default=None, help="default: the working tree")
    parser.add_argument("--models", nargs="+", default=["af-af", "af-scf", "iaf-scf", "lstm"])
    parser.add_argument("--epochs", type=int, default=6)
    parser.add_argument("--data-dir", default=os.path.abspath(
        os.environ.get("LATENTFLOW_DATA_DIR", ROOT.parent / "shared" / "data")))
    parser.add_argument("--out", default=str(HERE / "results" / "jsb_epoch_ab.json"))
    args = parser.parse_args(argv)

    with tempfile.TemporaryDirectory() as tmp:
        tmp = pathlib.Path(tmp)
        trees = {}
        for side, rev in (("base", args.base), ("head", args.head)):
            if rev is None:
                trees[side] = (ROOT, "working tree at " + git("rev-parse", "HEAD")
                               + (" + changes" if git("status", "--porcelain", "--untracked-files=no") else ""))
                continue
            tree = tmp / side
            git("worktree", "add", "--detach", str(tree), rev)
            trees[side] = (tree, git("rev-parse", rev))
        try:
            rows, machine = {"base": {}, "head": {}}, None
            for model in args.models:
                for side in ("base", "head"):
                    result = run_side(trees[side][0], model, args.epochs, args.data_dir,
                                      tmp / f"{side}-{model}.json")
                    rows[side][model], machine = result["models"][model], result["machine"]
                    print(side, model, json.dumps(rows[side][model]), flush=True)
                write(args, trees, rows, machine)
        finally:
            for side, (tree, _) in trees.items():
                if tree != ROOT:
                    git("worktree", "remove", "--force", str(tree))


def write(args, trees, rows, machine):
    ratios = {}
    for model, head in rows["head"].items():
        base = rows["base"][model]
        key = "train_s" if base.get("train_s") and head.get("train_s") else "epoch_s"
        ratios[model] = {"measure": key, "base_over_head": round(base[key] / head[key], 3),
                         "first_epoch_base_over_head": round(base["first_epoch_s"] / head["first_epoch_s"], 3),
                         "steadiness": {"base": base["steadiness"], "head": head["steadiness"]}}
        if "train_loss_each" in base and "train_loss_each" in head:  # same seed, same batches
            ratios[model]["max_abs_loss_difference"] = {
                split: max(abs(a - b) for a, b in zip(base[f"{split}_loss_each"], head[f"{split}_loss_each"]))
                for split in ("train", "validation")}
    result = {"benchmark": "jsb_epoch_ab", "epochs": args.epochs,
              "base": trees["base"][1], "head": trees["head"][1], "machine": machine,
              "ratios": ratios, "rows": rows}
    out = pathlib.Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    main()
