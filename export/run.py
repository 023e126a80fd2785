"""Restore the model of a training run for export, through `tf_latentflow.runs` (the run
directory format; never the training code)."""

from __future__ import annotations

from tf_latentflow.runs import CHECKPOINT_KINDS, RunDirectory, TrainedRun
from tf_latentflow.runs.build import model_from_config
from tf_latentflow.runs.checkpoints import IncompleteCheckpointError, checkpoint_objects

__all__ = ["CHECKPOINT_KINDS", "TrainedRun", "ExportError", "IncompleteCheckpointError", "load_run",
           "build_from_config", "checkpoint_objects"]


class ExportError(ValueError):
    """A request the exporter refuses (an unknown checkpoint kind, a bad version): the
    CLI reports it in one line; any other exception is a bug and keeps its traceback."""


def build_from_config(config: dict):
    """An untrained float32 model from a run's config.json (whatever precision it trained in)."""
    return model_from_config(config, "float32")


def load_run(run_dir, checkpoint: str = "best") -> TrainedRun:
    """Restore the `best` (falling back to `latest`) or the `latest` checkpoint of a run,
    computing in float32. FileNotFoundError when the run has no config.json or no checkpoint."""
    if checkpoint not in CHECKPOINT_KINDS:
        raise ExportError(f"checkpoint must be one of {CHECKPOINT_KINDS}, got {checkpoint!r}")
    return RunDirectory(run_dir).load(checkpoint, policy="float32")
