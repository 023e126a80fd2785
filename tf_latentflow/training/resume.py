"""Whether a run directory may be resumed with the requested settings.

Re-running with the same output directory resumes the run saved there. Only the
settings in RESUMABLE_SETTINGS may change on resume (how long to train, where
things are, how to evaluate, on which devices); any other difference (model sizes,
optimizer, schedules, seed, data, precision) would silently mix two experiments in
one run directory and is refused with `ConfigMismatch`.
"""

from __future__ import annotations

import dataclasses
import json

from tf_latentflow.runs import RunDirectory
from tf_latentflow.training.config import TrainConfig, saved_value

__all__ = ["ConfigMismatch", "RESUMABLE_SETTINGS", "INHERITED_SETTINGS", "inherit_saved", "PATH_SETTINGS", "changed_settings", "check_resumable",
           "check_precision", "portable_config"]

RESUMABLE_SETTINGS = frozenset({"epochs", "min_learning_rate", "data_dir", "prepared_dir", "evaluate_only",
                                "eval_batch_size", "nll_samples", "nll_chunk_budget", "validation_nll_samples",
                                "max_eval_batches", "strategy", "jit_compile"})

# How a run's batches are made: a resumed run keeps its own unless they are given
# explicitly (a run trained before pooled batching resumes with its length buckets).
INHERITED_SETTINGS = ("batching", "length_grid_size")

# Where the run's files were on the machine that trained: not part of what the run is.
PATH_SETTINGS = frozenset({"output_dir", "data_dir", "prepared_dir"})


class ConfigMismatch(ValueError):
    """The output directory holds a run whose settings differ from the requested ones."""


def portable_config(config: TrainConfig) -> dict:
    """The run's settings without machine paths (config.json and results.json are published as is)."""
    return {k: v for k, v in json.loads(config.to_json()).items() if k not in PATH_SETTINGS}


def changed_settings(run: RunDirectory, config: TrainConfig) -> dict:
    """Settings that differ from the run directory's config.json: {name: (saved, now)}."""
    if not run.config_path.exists():
        return {}
    saved = run.read_config()
    now = json.loads(config.to_json())
    # A setting added after the run was saved counts as the value the code had then.
    saved = {key: saved_value(saved, key) for key in now}
    return {key: (saved[key], value) for key, value in now.items()
            if saved[key] != value and key not in PATH_SETTINGS}  # a moved run is the same run


def inherit_saved(config: TrainConfig, explicit=frozenset()) -> TrainConfig:
    """`config` with the INHERITED_SETTINGS of the checkpointed run in its output directory
    (the legacy value when its config.json predates a setting), except those in
    `explicit` (the settings the user gave); unchanged when there is no run to resume."""
    run = RunDirectory(config.output_dir)
    if not run.config_path.exists() or not run.has_checkpoint():
        return config
    saved = run.read_config()
    return dataclasses.replace(config, **{name: saved_value(saved, name) for name in INHERITED_SETTINGS
                                          if name not in explicit})


def check_resumable(run: RunDirectory, config: TrainConfig, log=print) -> None:
    """Refuse a run directory whose checkpointed run has different settings."""
    if not run.has_checkpoint():
        return  # nothing to resume: config.json is rewritten
    changed = changed_settings(run, config)
    blocking = {key: values for key, values in changed.items() if key not in RESUMABLE_SETTINGS}
    if blocking:
        raise ConfigMismatch(
            f"{run.path} holds a run with different settings: " + ", ".join(
                f"{key} {old!r} (saved) vs {new!r} (now)" for key, (old, new) in sorted(blocking.items()))
            + "; re-run with the saved settings to resume, or pass --force-new to delete that run "
              "and start over")
    if changed:  # e.g. more --epochs; the new values apply from the resumed epoch on
        log("resuming with changed settings: " + ", ".join(
            f"{key} {old!r} -> {new!r}" for key, (old, new) in sorted(changed.items())))


def check_precision(run: RunDirectory, config: TrainConfig, policy: str) -> None:
    """Refuse to resume a run in another precision than it was trained in (a mixed
    float16 run's checkpoints hold a loss-scale optimizer; its numbers another rounding)."""
    if not run.config_path.exists() or not run.has_checkpoint():
        return
    saved = run.read_config().get("precision_policy", "float32")
    if saved != policy:
        raise ConfigMismatch(
            f"{run.path} was trained with the {saved} policy and would resume with "
            f"{policy} (--mixed-precision {config.mixed_precision} on this machine); "
            f"resume it where it can run in {saved}, or pass --force-new to start over")
