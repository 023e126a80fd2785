"""A/B of the exported `log_prob` signature: peak memory and time of one request, an older tree's export against this tree's.

    python benchmarks/export_log_prob.py [--base HEAD | --base-tree DIR] [--model af-scf]
                                         [--requests 16x100 4x1000] [--repeats 2]
                                         [--max-length 1500] [--workdir DIR]
                                         [--out benchmarks/results/export_log_prob.json]

Each side exports the same untrained paper-size music model (the JSB settings of
`training.config.default_config`: H=50, BiLSTMs 2x500, 5 flow layers, ...) with
its own code, a length model of maximum length --max-length (Nottingham's
longest piece has 1,495 steps) and the paper's 50 importance samples, the plain-graph
sampler (the sampler is not measured). Then every (side, request, repeat) is
one fresh process that loads the SavedModel and calls `log_prob` once on a
request "NxT" (N random piano rolls, all of length T, fixed numpy seed) and
reports the call's wall time and the process's peak resident memory
(`ru_maxrss`) before and after the call; the sides alternate order between
repeats. Peak memory is the measure here (it does not depend on other load);
the times are medians of --repeats and, unless the machine is idle, carry the
other load's noise (both sides alike, alternating).
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

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent))

from export_ab import unpack  # noqa: E402

ROOT = pathlib.Path(__file__).resolve().parents[1]
EXPORT = """
import pathlib, sys, keras
from export.savedmodel import export_model
from tf_latentflow.layers import LengthModel
from tf_latentflow.runs import build_model
from tf_latentflow.training.config import default_config
keras.utils.set_random_seed(0)
name, path, max_length = sys.argv[1], pathlib.Path(sys.argv[2]), int(sys.argv[3])
config = default_config("jsb", name, str(path))
model = build_model(config.model_settings, LengthModel(max_length, name="length_model"), None)
export_model(model, path, nll_samples=50, jit_compile=False)
"""
CALL = """
import json, resource, sys, time
import numpy as np, tensorflow as tf
path, batch, steps = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
log_prob = tf.saved_model.load(path).signatures["log_prob"]
rng = np.random.default_rng(0)
x = tf.constant((rng.random((batch, steps, 88)) < 0.1).astype(np.int32))
lengths = tf.constant(np.full(batch, steps, np.int32))
before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
started = time.perf_counter()
nll = log_prob(sequences=x, lengths=lengths)["nll"].numpy()
seconds = time.perf_counter() - started
after = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
print(json.dumps({"seconds": seconds, "rss_before_mib": before / 1024, "rss_peak_mib": after / 1024,
                  "finite": bool(np.all(np.isfinite(nll)))}))
"""


def run(code: str, *args, tree=None) -> str:
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2")
    if tree is not None:
        env["PYTHONPATH"] = str(tree)
    proc = subprocess.run([sys.executable, "-c", code, *map(str, args)], cwd=tree or ROOT, env=env,
                          capture_output=True, text=True)
    if proc.returncode != 0:
        raise RuntimeError(f"{code.strip().splitlines()[-1]} failed:\n{proc.stderr[-3000:]}")
    return proc.stdout.strip().splitlines()[-1] if proc.stdout.strip() else ""


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--base", default="HEAD", help="git revision of the base side (default HEAD)")
    parser.add_argument("--base-tree", help="a directory holding the base code instead of --base")
    parser.add_argument("--model", default="af-scf")
    parser.add_argument("--requests", nargs="+", default=["16x100", "4x1000"],
                        help="requests NxT: N sequences of T steps each")
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--max-length", type=int, default=1500)
    parser.add_argument("--workdir", help="exports and the base tree (default: a temporary directory); "
                        "existing exports there are reused")
    parser.add_argument("--out", default=str(ROOT / "benchmarks" / "results" / "export_log_prob.json"))
    args = parser.parse_args()

    workdir = pathlib.Path(args.workdir or tempfile.mkdtemp(prefix="export_log_prob_"))
    base_tree = pathlib.Path(args.base_tree) if args.base_tree else unpack(args.base, workdir / "base_tree")
    trees = {"base": base_tree.resolve(), "new": ROOT}
    paths = {}
    for side, tree in trees.items():
        paths[side] = workdir / side / args.model / "1"
        if not (paths[side] / "saved_model.pb").is_file():
            run(EXPORT, args.model, paths[side], args.max_length, tree=tree)
        print(f"exported {side}: {paths[side]}", flush=True)

    load_before = os.getloadavg()
    rows = {}
    for request in args.requests:
        batch, steps = (int(v) for v in request.split("x"))
        calls = {side: [] for side in trees}
        for r in range(args.repeats):
            for side in (list(trees) if r % 2 == 0 else list(trees)[::-1]):
                calls[side].append(json.loads(run(CALL, paths[side], batch, steps)))
                print(request, side, json.dumps(calls[side][-1]), flush=True)
        row = {}
        for side, results in calls.items():
            row[side] = {"seconds_median": round(statistics.median(c["seconds"] for c in results), 2),
                         "rss_peak_mib_max": round(max(c["rss_peak_mib"] for c in results)),
                         "rss_before_call_mib": round(max(c["rss_before_mib"] for c in results)),
                         "finite": all(c["finite"] for c in results), "calls": results}
        row["time_ratio_new_over_base"] = round(row["new"]["seconds_median"] / row["base"]["seconds_median"], 3)
        row["peak_rss_ratio_new_over_base"] = round(
            row["new"]["rss_peak_mib_max"] / row["base"]["rss_peak_mib_max"], 3)
        rows[request] = row

    import tensorflow as tf

    head = subprocess.run(["git", "rev-parse", "HEAD"], cwd=ROOT, capture_output=True, text=True).stdout.strip()
    dirty = bool(subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=ROOT,
                                capture_output=True, text=True).stdout.strip())
    result = {
        "benchmark": "export_log_prob",
        "config": {"model": args.model, "sizes": "paper music sizes (JSB defaults), untrained",
                   "nll_samples": 50, "max_length": args.max_length, "requests": args.requests,
                   "repeats": args.repeats, "base": args.base_tree or args.base,
                   "new": head + (" + uncommitted changes" if dirty else "")},
        "machine": {"platform": platform.platform(), "cpus": os.cpu_count(), "tensorflow": tf.__version__,
                    "load_average_before": [round(v, 2) for v in load_before],
                    "load_average_after": [round(v, 2) for v in os.getloadavg()]},
        "requests": rows,
    }
    pathlib.Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    pathlib.Path(args.out).write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps({k: {kk: v for kk, v in row.items() if kk not in ("base", "new")}
                      for k, row in rows.items()}, indent=2))


if __name__ == "__main__":
    main()
