"""The run directory: the one place that knows a run's files.

    RUN/config.json          the settings (TrainConfig's fields without machine paths),
                             `model_config` (the model's get_config()), `precision_policy`,
                             `num_replicas`, and `vocabulary` (text)
    RUN/checkpoints/latest/  tf.train.Checkpoint after every epoch (and on Ctrl-C)
    RUN/checkpoints/best/    the checkpoint with the best validation loss
    RUN/history.jsonl        one JSON record per epoch
    RUN/results.json         the evaluation of the best checkpoint
    RUN/tensorboard/         summaries

The trainer writes it, the exporter and the evaluation read it, the tests make
tiny ones through it. Under several workers only the chief writes it; the others
write the same files into a `scratch_run_directory` that they delete. `load` rebuilds a trained model from config.json and a
checkpoint without the training code (`build.model_from_config`, `checkpoints`).
"""

from __future__ import annotations

import dataclasses
import json
import os
import pathlib
import shutil
import tempfile

import tensorflow as tf

from tf_latentflow.runs import registry
from tf_latentflow.runs.build import model_from_config
from tf_latentflow.runs.checkpoints import check_model_weights, checkpoint_objects

__all__ = ["CHECKPOINT_KINDS", "RunDirectory", "TrainedRun", "atomic_write", "scratch_run_directory"]

# "best": the lowest validation -ELBO (the paper's selection); "best_nll": the lowest
# importance-sampled validation NLL (kept only with --validation-nll-samples).
CHECKPOINT_KINDS = ("best", "latest", "best_nll")
KEEP = {"latest": 2, "best": 1, "best_nll": 1}  # checkpoints kept per kind


def atomic_write(path: pathlib.Path, text: str) -> None:
    """Write `text` (and a newline) to `path` through a temporary file and a rename."""
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_text(text + "\n")
    os.replace(tmp, path)


def scratch_run_directory(label: str) -> "RunDirectory":
    """A new, empty run directory in the system's temporary directory, for a worker that
    is not the chief: it writes there what the chief writes into the run directory
    (checkpoint saving is a collective: every worker saves) and deletes it
    (TensorFlow's multi-worker guide, "write_filepath")."""
    return RunDirectory(tempfile.mkdtemp(prefix=f"latentflow-{label}-"))


@dataclasses.dataclass(frozen=True)
class TrainedRun:
    """A restored model with what a user of the run needs.

    model: the `SequenceModel` (LatentFlowVAE or LSTMBaseline) with the checkpoint's weights.
    config: the run's config.json.
    vocabulary: text: id -> symbol; None for music.
    checkpoint: path of the restored checkpoint.
    """

    model: object
    config: dict
    vocabulary: tuple | None
    checkpoint: str

    @property
    def nll_samples(self) -> int:
        """The run's importance-sample count for the reported NLL (0: exact)."""
        return 0 if self.model.exact_likelihood else int(self.config.get("nll_samples", 50))


@dataclasses.dataclass(frozen=True)
class RunDirectory:
    """The files of the run in `path` (module docstring)."""

    path: pathlib.Path

    def __init__(self, path):
        object.__setattr__(self, "path", pathlib.Path(path))

    # -- files ---------------------------------------------------------------------------

    @property
    def config_path(self) -> pathlib.Path:
        return self.path / "config.json"

    @property
    def history_path(self) -> pathlib.Path:
        return self.path / "history.jsonl"

    @property
    def results_path(self) -> pathlib.Path:
        return self.path / "results.json"

    @property
    def tensorboard_dir(self) -> pathlib.Path:
        return self.path / "tensorboard"

    def checkpoint_dir(self, kind: str) -> pathlib.Path:
        if kind not in CHECKPOINT_KINDS:
            raise ValueError(f"checkpoint kind must be one of {CHECKPOINT_KINDS}, got {kind!r}")
        return self.path / "checkpoints" / kind

    def latest_checkpoint(self, kind: str) -> str | None:
        """The newest checkpoint of `kind` (`CHECKPOINT_KINDS`), None when there is none."""
        return tf.train.latest_checkpoint(str(self.checkpoint_dir(kind)))

    def checkpoint_manager(self, checkpoint: tf.train.Checkpoint, kind: str) -> tf.train.CheckpointManager:
        return tf.train.CheckpointManager(checkpoint, self.checkpoint_dir(kind), max_to_keep=KEEP[kind])

    def has_checkpoint(self) -> bool:
        """Whether a run was checkpointed here (something to resume)."""
        return self.latest_checkpoint("latest") is not None

    def clear(self) -> None:
        """Delete the run's files (checkpoints, summaries, config, history, results)."""
        for name in ("checkpoints", "tensorboard"):
            shutil.rmtree(self.path / name, ignore_errors=True)
        for path in (self.config_path, self.history_path, self.results_path):
            path.unlink(missing_ok=True)

    # -- config.json ---------------------------------------------------------------------

    def read_config(self) -> dict:
        if not self.config_path.is_file():
            raise FileNotFoundError(f"{self.config_path} not found: is {self.path} a training run "
                                    f"directory?")
        return json.loads(self.config_path.read_text())

    def write_config(self, settings: dict, model, *, precision_policy: str = "float32",
                     num_replicas: int = 1, vocabulary=None) -> dict:
        """Write config.json: `settings` (the run's portable settings, with "model" and
        "dataset"), the model's get_config(), the precision, the replica count and the
        vocabulary (text). Returns what was written."""
        registry.model_entry(settings["model"])
        resolved = dict(settings, model_config=model.get_config(), precision_policy=precision_policy,
                        num_replicas=int(num_replicas))
        if vocabulary is not None:
            resolved["vocabulary"] = list(vocabulary)
        self.path.mkdir(parents=True, exist_ok=True)
        atomic_write(self.config_path, json.dumps(resolved, indent=2, default=str))
        return resolved

    # -- history and results -------------------------------------------------------------

    def append_history(self, record: dict) -> None:
        with open(self.history_path, "a") as f:
            f.write(json.dumps(record) + "\n")

    def keep_history(self, epochs: int) -> None:
        """Drop the history records of epochs >= `epochs` (0-based "epoch"): the records of
        epochs that a resume from a checkpoint after `epochs` epochs trains again. The
        trainer appends an epoch's record before it saves the epoch's checkpoint, so a
        process killed between the two leaves one such record."""
        records = self.read_history()
        kept = [r for r in records if int(r["epoch"]) < epochs]
        if not kept and records:
            self.history_path.unlink()
        elif len(kept) < len(records):
            atomic_write(self.history_path, "\n".join(json.dumps(r) for r in kept))  # + a final newline

    def read_history(self) -> list[dict]:
        if not self.history_path.exists():
            return []
        return [json.loads(line) for line in self.history_path.read_text().splitlines() if line.strip()]

    def write_results(self, results: dict) -> None:
        atomic_write(self.results_path, json.dumps(results, indent=2))

    def read_results(self) -> dict:
        return json.loads(self.results_path.read_text())

    # -- the trained model ---------------------------------------------------------------

    def load(self, checkpoint: str = "best", policy: str = "float32") -> TrainedRun:
        """The model restored from the `best` (falling back to `latest`), the `latest` or the
        `best_nll` checkpoint, computing in `policy`. FileNotFoundError without config.json or a
        checkpoint; `checkpoints.IncompleteCheckpointError` when the checkpoint does not
        match the model weight for weight."""
        if checkpoint not in CHECKPOINT_KINDS:
            raise ValueError(f"checkpoint must be one of {CHECKPOINT_KINDS}, got {checkpoint!r}")
        config = self.read_config()
        order = ("best", "latest") if checkpoint == "best" else (checkpoint,)
        path = next((p for p in map(self.latest_checkpoint, order) if p), None)
        if path is None:
            raise FileNotFoundError(f"no {' or '.join(order)} checkpoint under {self.path / 'checkpoints'}")
        model = model_from_config(config, policy)
        layout = check_model_weights(path, model)  # lists every difference
        tf.train.Checkpoint(**checkpoint_objects(model, layout)).restore(
            path).expect_partial().assert_existing_objects_matched()
        vocabulary = tuple(config["vocabulary"]) if config.get("vocabulary") else None
        return TrainedRun(model=model, config=config, vocabulary=vocabulary, checkpoint=path)
