"""Two trained runs of one model and seed, side by side epoch by epoch: did the batching change the result?

    python benchmarks/batching_runs.py results/experiments/jsb/af-scf-pooled-seed0 \
        results/jsb/af-scf-seed0 [--seeds results/jsb/af-scf-seed1 results/jsb/af-scf-seed2] \
        [--out benchmarks/results/jsb_pooled_vs_bucketed.json]

Each RUN is a results file stem (RUN.json and RUN.history.jsonl, as `trainers.reproduce`
harvests them). The JSON holds, per run, its batching, epochs, best epoch and test NLL, and
per epoch both runs' training and validation -ELBO (nats per step) and training pass
seconds. `--seeds` adds the test NLLs of further seeds of the second run's setting: the
spread the first run is read against (`against_seed_spread`: below, within or above their
range; their mean and sd).

The two runs draw their batches in a different order from the same seed, so their
trajectories are two samples of one training distribution, not the same path: compare
them to the seeds' spread, not to each other's noise.
"""

from __future__ import annotations

import argparse
import json
import pathlib
import statistics


def load(stem: str) -> tuple[dict, list[dict]]:
    """(results.json, history rows) of a harvested run `stem`."""
    stem = pathlib.Path(stem)
    results = json.loads(stem.with_name(stem.name + ".json").read_text())
    history = [json.loads(line) for line in
               stem.with_name(stem.name + ".history.jsonl").read_text().splitlines() if line.strip()]
    return results, history


def describe(stem: str, results: dict, history: list[dict]) -> dict:
    config = results["config"]
    return {"run": str(stem), "batching": config.get("batching", "bucketed"),
            "length_grid_size": config.get("length_grid_size"),
            "epochs": len(history), "best_epoch": results["best_epoch"],
            "test_nll": results["test"]["nll"], "validation_nll": results["validation"]["nll"],
            "train_seconds_median": statistics.median(h["train_seconds"] for h in history[1:])
            if len(history) > 1 and all("train_seconds" in h for h in history[1:]) else None}


def compare(new: str, old: str, seeds: list[str]) -> dict:
    (new_results, new_history), (old_results, old_history) = load(new), load(old)
    epochs = []
    for i in range(max(len(new_history), len(old_history))):
        row = {"epoch": i}
        for name, history in (("new", new_history), ("old", old_history)):
            if i < len(history):
                row[f"{name}_train_loss"] = history[i]["train_loss"]
                row[f"{name}_validation_loss"] = history[i]["validation_loss"]
                row[f"{name}_learning_rate"] = history[i].get("learning_rate")
        epochs.append(row)
    shared = [r for r in epochs if "new_validation_loss" in r and "old_validation_loss" in r]
    seed_nlls = [old_results["test"]["nll"]] + [load(s)[0]["test"]["nll"] for s in seeds]
    new_nll = new_results["test"]["nll"]
    return {"benchmark": "batching_runs", "new": describe(new, new_results, new_history),
            "old": describe(old, old_results, old_history),
            "seed_test_nlls": seed_nlls, "seed_range": [min(seed_nlls), max(seed_nlls)],
            "within_seed_spread": min(seed_nlls) <= new_nll <= max(seed_nlls),
            "against_seed_spread": ("below" if new_nll < min(seed_nlls) else
                                    "above" if new_nll > max(seed_nlls) else "within"),
            "seed_mean": statistics.mean(seed_nlls),
            "seed_sd": statistics.stdev(seed_nlls) if len(seed_nlls) > 1 else None,
            "validation_loss_mean_abs_difference": round(statistics.mean(
                abs(r["new_validation_loss"] - r["old_validation_loss"]) for r in shared), 4) if shared else None,
            "epochs_compared": len(shared), "epochs_each": epochs}


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("new", help="results stem of the run with the new setting")
    parser.add_argument("old", help="results stem of the committed run of the same model and seed")
    parser.add_argument("--seeds", nargs="*", default=[], help="further seeds of the old setting")
    parser.add_argument("--out", default=str(pathlib.Path(__file__).parent / "results"
                                             / "jsb_pooled_vs_bucketed.json"))
    args = parser.parse_args(argv)
    result = compare(args.new, args.old, args.seeds)
    pathlib.Path(args.out).write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps({k: v for k, v in result.items() if k != "epochs_each"}, indent=2))
    return result


if __name__ == "__main__":
    main()
