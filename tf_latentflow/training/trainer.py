"""The training loop: custom tf.function steps under a tf.distribute strategy.

One `run(config)` serves every dataset and model of the registry:

  data       the dataset's splits, seeded shuffled and bucketed batches (`inputs`)
  model      `runs.build_model`: any `SequenceModel`, with p(T) from train + validation
  steps      per replica: loss = mean_b [loss_b / (T_b + 1)] (the reference objective),
             gradients clipped by global norm, Adam (or SGD) (`steps`)
  schedule   KL annealing per step, learning rate / 4 on validation plateaus (`schedules`)
  state      model, optimizer, dropout RNG states, the loop's counters (`state`):
             `checkpoints/latest` after every epoch, `checkpoints/best` on improvement
  resume     re-running with the same output directory restores `latest` and
             continues as if never interrupted; other settings are refused (`resume`)
  evaluate   the best checkpoint, importance-sampled NLL on validation and test,
             written to results.json in the paper's units (`results`)

The run's files are a `runs.RunDirectory`. A NaN or Inf loss, gradient norm (float32)
or weight stops the run with `TrainingDiverged` before anything is saved.

Several workers (`--strategy multiworker`, `training.cluster`, docs/distributed.md): every
worker trains, validates and saves (saving is a collective); the chief writes the run
directory, the others a temporary one that they delete; every worker resumes from the
run directory, which they must all read at the same path. The final evaluation runs on
the chief alone. A worker that stops during the run ends the others with `ClusterError`.
"""

from __future__ import annotations

import itertools
import json
import math
import os
import re
import shutil
import signal
import threading
import time
import weakref

import keras
import tensorflow as tf

from tf_latentflow import data as D
from tf_latentflow.runs import RunDirectory, build_model
from tf_latentflow.runs.directory import scratch_run_directory
from tf_latentflow.training import schedules
from tf_latentflow.training.config import TrainConfig, saved_value
from tf_latentflow.training.cluster import (LOST_WORKER_ERRORS, ClusterError, agree_across_workers,
                                           sum_across_workers)
from tf_latentflow.training.distribution import resolve_precision, select_strategy, worker_role
from tf_latentflow.training.epoch import (LaunchedStep, StepResult, TrainingPass, accumulation_group,
                                         read_back)
from tf_latentflow.training.inputs import (DataBundle, batch_config, batches, epoch_validation_split,
                                          length_model, load_data)
from tf_latentflow.training.optimizers import FusedAdam
from tf_latentflow.training.results import nll_record, results_table
from tf_latentflow.training.resume import (ConfigMismatch, check_precision, check_resumable,
                                           portable_config)
from tf_latentflow.training.state import (Checkpoints, EpochPosition, GradientAccumulator, TrainState,
                                          reset_optimizer_state)
from tf_latentflow.training.steps import TrainSteps, step_seed

# The training loop reads the steps' losses back (NaN check, progress, summaries) once
# per this many steps, not after each one.
HOST_SYNC_STEPS = 10

__all__ = ["ClusterError", "ConfigMismatch", "Interrupted", "Trainer", "TrainingDiverged", "results_table",
           "run"]


class TrainingDiverged(RuntimeError):
    """The training loss, a gradient norm or a weight became NaN or Inf; the checkpoints
    are left untouched."""


class Interrupted(RuntimeError):
    """Ctrl-C during training: a checkpoint was saved after the last finished step."""


def make_optimizer(config: TrainConfig, policy: str):
    """Adam (`optimizers.FusedAdam`: Keras's Adam with one fused update op per weight) or SGD
    at the configured learning rate; a loss-scale optimizer for mixed
    float16. With `weight_decay` w > 0 each step first scales every weight except the
    biases by 1 - lr * w (decoupled decay, Loshchilov & Hutter's AdamW). No clipnorm here: Keras clips each replica's gradient before the
    all-reduce; the step clips the summed gradient instead (`clip_across_replicas`)."""
    decay = dict(weight_decay=config.weight_decay) if config.weight_decay else {}
    optimizer = (FusedAdam(learning_rate=config.learning_rate, epsilon=config.adam_epsilon, **decay)
                 if config.optimizer == "adam" else
                 keras.optimizers.SGD(learning_rate=config.learning_rate, **decay))
    if config.weight_decay:
        optimizer.exclude_from_weight_decay(var_names=["bias"])
    return keras.optimizers.LossScaleOptimizer(optimizer) if policy == "mixed_float16" else optimizer


class Trainer:
    """Trains and evaluates the run of `config` in its run directory (`runs.RunDirectory`)."""

    def __init__(self, config: TrainConfig, bundle: DataBundle | None = None, log=print, *,
                 force_new: bool = False):
        """force_new: delete a previous run in output_dir (checkpoints, history, results,
        TensorBoard logs, config.json) and start over; otherwise a previous run whose
        settings differ (beyond `resume.RESUMABLE_SETTINGS`) raises ConfigMismatch.

        `run_dir` is where this process writes the run: the run directory in output_dir
        on the chief (and in a single process), a temporary `scratch_run_directory` on
        the other workers, deleted with the Trainer (or at exit); `shared_run_dir` is
        the run directory in output_dir, which every worker reads."""
        self.config, self.log = config, log
        self.strategy = select_strategy(config.strategy)  # waits for the cluster's workers
        self.role = worker_role(self.strategy)
        self.shared_run_dir = RunDirectory(config.output_dir)
        self.output_dir = self.shared_run_dir.path
        self.policy = resolve_precision(config.mixed_precision)
        if not force_new:
            check_resumable(self.shared_run_dir, config, log)
            check_precision(self.shared_run_dir, config, self.policy)
        if self.role.is_chief:
            self.run_dir = self.shared_run_dir
            self.output_dir.mkdir(parents=True, exist_ok=True)
        else:
            self.run_dir = scratch_run_directory(f"{self.role.task_type}{self.role.task_id}")
            self._remove_scratch = weakref.finalize(self, shutil.rmtree, str(self.run_dir.path), True)
        self.bundle = bundle or load_data(config)
        vocab_size = len(self.bundle.vocabulary) if self.bundle.vocabulary else None
        # The same initial weights for the same seed: seeded after the data, whose first
        # preparation (TFDS) draws from the global generators and a later read does not.
        keras.utils.set_random_seed(config.seed)
        with self.strategy.scope():
            self.model = build_model(config.model_settings, length_model(config, self.bundle), vocab_size,
                                     self.policy)
            self.optimizer = make_optimizer(config, self.policy)
            self.optimizer.build(self.model.trainable_variables)
            self.state = TrainState(config.learning_rate)
            self.position = EpochPosition()
            self.accumulator = GradientAccumulator(self.model) if config.grad_accum > 1 else None
        if force_new and self.role.is_chief:  # now that the configuration, data and model are good
            self.run_dir.clear()
        if force_new and self.role.num_workers > 1:
            sum_across_workers(self.strategy, [0.0])  # no worker restores before the chief cleared
        self.checkpoints = Checkpoints(self.run_dir, self.model, self.optimizer, self.state, self.position,
                                       self.accumulator, log=log, read_from=self.shared_run_dir)
        self.steps = TrainSteps(config, self.model, self.optimizer, self.strategy, self.accumulator)
        self._train_step = None

    # -- persistence --------------------------------------------------------------------

    def close(self) -> None:
        """Delete a non-chief worker's temporary run directory (also done when the Trainer
        is collected, or at exit); nothing on the chief."""
        if not self.role.is_chief:
            self._remove_scratch()

    def write_config(self):
        """config.json: into the run directory on the chief, the temporary one elsewhere."""
        self.run_dir.write_config(portable_config(self.config), self.model, precision_policy=self.policy,
                                  num_replicas=self.strategy.num_replicas_in_sync,
                                  vocabulary=self.bundle.vocabulary)

    def restore_latest(self) -> bool:
        """Restore `latest` from the run directory (False: a new run). Every worker must
        restore the same checkpoint: workers that do not (one that cannot read the run
        directory starts afresh) raise ClusterError on every worker."""
        restored = self.checkpoints.restore_latest()
        agree_across_workers(
            self.strategy, self.role, float(self.state.global_step.numpy()), "training steps after the resume",
            f"every worker restores {self.output_dir / 'checkpoints' / 'latest'}, so every worker must read "
            f"the chief's run directory at that path (a shared filesystem)")
        return restored

    # -- steps --------------------------------------------------------------------------

    def _make_train_step(self, element_spec):
        """The training step for batches of `element_spec` (`TrainSteps.build_train_step`)."""
        return self.steps.build_train_step(element_spec)

    def precompile(self) -> int:
        """With jit_compile, compile the training step for every shape a training batch
        of this run can have (`data.batch_shapes`) before the first step; returns the
        number of shapes (0 without jit_compile, or with max_steps_per_epoch: a capped
        smoke run compiles the few shapes it meets as it meets them)."""
        if not self.config.jit_compile or self.config.max_steps_per_epoch:
            return 0
        shapes = D.batch_shapes(self.bundle.lengths["train"], batch_config(self.config, self.bundle, epoch=0))
        return self.steps.precompile(shapes, self.checkpoints.rng)

    # -- the loop -----------------------------------------------------------------------

    def fit(self):
        """Train up to config.epochs, or until the learning rate falls below
        config.min_learning_rate (resuming from checkpoints/latest).

        Ctrl-C (SIGINT) finishes the current training step, saves checkpoints/latest
        (with the position inside the epoch) and raises `Interrupted`; the same command
        then resumes exactly where it stopped. A second Ctrl-C stops at once, without
        saving (the previous checkpoint stays valid).
        """
        self._interrupt_requested = False
        main_thread = threading.current_thread() is threading.main_thread()
        previous = signal.signal(signal.SIGINT, self.request_interrupt) if main_thread else None
        try:
            self._fit()
        finally:
            if main_thread:
                signal.signal(signal.SIGINT, previous)

    def request_interrupt(self, signum=None, frame=None):
        """The SIGINT handler: stop after the current step (a second call stops at once)."""
        if self._interrupt_requested:
            raise KeyboardInterrupt
        self._interrupt_requested = True
        self.log("interrupt: stopping after this step and saving a checkpoint (Ctrl-C again to stop at once)")

    def _fit(self):
        config, state = self.config, self.state
        self.restore_latest()
        self.run_dir.keep_history(int(state.epoch.numpy()))  # the epochs the checkpoint holds
        self.write_config()
        writer = tf.summary.create_file_writer(str(self.run_dir.tensorboard_dir))
        steps_per_epoch = sum(1 for _ in batches(config, self.bundle, "train", epoch=0))
        if config.max_steps_per_epoch:
            steps_per_epoch = min(steps_per_epoch, config.max_steps_per_epoch)
        validation = batches(config, self.bundle, epoch_validation_split(self.bundle))
        while not self._finished():
            epoch = int(state.epoch.numpy())
            started = time.perf_counter()
            sums, steps_done = self._train_epoch(epoch, steps_per_epoch, writer)
            record = self._end_epoch(epoch, sums, steps_done, validation, writer, started)
            self.log(json.dumps(record))
            if self._interrupt_requested:  # Ctrl-C during validation: the epoch is saved
                raise Interrupted(f"interrupted after epoch {epoch} (saved); re-run the same command "
                                  f"to resume")
        writer.flush()

    def _finished(self) -> bool:
        """All `epochs` done, or the learning rate below `min_learning_rate` (logged)."""
        config, state = self.config, self.state
        if int(state.epoch.numpy()) >= config.epochs:
            return True
        learning_rate = float(state.learning_rate.numpy())
        if learning_rate < config.min_learning_rate:
            self.log(f"stopping after {int(state.epoch.numpy())} of {config.epochs} epochs: the learning "
                     f"rate {learning_rate:.3g} is below --min-learning-rate {config.min_learning_rate:g}")
            return True
        return False

    def _train_epoch(self, epoch, steps_per_epoch, writer):
        """One training pass (from the saved position when resuming inside the epoch);
        returns the sums of the steps' (loss, kl) and the number of steps done. The
        steps' extremes and gradient norms go to `self.checkpoints.statistics`.

        Steps are launched without waiting for them and read back every HOST_SYNC_STEPS
        steps, at the epoch's end and before stopping for Ctrl-C (`_read_steps`)."""
        dataset = self.strategy.experimental_distribute_dataset(
            batches(self.config, self.bundle, "train", epoch=epoch))
        self._ensure_train_step(dataset.element_spec)
        run = self._start_pass(epoch, steps_per_epoch, writer)
        launched, steps_done = [], run.first
        for step, batch in enumerate(itertools.islice(dataset, steps_per_epoch)):
            steps_done = step + 1
            if step < run.first:
                continue
            launched.append(self._launch_step(batch, step, run))
            last = step + 1 == steps_per_epoch
            if len(launched) >= HOST_SYNC_STEPS or last or self._interrupt_requested:
                self._read_steps(launched, run)
                launched = []
            if not last and self._interrupt_requested:
                self._stop_inside_epoch(epoch, step + 1, steps_per_epoch)
        if launched:  # the dataset ended before steps_per_epoch
            self._read_steps(launched, run)
        return run.sums, steps_done

    def _ensure_train_step(self, element_spec) -> None:
        """Trace the training step on the first pass, and XLA-compile its batch shapes."""
        if self._train_step is not None:
            return
        self._train_step = self._make_train_step(element_spec)
        compiled = time.perf_counter()
        if shapes := self.precompile():
            self.log(f"compiled the training step for {shapes} batch shapes with XLA "
                     f"in {time.perf_counter() - compiled:.0f} s")

    def _start_pass(self, epoch, steps_per_epoch, writer) -> TrainingPass:
        """The pass's host-side state, from the saved position (a resume inside the epoch
        keeps its earlier steps' sums and statistics)."""
        return TrainingPass(
            epoch=epoch, steps_per_epoch=steps_per_epoch, writer=writer,
            first=int(self.position.epoch_step.numpy()),
            sums=self.position.epoch_sums.numpy().copy(),
            statistics=self.checkpoints.statistics.read(),
            global_step=int(self.state.global_step.numpy()),
            progress=keras.utils.Progbar(steps_per_epoch,
                                         stateful_metrics=["loss", "kl", "kl_weight", "steps/s"]),
            started=time.perf_counter())

    def _launch_step(self, batch, step: int, run: TrainingPass) -> LaunchedStep:
        """Run training step `step` of the pass, not waiting for its results."""
        config, state = self.config, self.state
        weight = config.kl_schedule_spec.at(run.epoch, step, run.steps_per_epoch)
        group = accumulation_group(step, run.steps_per_epoch, config.grad_accum)
        loss, kl, grad_norm = self._train_step(batch, tf.constant(weight, tf.float32),
                                               step_seed(config, state.global_step), group)
        state.global_step.assign_add(1)
        run.global_step += 1
        return LaunchedStep(index=step, run_step=run.global_step, kl_weight=weight, group=group,
                            loss=loss, kl=kl, grad_norm=grad_norm)

    def _read_steps(self, launched: list[LaunchedStep], run: TrainingPass) -> None:
        """The launched steps' results in one device -> host transfer: the NaN checks, the
        epoch's sums and position, the progress bar and the summaries. Checkpoints are
        only written after this ran (epoch end, interrupt), so a non-finite step is always
        found before it could be saved."""
        for result in read_back(launched):
            self._check_finite_loss(result, run.epoch)
            run.add(result)
            if result.updated:
                self._record_update(result, run)
            if result.run_step % 10 == 0:
                with run.writer.as_default(step=result.run_step):
                    tf.summary.scalar("train/loss", result.loss)
                    tf.summary.scalar("train/kl", result.kl)
                    tf.summary.scalar("train/kl_weight", result.kl_weight)
        self.position.epoch_step.assign(launched[-1].index + 1)
        self.position.epoch_sums.assign(run.sums)
        self.checkpoints.statistics.write(run.statistics)

    def _check_finite_loss(self, result: StepResult, epoch: int) -> None:
        if not (math.isfinite(result.loss) and math.isfinite(result.kl)):
            raise TrainingDiverged(
                f"{self.config.dataset}/{self.config.model}: non-finite training loss ({result.loss}, "
                f"kl {result.kl}) at epoch {epoch}, step {result.index}; stopped without saving (the "
                f"best and latest checkpoints are from before)")

    def _record_update(self, result: StepResult, run: TrainingPass) -> None:
        """An update's gradient norm (before clipping) into the statistics and the summaries;
        a non-finite one stops the run (a loss-scale optimizer, mixed float16, skips such
        an update instead)."""
        measured = self.steps.measures_grad_norm  # otherwise the norm is NaN
        if (measured and not math.isfinite(result.grad_norm)
                and not isinstance(self.optimizer, keras.optimizers.LossScaleOptimizer)):
            raise TrainingDiverged(
                f"{self.config.dataset}/{self.config.model}: non-finite gradient norm ({result.grad_norm}) "
                f"at epoch {run.epoch}, step {result.index} (its update made the weights non-finite); "
                f"stopped without saving (the best and latest checkpoints are from before)")
        run.statistics.add_update(result.grad_norm if measured else None, self.config.clip_norm)
        if measured:
            with run.writer.as_default(step=result.run_step):
                tf.summary.scalar("train/grad_norm", result.grad_norm)

    def _stop_inside_epoch(self, epoch: int, next_step: int, steps_per_epoch: int):
        """Ctrl-C: save the position after the last finished step and stop."""
        self.check_finite_weights(f"at epoch {epoch}, step {next_step}")
        path = self.checkpoints.save_latest()
        raise Interrupted(f"interrupted at epoch {epoch}, step {next_step} of {steps_per_epoch}; "
                          f"saved {path}; re-run the same command to resume")

    def check_finite_weights(self, when: str) -> None:
        """Raise TrainingDiverged when a weight is NaN or Inf, before anything is saved.

        The host checks every step's loss and (float32, measured) gradient norm, but an
        update with a non-finite gradient and a finite loss at the last step of an epoch
        or before Ctrl-C, or one whose norm is not measured (`step_statistics`), would
        otherwise reach a checkpoint that every resume then restores."""
        bad = [v.path for v in self.model.weights
               if keras.backend.is_float_dtype(v.dtype) and not bool(tf.reduce_all(tf.math.is_finite(v)))]
        if bad:
            raise TrainingDiverged(
                f"{self.config.dataset}/{self.config.model}: non-finite weights {when} "
                f"({', '.join(bad[:3])}{', ...' if len(bad) > 3 else ''}); stopped without saving "
                f"(the best and latest checkpoints are from before)")

    def _end_epoch(self, epoch, sums, steps_done, validation, writer, started) -> dict:
        """Validation, the learning-rate plateau rule, checkpoints and the history record."""
        config, state = self.config, self.state
        kl_schedule = config.kl_schedule_spec
        train_seconds = time.perf_counter() - started  # the training pass (and compiles)
        self.check_finite_weights(f"after the training pass of epoch {epoch}")
        end_weight = kl_schedule.at_epoch_end(epoch)
        val = self.steps.loss_sums(validation, end_weight)
        record = {"epoch": epoch, "train_loss": sums[0] / max(steps_done, 1),
                  "train_kl": sums[1] / max(steps_done, 1),
                  **self.checkpoints.statistics.read().record(), "validation_loss": val["loss"],
                  "validation_kl": val["kl"], "kl_weight": end_weight,
                  "learning_rate": float(state.learning_rate.numpy())}
        if kl_schedule.done(epoch):
            plateau = schedules.plateau_update(
                schedules.Plateau(best=float(state.best_validation.numpy()),
                                  bad_epochs=int(state.bad_epochs.numpy()),
                                  learning_rate=float(state.learning_rate.numpy())),
                val["loss"], config.patience, config.lr_decay)
            state.best_validation.assign(plateau.best)
            state.bad_epochs.assign(plateau.bad_epochs)
            state.learning_rate.assign(plateau.learning_rate)
            self.optimizer.learning_rate = plateau.learning_rate
            if plateau.decayed and config.reset_optimizer_on_decay:
                with self.strategy.scope():
                    reset_optimizer_state(self.optimizer)
            record.update(improved=plateau.improved, lr_decayed=plateau.decayed)
            if config.validation_nll_samples:  # the epochs whose checkpoints compete
                record["validation_nll"] = self.evaluate_nll(epoch_validation_split(self.bundle),
                                                             config.validation_nll_samples)["nll"]
                record["nll_improved"] = self.checkpoints.nll_selection.update(record["validation_nll"])
        state.epoch.assign(epoch + 1)
        self.position.reset()
        self.checkpoints.statistics.reset()
        record["train_seconds"] = train_seconds
        record["epoch_seconds"] = time.perf_counter() - started  # training and validation
        state.wall_seconds.assign_add(record["epoch_seconds"])
        # The record before the checkpoint: a process killed between the two trains the
        # epoch again after the resume, which first drops the record (`_fit`).
        self.run_dir.append_history(record)
        if record.get("improved"):
            self.checkpoints.save_best(epoch + 1)
        if record.get("nll_improved"):
            self.checkpoints.save_best_nll(epoch + 1)
        self.checkpoints.save_latest()
        with writer.as_default(step=epoch + 1):
            for key in ("validation_loss", "validation_kl", "learning_rate"):
                tf.summary.scalar(key.replace("_", "/", 1), record[key])
        return record

    # -- evaluation ---------------------------------------------------------------------

    def evaluate_nll(self, split: str, num_samples: int) -> dict:
        """Importance-sampled NLL of a split, per step (T + 1) in the paper's unit."""
        sums = self.steps.nll_sums(batches(self.config, self.bundle, split), num_samples)
        return nll_record(sums, dataset=self.config.dataset, num_samples=num_samples,
                          exact=self.model.exact_likelihood)

    def evaluate(self) -> dict:
        """Evaluate the best checkpoint and write results.json (on the chief: the other
        workers of a cluster evaluate nothing and return {}).

        epochs_trained / wall_seconds describe the run (its latest checkpoint); best_epoch /
        best_wall_seconds the evaluated checkpoint (the epochs and training time it took).
        A run with a `best_nll` checkpoint (`--validation-nll-samples`) also reports it as
        `selected_by_validation_nll` (the same fields; evaluated again only when it is
        another epoch's checkpoint than `best`).
        """
        if not self.role.is_chief:
            return {}
        epochs_trained, wall_seconds = self.checkpoints.run_totals(self.config.learning_rate)
        path = self.checkpoints.restore_for_evaluation()
        started = time.perf_counter()
        trained = self.training_settings()
        results = {
            "dataset": self.config.dataset, "model": self.config.model,
            "config": trained,
            "checkpoint": os.path.relpath(path, self.output_dir),
            "epochs_trained": epochs_trained,
            "wall_seconds": wall_seconds,
            "best_epoch": int(self.state.epoch.numpy()),
            "best_wall_seconds": float(self.state.wall_seconds.numpy()),
            "validation": self.evaluate_nll("validation", self.config.nll_samples),
            "test": self.evaluate_nll("test", self.config.nll_samples),
        }
        apart = {key: value for key, value in portable_config(self.config).items() if trained.get(key) != value}
        if apart:  # the evaluating call's own settings (--evaluate-only, --nll-samples, ...)
            results["evaluation_config"] = apart
        if self.checkpoints.has("best_nll"):
            results["selected_by_validation_nll"] = self._evaluate_best_nll(results)
        results["evaluation_seconds"] = time.perf_counter() - started
        self.run_dir.write_results(results)
        self.log(json.dumps({k: results[k] for k in ("validation", "test")}))
        return results

    def training_settings(self) -> dict:
        """The settings the evaluated run trained with: this call's, or with --evaluate-only
        those of the run directory's config.json (written by the call that trained; a
        setting it predates takes its legacy value)."""
        now = portable_config(self.config)
        if not (self.config.evaluate_only and self.run_dir.config_path.exists()):
            return now
        saved = self.run_dir.read_config()
        return {key: saved_value(saved, key) for key in now}

    def _evaluate_best_nll(self, by_elbo: dict) -> dict:
        """The `best_nll` checkpoint's epochs and NLL (those of `by_elbo`, the `best`
        checkpoint's results, when both are the same epoch's checkpoint)."""
        path = self.checkpoints.restore_for_evaluation("best_nll")
        epoch = int(self.state.epoch.numpy())
        selected = {"checkpoint": os.path.relpath(path, self.output_dir), "best_epoch": epoch,
                    "best_wall_seconds": float(self.state.wall_seconds.numpy()),
                    "validation_nll_samples": self.config.validation_nll_samples}
        if epoch == by_elbo["best_epoch"]:
            return dict(selected, same_as_best=True, validation=by_elbo["validation"], test=by_elbo["test"])
        return dict(selected, same_as_best=False,
                    validation=self.evaluate_nll("validation", self.config.nll_samples),
                    test=self.evaluate_nll("test", self.config.nll_samples))


def run(config: TrainConfig, log=print, *, force_new: bool = False) -> dict:
    """Train (resuming if the output directory has a checkpoint), then evaluate: results.json's
    record ({} on a worker other than the chief, which does not evaluate).

    With several workers the others wait for the chief's evaluation (a last collective),
    and a worker that stopped raises ClusterError on the others."""
    trainer = Trainer(config, log=log, force_new=force_new)
    try:
        if not config.evaluate_only:
            trainer.fit()
        results = trainer.evaluate()
        if trainer.role.num_workers > 1:
            sum_across_workers(trainer.strategy, [0.0])  # every worker ends after the chief's evaluation
        return results
    except LOST_WORKER_ERRORS as error:
        if trainer.role.num_workers == 1:
            raise
        lines = [re.sub(r"\{\{.*?\}\}\s*", "", line).strip() for line in str(error).splitlines()]
        lines = [line for line in lines if line] or [""]
        reason = next((line for line in lines if "abort" in line.lower() or "unhealthy" in line.lower()),
                      lines[0])
        reason = reason if len(reason) <= 300 else reason[:297] + "..."
        raise ClusterError(
            f"{trainer.role.name} of {trainer.role.num_workers}: another worker stopped during the run "
            f"({type(error).__name__}: {reason}); {trainer.output_dir} holds the last saved "
            f"checkpoint: start every worker again with the same command to resume") from None
    finally:
        trainer.close()
