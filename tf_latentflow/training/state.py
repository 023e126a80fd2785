"""The state a run checkpoints, and saving and restoring it.

A training checkpoint holds the model (every weight keyed by its path,
`runs.checkpoints`), the optimizer, the dropout RNG states (`SeedStates`), the loop's
`TrainState` (epoch, global step, best validation loss, plateau count, learning rate,
wall time), the position inside an epoch (`EpochPosition`, non-zero only on Ctrl-C)
with the statistics of the epoch's steps so far (`EpochStatisticsState`), with
gradient accumulation the gradients accumulated so far (`GradientAccumulator`) and,
with `--validation-nll-samples`, the lowest validation NLL so far (`NllSelection`).
All randomness derives from (seed, epoch, global step), so a restored run continues
as if it had never stopped. `Checkpoints` owns the managers
of the run directory (`latest` after every epoch, `best` when the validation -ELBO
improves, `best_nll` when the importance-sampled validation NLL does).
"""

from __future__ import annotations

import math

import tensorflow as tf

from tf_latentflow.runs import RunDirectory
from tf_latentflow.runs.checkpoints import (check_model_weights, checkpoint_objects, optimizer_objects,
                                            weights_by_path)
from tf_latentflow.training.step_statistics import EpochStatisticsState

__all__ = ["TrainState", "EpochPosition", "NllSelection", "SeedStates", "GradientAccumulator",
           "Checkpoints", "reset_optimizer_state"]


class TrainState(tf.Module):
    """The loop's own state, checkpointed with the model and optimizer."""

    def __init__(self, learning_rate: float):
        super().__init__(name="train_state")
        self.epoch = tf.Variable(0, dtype=tf.int64, trainable=False, name="epoch")
        self.global_step = tf.Variable(0, dtype=tf.int64, trainable=False, name="global_step")
        self.best_validation = tf.Variable(math.inf, dtype=tf.float64, trainable=False,
                                           name="best_validation")
        self.bad_epochs = tf.Variable(0, dtype=tf.int64, trainable=False, name="bad_epochs")
        self.learning_rate = tf.Variable(learning_rate, dtype=tf.float64, trainable=False,
                                         name="learning_rate")
        self.wall_seconds = tf.Variable(0.0, dtype=tf.float64, trainable=False, name="wall_seconds")


class EpochPosition(tf.Module):
    """Within an epoch (non-zero only in a checkpoint saved on Ctrl-C): the steps done and
    the sums of their (loss, kl), so that a resumed epoch continues where it stopped.
    Checkpointed as its own object ("position"): checkpoints from before it existed are
    epoch boundaries and still restore."""

    def __init__(self):
        super().__init__(name="epoch_position")
        self.epoch_step = tf.Variable(0, dtype=tf.int64, trainable=False, name="epoch_step")
        self.epoch_sums = tf.Variable([0.0, 0.0], dtype=tf.float64, trainable=False, name="epoch_sums")

    def reset(self):
        self.epoch_step.assign(0)
        self.epoch_sums.assign([0.0, 0.0])


class NllSelection(tf.Module):
    """The lowest per-epoch importance-sampled validation NLL so far (`--validation-nll-samples`),
    the criterion of the `best_nll` checkpoint. Checkpointed as its own object
    ("nll_selection"): a checkpoint without it (saved before it existed) restores with +inf,
    so the next NLL measured starts the selection."""

    def __init__(self):
        super().__init__(name="nll_selection")
        self.best = tf.Variable(math.inf, dtype=tf.float64, trainable=False, name="best_validation_nll")

    def update(self, nll: float) -> bool:
        """Record `nll`; whether it is a new lowest (strictly lower than every earlier one)."""
        if nll < float(self.best.numpy()):
            self.best.assign(nll)
            return True
        return False


class SeedStates(tf.Module):
    """The model's Keras seed-generator states (dropout RNG), which tf.train.Checkpoint
    does not reach through the Keras layers; checkpointing them makes a resumed run
    draw the same dropout masks as an uninterrupted one."""

    def __init__(self, model):
        super().__init__(name="seed_states")
        self.states = {f"s{i}": v for i, v in enumerate(
            v for v in model.non_trainable_variables if "seed_generator" in v.path)}

    def snapshot(self) -> dict:
        return {k: v.numpy() for k, v in self.states.items()}

    def restore(self, snapshot: dict) -> None:
        for key, value in snapshot.items():
            self.states[key].assign(value)


class GradientAccumulator(tf.Module):
    """The running sum of the gradients of an accumulation group (`--grad-accum`), one
    variable per trainable weight, keyed by the weight's path below the model.

    Replica-local (`ON_READ` / `SUM`): each replica adds its own share of each batch's
    gradient; the group's update then clips and sums the replicas' shares as a single
    batch's gradients are. It is part of the training checkpoint, so a run interrupted
    inside a group resumes with the gradients accumulated so far (a restore over several
    replicas gives each replica sum / replicas: the same total).
    """

    def __init__(self, model):
        super().__init__(name="gradient_accumulator")
        paths = {id(w): path for path, w in weights_by_path(model).items()}
        self.sums = {paths[id(w)]: tf.Variable(
            tf.zeros(w.shape, w.dtype), trainable=False, name="grad_sum",
            synchronization=tf.VariableSynchronization.ON_READ,
            aggregation=tf.VariableAggregation.SUM) for w in model.trainable_variables}
        self.ordered = [self.sums[paths[id(w)]] for w in model.trainable_variables]


def reset_optimizer_state(optimizer):
    """Zero the step count and the slot variables (Adam's moments) but keep the learning rate.

    The optimizer then continues as a newly made one at its current learning rate,
    bias correction included: what the reference trainer does at each decay
    (`optimizer = get_optimizer(..., lr)`). A loss-scale optimizer keeps its scale.
    """
    inner = getattr(optimizer, "inner_optimizer", optimizer)
    for variable in inner.variables:
        if variable.name != "learning_rate":
            variable.assign(tf.zeros(variable.shape, variable.dtype))


class Checkpoints:
    """The run's checkpointed objects and its `latest`, `best` and `best_nll` checkpoint managers."""

    def __init__(self, run: RunDirectory, model, optimizer, state: TrainState, position: EpochPosition,
                 accumulator: GradientAccumulator | None, log=print, *, read_from: RunDirectory | None = None):
        """run: where this process writes its checkpoints; read_from: the run directory it
        restores and evaluates from (default `run`). Under several workers only the chief
        writes the run directory: the others save into a temporary one (saving is a
        collective, every worker must save) and read the chief's (`cluster`)."""
        self.model, self.optimizer, self.state, self.position = model, optimizer, state, position
        self.accumulator, self.log, self.run = accumulator, log, run
        self.read_from = run if read_from is None else read_from
        self.rng = SeedStates(model)
        self.nll_selection = NllSelection()
        self.statistics = EpochStatisticsState()
        self.parts = dict(**checkpoint_objects(model), **optimizer_objects(optimizer), state=state,
                          rng=self.rng)
        # Objects added after the first checkpoints were written: restored when stored.
        self.optional = dict(position=position, nll_selection=self.nll_selection,
                             epoch_statistics=self.statistics,
                             **({"accumulator": accumulator} if accumulator is not None else {}))
        checkpoint = tf.train.Checkpoint(**self.parts, **self.optional)
        self.latest = run.checkpoint_manager(checkpoint, "latest")
        self.best = run.checkpoint_manager(checkpoint, "best")
        self.best_nll = run.checkpoint_manager(checkpoint, "best_nll")

    def save_latest(self) -> str:
        return self.latest.save(checkpoint_number=int(self.state.global_step.numpy()))

    def save_best(self, epochs: int) -> str:
        return self.best.save(checkpoint_number=epochs)

    def save_best_nll(self, epochs: int) -> str:
        return self.best_nll.save(checkpoint_number=epochs)

    def has(self, kind: str) -> bool:
        """Whether the run directory read from holds a checkpoint of `kind`."""
        return self.read_from.latest_checkpoint(kind) is not None

    def _parts_for(self, path) -> dict:
        """The checkpoint objects that read `path` (checked weight by weight first)."""
        layout = check_model_weights(path, self.model)
        if layout == "named":
            return self.parts
        self.log(f"{path}: written before the weights were keyed by name; read in creation order")
        return dict(self.parts, **checkpoint_objects(self.model, layout))

    def restore_latest(self) -> bool:
        """Restore everything from `latest` (False when there is none). Checkpoints from
        before the epoch position existed are epoch boundaries; those without the NLL
        selection start it afresh; those without the step statistics (an epoch resumed
        inside) count the steps from the resume on."""
        path = self.read_from.latest_checkpoint("latest")
        if path is None:
            return False
        parts = self._parts_for(path)
        stored = {name.split("/")[0] for name, _ in tf.train.list_variables(path)}
        if "position" not in stored:
            self.position.reset()
        if "nll_selection" not in stored:
            self.nll_selection.best.assign(math.inf)
        if "epoch_statistics" not in stored:
            self.statistics.reset()
        inside = {key: part for key, part in self.optional.items() if key in stored}
        tf.train.Checkpoint(**parts, **inside).restore(path).assert_existing_objects_matched()
        self.optimizer.learning_rate = float(self.state.learning_rate.numpy())
        self.log(f"resumed from {path}: epoch {int(self.state.epoch.numpy())}, "
                 f"step {int(self.state.global_step.numpy())}")
        return True

    def restore_for_evaluation(self, kind: str = "best") -> str:
        """Restore the model and TrainState of `best` (else `latest`), or of `best_nll`;
        returns its path."""
        if kind == "best":
            path = self.read_from.latest_checkpoint("best") or self.read_from.latest_checkpoint("latest")
        elif kind == "best_nll":
            path = self.read_from.latest_checkpoint("best_nll")
        else:
            raise ValueError(f"kind must be 'best' or 'best_nll', got {kind!r}")
        if path is None:
            raise FileNotFoundError(f"no {kind} checkpoint in {self.read_from.path / 'checkpoints'}")
        parts = self._parts_for(path)
        model_parts = {k: v for k, v in parts.items() if k.startswith("model")}
        tf.train.Checkpoint(**model_parts, state=self.state).restore(
            path).expect_partial().assert_existing_objects_matched()
        return path

    def run_totals(self, learning_rate: float) -> tuple[int, float]:
        """(epochs trained, training wall seconds) of the whole run: the latest checkpoint's."""
        path = self.read_from.latest_checkpoint("latest")
        if path is None:
            return int(self.state.epoch.numpy()), float(self.state.wall_seconds.numpy())
        state = TrainState(learning_rate)
        tf.train.Checkpoint(state=state).restore(path).expect_partial()
        return int(state.epoch.numpy()), float(state.wall_seconds.numpy())

