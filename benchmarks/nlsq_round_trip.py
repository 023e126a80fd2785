"""NLSq accuracy and speed: round-trip errors and forward/inverse throughput.

    python benchmarks/nlsq_round_trip.py [--n 1000000] [--out benchmarks/results/nlsq_round_trip.json]

Round trips x -> forward -> tf.identity -> inverse (the identity defeats the
bijector cache) for float32 and float64, with raw parameters from
`NLSq.from_unconstrained` in [-3, 3] (well conditioned) and [-10, 10]
(extreme), inputs in [-100, 100] and [-1e3, 1e3]. Reports the maximum and
99.9th-percentile error |x' - x| / max(1, |x|), and the time per element of the
forward formula and of the float64 cubic inverse under XLA.
"""

import argparse
import json
import pathlib
import time

import numpy as np
import tensorflow as tf

from tf_latentflow.bijectors import NLSq


def round_trip_errors(n, dtype, raw_limit, x_limit, seed):
    rng = np.random.default_rng(seed)
    raw = rng.uniform(-raw_limit, raw_limit, size=(n, 5)).astype(dtype)
    x = rng.uniform(-x_limit, x_limit, size=n).astype(dtype)
    bij = NLSq.from_unconstrained(raw)
    x_back = bij.inverse(tf.identity(bij.forward(x))).numpy()
    rel = np.abs(x_back.astype(np.float64) - x) / np.maximum(1.0, np.abs(x.astype(np.float64)))
    return {"max": float(rel.max()), "p99.9": float(np.quantile(rel, 0.999)),
            "finite": bool(np.all(np.isfinite(x_back)))}


def time_per_element(fn, *args, repeats=5):
    fn(*args)  # compile
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        fn(*args).numpy()
        best = min(best, time.perf_counter() - start)
    return best / int(args[-1].shape[0])


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=1_000_000)
    parser.add_argument("--out", default=str(pathlib.Path(__file__).parent / "results" / "nlsq_round_trip.json"))
    args = parser.parse_args()

    errors = {}
    for dtype in (np.float32, np.float64):
        for label, raw_limit, x_limit in (("well_conditioned", 3.0, 100.0), ("extreme", 10.0, 1e3)):
            key = f"{np.dtype(dtype).name}/{label}"
            errors[key] = round_trip_errors(args.n, dtype, raw_limit, x_limit, seed=0)
            print(f"{key:28s} max {errors[key]['max']:.3e}  p99.9 {errors[key]['p99.9']:.3e}", flush=True)

    rng = np.random.default_rng(1)
    raw = tf.constant(rng.normal(size=(args.n, 5)).astype(np.float32))
    x = tf.constant(rng.normal(size=args.n).astype(np.float32))
    forward = tf.function(lambda r, v: NLSq.from_unconstrained(r).forward(v), jit_compile=True)
    inverse = tf.function(lambda r, v: NLSq.from_unconstrained(r).inverse(v), jit_compile=True)
    timing = {"forward_ns_per_element": 1e9 * time_per_element(forward, raw, x),
              "inverse_ns_per_element": 1e9 * time_per_element(inverse, raw, x)}
    print(json.dumps(timing))
    result = {"benchmark": "nlsq_round_trip", "n": args.n, "errors": errors, "timing_float32_xla": timing}
    pathlib.Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    pathlib.Path(args.out).write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    main()
