"""Rebuild the model of a training run (config.json + a checkpoint) for export."""

from __future__ import annotations

import dataclasses
import json
import pathlib

import tensorflow as tf

from tf_latentflow.training.checkpoints import (IncompleteCheckpointError, check_model_weights,
                                                checkpoint_objects)

__all__ = ["TrainedRun", "ExportError", "IncompleteCheckpointError", "load_run", "checkpoint_objects"]

CHECKPOINT_KINDS = ("best", "latest")


class ExportError(ValueError):
    """A request the exporter refuses (an unknown checkpoint kind, a bad version): the
    CLI reports it in one line; any other exception is a bug and keeps its traceback."""






@dataclasses.dataclass(frozen=True)
class TrainedRun:
    """A restored model with what the exporter needs from its run directory.

    model: LatentFlowVAE or LSTMBaseline with the checkpoint's weights.
    config: the run's config.json (resolved TrainConfig fields and model_config).
    vocabulary: text: id -> symbol; None for music.
    checkpoint: path of the restored checkpoint.
    """

    model: object
    config: dict
    vocabulary: tuple | None
    checkpoint: str

    @property
    def nll_samples(self) -> int:
        """The run's importance-sample count for the reported NLL (0: exact, the baseline)."""
        return 0 if self.config.get("model") == "lstm" else int(self.config.get("nll_samples", 50))


def build_from_config(config: dict):
    """An untrained model from a run's config.json (`model_config` = the model's get_config())."""
    from tf_latentflow.baseline import LSTMBaseline
    from tf_latentflow.model import LatentFlowVAE

    model_config = dict(config["model_config"])
    cls = LSTMBaseline if config.get("model") == "lstm" else LatentFlowVAE
    # The run's policy may have been mixed_float16 (a GPU run): the export computes in
    # float32 explicitly, whatever Keras's global policy in this process is.
    model_config["dtype"] = "float32"
    return cls.from_config(model_config)


def load_run(run_dir, checkpoint: str = "best") -> TrainedRun:
    """Restore the `best` (falling back to `latest`) or the `latest` checkpoint of a run.

    Raises FileNotFoundError when the run has no config.json or no checkpoint.
    """
    if checkpoint not in CHECKPOINT_KINDS:
        raise ExportError(f"checkpoint must be one of {CHECKPOINT_KINDS}, got {checkpoint!r}")
    run_dir = pathlib.Path(run_dir)
    config_path = run_dir / "config.json"
    if not config_path.is_file():
        raise FileNotFoundError(f"{config_path} not found: is {run_dir} a training run directory?")
    config = json.loads(config_path.read_text())
    order = ("best", "latest") if checkpoint == "best" else ("latest",)
    path = next((p for p in (tf.train.latest_checkpoint(str(run_dir / "checkpoints" / kind))
                             for kind in order) if p), None)
    if path is None:
        raise FileNotFoundError(f"no {' or '.join(order)} checkpoint under {run_dir / 'checkpoints'}")
    model = build_from_config(config)
    layout = check_model_weights(path, model)  # IncompleteCheckpointError listing the differences
    tf.train.Checkpoint(**checkpoint_objects(model, layout)).restore(
        path).expect_partial().assert_existing_objects_matched()
    vocabulary = tuple(config["vocabulary"]) if config.get("vocabulary") else None
    return TrainedRun(model=model, config=config, vocabulary=vocabulary, checkpoint=path)
