"""Seed summaries of finished runs: the tables of `results/README.md` from the runs' results.json.

For the runs of one dataset (files `<model>-seed<k>.json` as `results/<dataset>/` keeps
them, each a run's results.json with its config), per model:

    mean  = (1/n) sum_k NLL_k,   sd = sqrt(sum_k (NLL_k - mean)^2 / (n - 1))  (n >= 2),
    min   = min_k NLL_k,         difference = mean - paper

of the test NLL in the paper's units (nats per time step for music, bits per character
for text), with the paper's value (`tf_latentflow.paper`: tables 3 and 1), the mean wall
time of training, and the command that reproduces the runs' settings: every setting
that differs from the dataset's defaults (`config.default_config`), as the trainer's own
flags (those of the highest seed's run). Runs of one model whose settings differ beyond
the seed are reported, since a mean over them would not be a seed mean (a different
`epochs` only if the runs also trained different numbers of epochs: one stopped by hand
at the epoch the others were set to end at trained the same; the evaluation's batch size
and chunk budget only change which random draws the NLL's samples use, so they are not
a difference).

    python -m trainers.summary results/jsb
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import math
import pathlib
import re

from tf_latentflow.paper import PAPER_NLL, paper_nll  # noqa: F401 (PAPER_NLL: read here before)
from tf_latentflow.training.config import (DATASET_ALIASES, MUSIC_DATASETS, TEXT_DATASETS, TrainConfig,
                                           add_arguments, default_config)

# Settings that do not change what a run computes, left out of the command.
_PLACE_ONLY = {"output_dir", "data_dir", "prepared_dir", "evaluate_only", "strategy"}
_EVALUATION_DRAWS = {"eval_batch_size", "nll_chunk_budget"}
_SEED_FILE = re.compile(r"^(?P<model>.+)-seed(?P<seed>\d+)$")


@dataclasses.dataclass(frozen=True)
class SeedRow:
    """One model's runs over seeds."""

    model: str
    seeds: tuple[int, ...]
    test_nll: tuple[float, ...]
    mean: float
    sd: float | None
    minimum: float
    paper: float | None
    unit: str
    wall_minutes: float
    command: str
    differences: tuple[str, ...]  # settings besides the seed in which the runs differ

    @property
    def difference(self) -> float | None:
        return None if self.paper is None else self.mean - self.paper


def load_seed_runs(directory) -> dict[str, list[dict]]:
    """{model: [results.json, ...]} of the `<model>-seed<k>.json` files in `directory`,
    each list ordered by seed."""
    runs: dict[str, list[dict]] = {}
    for path in sorted(pathlib.Path(directory).glob("*.json")):
        match = _SEED_FILE.match(path.stem)
        if not match:
            continue
        record = json.loads(path.read_text())
        if "test" not in record or "config" not in record:
            continue
        runs.setdefault(match["model"], []).append(record)
    for records in runs.values():
        records.sort(key=lambda r: r["config"]["seed"])
    return runs


def _config(record: dict) -> TrainConfig:
    """The run's TrainConfig (a setting its code did not have yet takes its legacy value)."""
    return TrainConfig.from_json(json.dumps({"output_dir": "", **record["config"]}))


def _flags() -> dict[str, argparse.Action]:
    parser = argparse.ArgumentParser(add_help=False)
    add_arguments(parser, datasets=tuple(MUSIC_DATASETS) + tuple(TEXT_DATASETS), default_dataset="jsb_chorales")
    return {action.dest: action for action in parser._actions if action.option_strings}


def _flag(action: argparse.Action, value) -> str:
    name = action.option_strings[0]
    if isinstance(action, argparse.BooleanOptionalAction):
        return name if value else "--no-" + name[2:]
    if isinstance(value, (tuple, list)):
        return f"{name} {' '.join(str(v) for v in value)}"
    return f"{name} {value:g}" if isinstance(value, float) else f"{name} {value}"


def command(config: TrainConfig, run_name: str | None = None) -> str:
    """The trainer command that makes `config` (its seed included): the settings that
    differ from the dataset's defaults as flags; settings without a flag are named.

    `run_name` is the run's row (`af-af-affine` for `--model af-af --scalar-map affine`);
    the output directory is `runs/<dataset>/<run_name>-seed<k>`, `run_name` defaulting to the model."""
    defaults = default_config(config.dataset, config.model, config.output_dir)  # XLA: this platform's default
    flags = _flags()
    text = config.dataset in TEXT_DATASETS
    alias = {v: k for k, v in DATASET_ALIASES.items()}.get(config.dataset, config.dataset)
    parts = ["python -m trainers.text" if text else f"python -m trainers.music --dataset {alias}",
             f"--model {config.model}"]
    missing = []
    for field in dataclasses.fields(TrainConfig):
        name = field.name
        if name in _PLACE_ONLY or name in ("dataset", "model"):
            continue
        value, default = getattr(config, name), getattr(defaults, name)
        if value == default:
            continue
        if name in flags:
            parts.append(_flag(flags[name], value))
        else:
            missing.append(f"{name}={value}")
    parts += ["--data-dir ../shared/data",
              f"--output-dir runs/{config.dataset}/{run_name or config.model}-seed{config.seed}"]
    line = " ".join(parts)
    return line + (f"  (no flag: {', '.join(missing)})" if missing else "")


def seed_rows(directory) -> list[SeedRow]:
    """One `SeedRow` per model with seed runs in `directory`, in the order LSTM last."""
    rows = []
    for model, records in load_seed_runs(directory).items():
        configs = [_config(r) for r in records]
        nll = tuple(float(r["test"]["nll"]) for r in records)
        unit = records[0]["test"].get("unit", "")
        n = len(nll)
        mean = sum(nll) / n
        sd = math.sqrt(sum((x - mean) ** 2 for x in nll) / (n - 1)) if n > 1 else None
        first = dataclasses.asdict(configs[0])
        differences = sorted({k for c in configs[1:] for k, v in dataclasses.asdict(c).items()
                              if k not in _PLACE_ONLY | _EVALUATION_DRAWS | {"seed", "epochs"}
                              and v != first[k]})
        # A run stopped by hand at the epoch the others were set to end at trained the same.
        trained = {r.get("epochs_trained") for r in records}
        if len({c.epochs for c in configs}) > 1 and (None in trained or len(trained) > 1):
            differences.append("epochs")
        paper = paper_nll(configs[0].dataset, model)
        rows.append(SeedRow(model=model, seeds=tuple(c.seed for c in configs), test_nll=nll, mean=mean,
                            sd=sd, minimum=min(nll), paper=paper, unit=unit,
                            wall_minutes=sum(float(r.get("wall_seconds", 0.0)) for r in records) / n / 60,
                            command=command(configs[-1], model),
                            differences=tuple(differences)))
    rows.sort(key=lambda r: (r.model == "lstm", r.model))
    return rows


def markdown(rows: list[SeedRow]) -> str:
    """The rows as the Markdown table of `results/README.md` (commands below it)."""
    lines = ["| model | seeds | test NLL per seed | mean | sd | min | paper | mean - paper | "
             "training (min, mean) |",
             "|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        sd = "-" if r.sd is None else f"{r.sd:.3f}"
        paper = "-" if r.paper is None else f"{r.paper:.2f}"
        diff = "-" if r.difference is None else f"{r.difference:+.3f}"
        note = f" (differ: {', '.join(r.differences)})" if r.differences else ""
        lines.append(f"| {r.model}{note} | {', '.join(map(str, r.seeds))} | "
                     f"{', '.join(f'{x:.3f}' for x in r.test_nll)} | **{r.mean:.3f}** | {sd} | "
                     f"{r.minimum:.3f} | {paper} | {diff} | {r.wall_minutes:.0f} |")
    lines += ["", f"Test NLL in {rows[0].unit}." if rows else ""]
    lines += [f"- {r.model} (seed {r.seeds[-1]}; the others change `--seed` and `--output-dir`): `{r.command}`"
              for r in rows]
    return "\n".join(lines) + "\n"
