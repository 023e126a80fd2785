"""A/B of the exported sampler: an older tree's export against this tree's, timed alternately in one process.

    python benchmarks/export_ab.py [--base HEAD | --base-tree DIR] [--models iaf-scf lstm]
                                   [--lengths 100 200] [--repeats 21] [--workdir DIR]
                                   [--out benchmarks/results/export_ab.json]

Each side exports the same untrained paper-size music models with its own code
(`benchmarks/export_speed.py`'s `export_paper_model` of that tree: maximum
length 256, XLA sampler, that tree's default buckets), in a subprocess whose
PYTHONPATH is that tree. The base tree is `git archive --base` unpacked under
the work directory (read-only for the repository), or --base-tree. Then one
fresh process loads every SavedModel (they need neither TFP nor this project)
and times `serving_default(num_samples=1, length=T)`: per model and length,
one warm-up call per side (XLA compiles then; reported as first_call_s), then
--repeats rounds of one call per side, the order alternating (base new, new
base, ...), so that a load varying over time hits both sides alike. Reported:
each side's median, the ratio of the medians (new / base) and the median of
the per-round ratios, plus export time and SavedModel size per side.
"""

from __future__ import annotations

import argparse
import json
import os
import pathlib
import platform
import statistics
import subprocess
import sys
import tempfile
import time

ROOT = pathlib.Path(__file__).resolve().parents[1]
EXPORT = ("import pathlib, sys, time; sys.path.insert(0, 'benchmarks'); "
          "from export_speed import export_paper_model; started = time.perf_counter(); "
          "export_paper_model(sys.argv[1], pathlib.Path(sys.argv[2]), True); "
          "print(time.perf_counter() - started)")


def unpack(rev: str, target: pathlib.Path) -> pathlib.Path:
    """`git archive rev` unpacked into target (no change to the repository or its work tree)."""
    if not (target / "export").is_dir():
        target.mkdir(parents=True, exist_ok=True)
        archive = subprocess.run(["git", "archive", rev], cwd=ROOT, check=True, capture_output=True).stdout
        subprocess.run(["tar", "-x", "-C", str(target)], input=archive, check=True)
    return target


def export(tree: pathlib.Path, name: str, path: pathlib.Path) -> dict:
    """Export `name` with the code of `tree` to `path` (reused when it exists)."""
    row = {"tree": str(tree)}
    if not (path / "saved_model.pb").is_file():
        env = dict(os.environ, PYTHONPATH=str(tree), TF_CPP_MIN_LOG_LEVEL="2")
        proc = subprocess.run([sys.executable, "-c", EXPORT, name, str(path)], cwd=tree, env=env,
                              capture_output=True, text=True)
        if proc.returncode != 0:
            raise RuntimeError(f"export of {name} with {tree} failed:\n{proc.stderr[-3000:]}")
        row["export_s"] = round(float(proc.stdout.strip().splitlines()[-1]), 1)
    row["saved_model_pb_mb"] = round((path / "saved_model.pb").stat().st_size / 1e6, 2)
    return row


def time_pairs(paths: dict, lengths, repeats: int) -> dict:
    """{model: {T<length>: ...}} timing the sides of paths[model] = {side: path} alternately."""
    import tensorflow as tf

    rows = {}
    for name, sides in paths.items():
        samplers = {side: tf.saved_model.load(str(p)).signatures["serving_default"] for side, p in sides.items()}
        rows[name] = {}
        for steps in lengths:
            def call(side, seed):
                out = samplers[side](num_samples=tf.constant(1), length=tf.constant(steps),
                                     seed=tf.constant(seed, tf.int64))
                x = out["sequences"].numpy()
                assert x.shape[:2] == (1, steps), x.shape

            row, times = {}, {side: [] for side in samplers}
            for side in samplers:
                started = time.perf_counter()
                call(side, 0)
                row[f"{side}_first_call_s"] = round(time.perf_counter() - started, 2)
            order = list(samplers)
            for r in range(repeats):
                for side in (order if r % 2 == 0 else order[::-1]):
                    started = time.perf_counter()
                    call(side, r + 1)
                    times[side].append(time.perf_counter() - started)
            for side in samplers:
                row[f"{side}_ms"] = round(1e3 * statistics.median(times[side]), 2)
            if {"base", "new"} <= set(samplers):
                row["ratio_new_over_base"] = round(row["new_ms"] / row["base_ms"], 3)
                row["median_round_ratio"] = round(statistics.median(
                    n / b for n, b in zip(times["new"], times["base"])), 3)
            rows[name][f"T{steps}"] = row
            print(name, f"T={steps}", json.dumps(row), flush=True)
    return rows


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--base", default="HEAD", help="git revision of the base side (default HEAD)")
    parser.add_argument("--base-tree", help="a directory holding the base code instead of --base")
    parser.add_argument("--models", nargs="+", default=["iaf-scf", "lstm"])
    parser.add_argument("--lengths", type=int, nargs="+", default=[100, 200])
    parser.add_argument("--repeats", type=int, default=21)
    parser.add_argument("--workdir", help="exports and the base tree (default: a temporary directory); "
                        "existing exports there are reused")
    parser.add_argument("--out", default=str(ROOT / "benchmarks" / "results" / "export_ab.json"))
    parser.add_argument("--time-only", help=argparse.SUPPRESS)  # internal: JSON {model: {side: path}}
    args = parser.parse_args()

    if args.time_only:
        print(json.dumps(time_pairs(json.loads(args.time_only), args.lengths, args.repeats)))
        return

    workdir = pathlib.Path(args.workdir or tempfile.mkdtemp(prefix="export_ab_"))
    base_tree = pathlib.Path(args.base_tree) if args.base_tree else unpack(args.base, workdir / "base_tree")
    trees = {"base": base_tree.resolve(), "new": ROOT}
    exports, paths = {}, {}
    for name in args.models:
        paths[name] = {}
        for side, tree in trees.items():
            path = workdir / side / name / "1"
            exports[f"{name}/{side}"] = export(tree, name, path)
            paths[name][side] = str(path)
            print(f"{name} {side}: {json.dumps(exports[f'{name}/{side}'])}", flush=True)

    load_before = os.getloadavg()
    proc = subprocess.run([sys.executable, __file__, "--time-only", json.dumps(paths), "--repeats",
                           str(args.repeats), "--lengths", *map(str, args.lengths)],
                          capture_output=True, text=True, env=dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2"))
    if proc.returncode != 0:
        raise RuntimeError(f"timing failed:\n{proc.stderr[-3000:]}")
    rows = json.loads(proc.stdout.strip().splitlines()[-1])

    import tensorflow as tf

    head = subprocess.run(["git", "rev-parse", "HEAD"], cwd=ROOT, capture_output=True, text=True).stdout.strip()
    changed = bool(subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=ROOT,
                                  capture_output=True, text=True).stdout.strip())
    result = {"benchmark": "export_ab",
              "config": {"dataset_sizes": "music (88 notes), paper sizes", "max_length": 256, "num_samples": 1,
                         "lengths": args.lengths, "repeats": args.repeats, "xla_sampler": True,
                         "weights": "untrained", "order": "alternating per round"},
              "sides": {"base": args.base_tree or f"git archive {args.base}",
                        "new": f"working tree at {head}" + (" + changes" if changed else "")},
              "machine": {"platform": platform.platform(), "cpus": os.cpu_count(), "tensorflow": tf.__version__,
                          "load_average_before": load_before, "load_average_after": os.getloadavg()},
              "exports": exports, "models": rows}
    pathlib.Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    pathlib.Path(args.out).write_text(json.dumps(result, indent=2) + "\n")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
