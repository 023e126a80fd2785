"""The training loop: custom tf.function steps under a tf.distribute strategy.

One `run(config)` serves every dataset and model:

  data       the TFDS builder of the dataset, seeded shuffled and bucketed batches
  model      LatentFlowVAE (flow priors) or LSTMBaseline, with p(T) from train + validation
  step       per replica: loss = mean_b [loss_b / (T_b + 1)] (the reference objective),
             gradients clipped by global norm, Adam (or SGD for the baseline)
  schedule   KL annealing per step, learning rate / 4 on validation plateaus (schedules.py)
  state      model, optimizer, dropout RNG states and a TrainState (epoch, global
             step, best validation loss, plateau count, learning rate, wall time) in
             tf.train.Checkpoint;
             `checkpoints/latest` after every epoch, `checkpoints/best` on improvement
  resume     re-running with the same output directory restores `latest` and
             continues; all randomness derives from (seed, epoch, global step), so the
             run continues as if never interrupted
  evaluate   the best checkpoint, importance-sampled NLL on validation and test,
             written to results.json in the paper's units

A NaN or Inf loss stops the run with `TrainingDiverged` before anything is saved.
"""

from __future__ import annotations

import dataclasses
import itertools
import json
import math
import os
import pathlib
import shutil
import signal
import threading
import time

import keras
import numpy as np
import tensorflow as tf

from tf_latentflow import data as D
from tf_latentflow import evaluation
from tf_latentflow.baseline import LSTMBaseline
from tf_latentflow.model import LatentFlowVAE
from tf_latentflow.training import schedules
from tf_latentflow.training.checkpoints import (check_model_weights, checkpoint_objects,
                                                optimizer_objects, weights_by_path)
from tf_latentflow.training.config import TrainConfig, saved_value

# With --jit-compile, batches are padded to this grid (`data.padded_length`: multiples of
# 16 steps up to 256, coarser above) and training batches filled to the batch size, so
# that XLA compiles one program per padded length (~10 for JSB), all before epoch 1.
XLA_TIME_MULTIPLE = 16

# The training loop reads the steps' losses back (NaN check, progress, summaries) once
# per this many steps, not after each one.
HOST_SYNC_STEPS = 10

__all__ = ["TrainingDiverged", "DataBundle", "load_data", "build_model", "Trainer", "run"]


class TrainingDiverged(RuntimeError):
    """The training loss became NaN or Inf; the best checkpoint is left untouched."""


# -- data ------------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class DataBundle:
    splits: dict  # split name -> TFDS examples (tf.data.Dataset)
    lengths: dict  # split name -> np.ndarray of lengths
    vocabulary: tuple | None  # text: id -> symbol


def load_data(config: TrainConfig) -> DataBundle:
    """Prepare (once) and open the dataset's three splits."""
    builder = D.prepare(config.dataset, data_dir=os.path.expanduser(config.prepared_dir),
                        source_dir=config.data_dir)
    splits = {name: builder.as_dataset(split=name) for name in ("train", "validation", "test")}
    lengths = {name: D.split_lengths(ds) for name, ds in splits.items()}
    vocabulary = tuple(builder.info.metadata["vocab"]) if config.is_text else None
    return DataBundle(splits=splits, lengths=lengths, vocabulary=vocabulary)


def batch_config(config: TrainConfig, bundle: DataBundle, *, epoch: int | None = None,
                 batch_size: int | None = None) -> D.BatchConfig:
    """How a split is batched: training batches (epoch given) are shuffled with a seed fixed
    by (seed, epoch); with jit_compile, padded to the XLA grid and (training) filled to the
    batch size, so that every training shape is known before the run starts."""
    training = epoch is not None
    boundaries = (D.quantile_boundaries(bundle.lengths["train"], config.num_buckets)
                  if config.num_buckets > 1 else ())
    return D.BatchConfig(
        batch_size=batch_size or (config.batch_size if training else config.eval_batch_size),
        shuffle=training, seed=(config.seed * 1_000_003 + epoch) if training else None,
        bucket_boundaries=boundaries, pad_to_multiple=XLA_TIME_MULTIPLE if config.jit_compile else 1,
        fill_batches=training and config.jit_compile)


def batches(config: TrainConfig, bundle: DataBundle, split: str, *, epoch: int | None = None,
            batch_size: int | None = None) -> tf.data.Dataset:
    """Batches of a split (`batch_config`)."""
    return D.make_batches(bundle.splits[split], batch_config(config, bundle, epoch=epoch,
                                                             batch_size=batch_size))


# -- model -----------------------------------------------------------------------------------


def length_model(config: TrainConfig, bundle: DataBundle) -> D.LengthModel:
    """p(T) from training and validation lengths (the reference rule; smoothed for music)."""
    lengths = np.concatenate([bundle.lengths["train"], bundle.lengths["validation"]])
    model = D.LengthModel.from_lengths(lengths, smoothing=not config.is_text, name="length_model")
    longest = int(max(bundle.lengths["test"].max(), lengths.max()))
    if longest > model.max_length:
        raise ValueError(f"a {config.dataset} sequence of length {longest} exceeds the length "
                         f"model's maximum {model.max_length}")
    return model


def build_model(config: TrainConfig, lengths_model: D.LengthModel, vocab_size: int | None,
                policy: str = "float32"):
    """LatentFlowVAE or LSTMBaseline with the configured sizes, computing in `policy`."""
    output = dict(vocab_size=vocab_size, dtype=policy) if config.is_text else dict(
        num_notes=88, dtype=policy)
    if config.is_baseline:
        return LSTMBaseline(max_length=lengths_model.max_length, embedding_size=config.embedding_size,
                            hidden_units=config.hidden_units, dropout=config.baseline_dropout,
                            length_model=lengths_model, **output)
    return LatentFlowVAE(
        max_length=lengths_model.max_length, prior=config.prior_name, latent_size=config.latent_size,
        embedding_size=config.embedding_size, hidden_units=config.hidden_units,
        prior_lstm_units=config.prior_lstm_units, num_flow_layers=config.num_flow_layers,
        flow_hidden_units=config.flow_hidden_units, length_model=lengths_model,
        prior_kwargs=prior_options(config), **output)


def prior_options(config: TrainConfig) -> dict:
    """make_prior's options for this run; only those that differ from its defaults, so the
    model_config of a run without them reads as before they existed."""
    options = {}
    if config.model not in ("af-only", "standard-normal"):
        options["lstm_dropout"] = config.prior_dropout
    if config.nlsq_damping:
        options["damped_nlsq"] = True
    if config.flow_context != "all":
        options["flow_context_layers"] = config.flow_context
    if config.flow_init != "glorot":
        options["flow_init"] = config.flow_init
    return options


def sequence_terms(model, batch, *, kl_weight, num_samples, seed, training):
    """Per-sequence loss and KL in nats, float32 [B] (the KL is 0 for the baseline)."""
    if isinstance(model, LSTMBaseline):
        loss = model.nll(batch["x"], batch["lengths"], training=training)
        return {"loss": loss, "kl": tf.zeros_like(loss)}
    out = model.elbo(batch["x"], batch["lengths"], num_samples=num_samples, kl_weight=kl_weight,
                     seed=seed, training=training)
    return {"loss": out["loss"], "kl": out["kl"]}


# -- distribution, precision -----------------------------------------------------------------


def clip_across_replicas(gradients, clip_norm: float, loss_scale=1.0):
    """Per-replica gradients scaled so that their sum has global norm <= clip_norm.

        g_sum  = sum_r g_r                       (an all-reduce when there are replicas)
        factor = clip_norm / max(||g_sum|| / loss_scale, clip_norm)
        return   factor * g_r

    The optimizer then sums the replicas' factor * g_r: the clipped global gradient,
    as on one device (Keras's `global_clipnorm` clips every replica's part by its own
    norm before the all-reduce). `loss_scale` unscales mixed-float16 gradients for the
    norm; non-finite gradients stay non-finite, so the loss-scale optimizer still skips
    the step. Runs in replica context.
    """
    context = tf.distribute.get_replica_context()
    present = [g for g in gradients if g is not None]
    if context is not None and context.num_replicas_in_sync > 1:
        present = context.all_reduce(tf.distribute.ReduceOp.SUM, present)
    norm = tf.linalg.global_norm([tf.cast(g, tf.float32) for g in present]) / tf.cast(loss_scale, tf.float32)
    factor = clip_norm / tf.maximum(norm, clip_norm)
    return [None if g is None else g * tf.cast(factor, g.dtype) for g in gradients]


def select_strategy(name: str) -> tf.distribute.Strategy:
    if name == "multiworker":
        return tf.distribute.MultiWorkerMirroredStrategy()
    gpus = tf.config.list_logical_devices("GPU")
    if name == "mirrored" or (name == "auto" and len(gpus) > 1):
        return tf.distribute.MirroredStrategy()
    return tf.distribute.get_strategy()


def resolve_precision(mode: str) -> str:
    """The run's dtype policy: 'mixed_float16' for mode 'on', and for 'auto' when a GPU is
    visible; else 'float32'. It is given to the model explicitly (Keras's global policy is
    never touched, so nothing else in the process changes precision)."""
    gpu = bool(tf.config.list_logical_devices("GPU"))
    return "mixed_float16" if mode == "on" or (mode == "auto" and gpu) else "float32"


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


class SeedStates(tf.Module):
    """The model's Keras seed-generator states (dropout RNG), which tf.train.Checkpoint
    does not reach through the Keras layers; checkpointing them makes a resumed run
    draw the same dropout masks as an uninterrupted one."""

    def __init__(self, model):
        super().__init__(name="seed_states")
        self.states = {f"s{i}": v for i, v in enumerate(
            v for v in model.non_trainable_variables if "seed_generator" in v.path)}


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


# -- the trainer -----------------------------------------------------------------------------


# Settings a resumed run may change: how long to train, where things are, how to evaluate
# and on which devices. Any other difference (model sizes, optimizer, schedules, seed,
# data, precision) would silently mix two experiments in one run directory.
RESUMABLE_SETTINGS = frozenset({"epochs", "data_dir", "prepared_dir", "evaluate_only",
                                "eval_batch_size", "nll_samples", "validation_nll_samples",
                                "max_eval_batches", "strategy", "jit_compile"})


class ConfigMismatch(ValueError):
    """The output directory holds a run whose settings differ from the requested ones."""


class Interrupted(RuntimeError):
    """Ctrl-C during training: a checkpoint was saved after the last finished step."""


class Trainer:
    """Owns a run directory: config.json, checkpoints/, tensorboard/, history.jsonl, results.json."""

    def __init__(self, config: TrainConfig, bundle: DataBundle | None = None, log=print, *,
                 force_new: bool = False):
        """force_new: delete a previous run in output_dir (checkpoints, history, results,
        TensorBoard logs, config.json) and start over; otherwise a previous run whose
        settings differ (beyond RESUMABLE_SETTINGS) raises ConfigMismatch."""
        self.config = config
        self.log = log
        self.output_dir = pathlib.Path(config.output_dir)
        self.output_dir.mkdir(parents=True, exist_ok=True)
        self.policy = resolve_precision(config.mixed_precision)
        if not force_new:
            self.check_resumable()
            self.check_precision()
        keras.utils.set_random_seed(config.seed)  # the same initial weights for the same seed
        self.strategy = select_strategy(config.strategy)
        self.bundle = bundle or load_data(config)
        vocab_size = len(self.bundle.vocabulary) if self.bundle.vocabulary else None
        with self.strategy.scope():
            self.model = build_model(config, length_model(config, self.bundle), vocab_size, self.policy)
            # No clipnorm here: Keras clips each replica's gradient before the all-reduce;
            # the step clips the summed gradient instead (clip_across_replicas).
            optimizer = (keras.optimizers.Adam(learning_rate=config.learning_rate,
                                               epsilon=config.adam_epsilon)
                         if config.optimizer == "adam" else
                         keras.optimizers.SGD(learning_rate=config.learning_rate))
            if self.policy == "mixed_float16":
                optimizer = keras.optimizers.LossScaleOptimizer(optimizer)
            self.optimizer = optimizer
            self.optimizer.build(self.model.trainable_variables)
            self.state = TrainState(config.learning_rate)
            self.position = EpochPosition()
            self.accumulator = GradientAccumulator(self.model) if config.grad_accum > 1 else None
        if force_new:  # only now that the configuration, the data and the model are known good
            self.clear_previous_run()
        self._checkpoint_parts = dict(**checkpoint_objects(self.model), **optimizer_objects(self.optimizer),
                                      state=self.state, rng=SeedStates(self.model))
        self.checkpoint = tf.train.Checkpoint(**self._checkpoint_parts, position=self.position,
                                              **({"accumulator": self.accumulator}
                                                 if self.accumulator is not None else {}))
        self.latest = tf.train.CheckpointManager(self.checkpoint, self.output_dir / "checkpoints" / "latest",
                                                 max_to_keep=2)
        self.best = tf.train.CheckpointManager(self.checkpoint, self.output_dir / "checkpoints" / "best",
                                               max_to_keep=1)
        self._train_step = None
        self._loss_sums_step = None
        self._nll_steps = {}

    # -- persistence --------------------------------------------------------------------

    def write_config(self):
        resolved = portable_config(self.config)
        resolved["model_config"] = self.model.get_config()
        resolved["precision_policy"] = self.policy
        resolved["num_replicas"] = self.strategy.num_replicas_in_sync
        if self.bundle.vocabulary is not None:
            resolved["vocabulary"] = list(self.bundle.vocabulary)
        _atomic_write(self.output_dir / "config.json", json.dumps(resolved, indent=2, default=str))

    def _parts_for(self, path) -> dict:
        """The checkpoint objects that read `path` (checked weight by weight first)."""
        layout = check_model_weights(path, self.model)
        if layout == "named":
            return self._checkpoint_parts
        self.log(f"{path}: written before the weights were keyed by name; read in creation order")
        return dict(self._checkpoint_parts, **checkpoint_objects(self.model, layout))

    def restore_latest(self) -> bool:
        path = self.latest.latest_checkpoint
        if path is None:
            return False
        parts = self._parts_for(path)
        stored = {name.split("/")[0] for name, _ in tf.train.list_variables(path)}
        if "position" in stored:
            inside = {"position": self.position}  # and the gradient accumulated in the group
            if self.accumulator is not None:
                inside["accumulator"] = self.accumulator
            tf.train.Checkpoint(**parts, **inside).restore(path).assert_existing_objects_matched()
        else:  # written before EpochPosition existed: an epoch boundary
            tf.train.Checkpoint(**parts).restore(path).assert_existing_objects_matched()
            self.position.epoch_step.assign(0)
            self.position.epoch_sums.assign([0.0, 0.0])
        self.optimizer.learning_rate = float(self.state.learning_rate.numpy())
        self.log(f"resumed from {path}: epoch {int(self.state.epoch.numpy())}, "
                 f"step {int(self.state.global_step.numpy())}")
        return True

    def restore_for_evaluation(self) -> str:
        path = self.best.latest_checkpoint or self.latest.latest_checkpoint
        if path is None:
            raise FileNotFoundError(f"no checkpoint in {self.output_dir / 'checkpoints'}")
        parts = self._parts_for(path)
        model_parts = {k: v for k, v in parts.items() if k.startswith("model")}
        tf.train.Checkpoint(**model_parts, state=self.state).restore(
            path).expect_partial().assert_existing_objects_matched()
        return path

    # -- steps --------------------------------------------------------------------------

    def _step_seed(self, step):
        return tf.random.experimental.stateless_fold_in(
            tf.constant([self.config.seed, 7919], tf.int64), tf.cast(step, tf.int64))

    def _make_train_step(self, element_spec):
        config, model, optimizer, strategy = self.config, self.model, self.optimizer, self.strategy

        def loss_and_gradients(batch, kl_weight, seed, global_sequences):
            # This replica's share of the global objective: the sum of its sequences'
            # per-step losses over the number of sequences in the global batch, so that
            # the replicas' shares (and gradients) add up to the one-device mean however
            # unevenly the batch is split (5 = 3 + 2 over two replicas). Filler rows
            # (weight 0, `data.pipeline`) count for nothing.
            weight = batch["weight"]
            with tf.GradientTape() as tape:
                terms = sequence_terms(model, batch, kl_weight=kl_weight,
                                       num_samples=config.elbo_samples, seed=seed, training=True)
                per_step = evaluation.per_step(terms["loss"], batch["lengths"]) * weight
                loss = tf.reduce_sum(per_step) / global_sequences
                scaled = optimizer.scale_loss(loss) if hasattr(optimizer, "scale_loss") else loss
            gradients = tape.gradient(scaled, model.trainable_variables)
            # Row gathers (the T-feature rows of a kernel) give IndexedSlices; clipping and
            # the all-reduce want dense tensors of the weight's shape.
            gradients = [tf.convert_to_tensor(g) if isinstance(g, tf.IndexedSlices) else g
                         for g in gradients]
            kl = tf.reduce_sum(evaluation.per_step(terms["kl"], batch["lengths"]) * weight) / global_sequences
            return loss, kl, gradients

        if config.jit_compile:  # the per-replica math only: the all-reduce in apply_gradients stays outside
            loss_and_gradients = tf.function(loss_and_gradients, jit_compile=True)

        def replica_terms(batch, kl_weight, seed):
            context = tf.distribute.get_replica_context()
            seed = tf.random.experimental.stateless_fold_in(
                seed, tf.cast(context.replica_id_in_sync_group, tf.int64))
            sequences = tf.reduce_sum(batch["weight"])
            if context.num_replicas_in_sync > 1:
                sequences = context.all_reduce(tf.distribute.ReduceOp.SUM, sequences)
            return loss_and_gradients(batch, kl_weight, seed, sequences)

        accumulator = self.accumulator

        def replica_accumulate(batch, kl_weight, seed):
            loss, kl, gradients = replica_terms(batch, kl_weight, seed)
            for total, g in zip(accumulator.ordered, gradients):
                if g is not None:
                    total.assign_add(g)
            return loss, kl

        def replica_step(batch, kl_weight, seed, group):
            loss, kl, gradients = replica_terms(batch, kl_weight, seed)
            if accumulator is not None:  # the group's mean gradient; the sums start again
                gradients = [None if g is None else (total + g) / tf.cast(group, g.dtype)
                             for total, g in zip(accumulator.ordered, gradients)]
                for total in accumulator.ordered:
                    total.assign(tf.zeros_like(total))
            if config.clip_norm:
                scale = optimizer.dynamic_scale if hasattr(optimizer, "dynamic_scale") else 1.0
                gradients = clip_across_replicas(gradients, config.clip_norm, scale)
            optimizer.apply_gradients(zip(gradients, model.trainable_variables))
            return loss, kl

        signature = [element_spec, tf.TensorSpec([], tf.float32), tf.TensorSpec([2], tf.int64)]

        def reduced(loss, kl):
            return (strategy.reduce(tf.distribute.ReduceOp.SUM, loss, axis=None),
                    strategy.reduce(tf.distribute.ReduceOp.SUM, kl, axis=None))

        @tf.function(input_signature=signature + [tf.TensorSpec([], tf.float32)])
        def update_step(batch, kl_weight, seed, group):
            return reduced(*strategy.run(replica_step, args=(batch, kl_weight, seed, group)))

        @tf.function(input_signature=signature)
        def accumulate_step(batch, kl_weight, seed):
            return reduced(*strategy.run(replica_accumulate, args=(batch, kl_weight, seed)))

        def train_step(batch, kl_weight, seed, group=1):
            """One batch: group = 0 adds its gradient to the accumulation group; group = k > 0
            ends a group of k batches (this one included) with the update."""
            if group == 0:
                return accumulate_step(batch, kl_weight, seed)
            return update_step(batch, kl_weight, seed, tf.constant(group, tf.float32))

        @tf.function(input_signature=signature)
        def compile_step(batch, kl_weight, seed):
            # The same per-replica function as train_step (so the same XLA cache entry),
            # nothing applied; every output is used, so no pass prunes the function.
            def replica(batch):
                loss, kl, gradients = replica_terms(batch, kl_weight, seed)
                return loss + kl + tf.add_n([tf.reduce_sum(tf.cast(g, tf.float32))
                                             for g in gradients if g is not None])
            return strategy.reduce(tf.distribute.ReduceOp.SUM,
                                   strategy.run(replica, args=(batch,)), axis=None)

        self._compile_step = compile_step
        return train_step

    def precompile(self) -> int:
        """With jit_compile, run the XLA compile of the training step for every shape a
        training batch of this run can have (`data.batch_shapes`) before the first step,
        on batches of zeros, without touching any weight or optimizer slot; returns the
        number of shapes (0 without jit_compile, or with max_steps_per_epoch). Without it a
        shape first met in a later epoch compiled there (7-12 s each for JSB), and epoch
        times alternated."""
        if not self.config.jit_compile or self.config.max_steps_per_epoch:
            return 0  # a capped (smoke) run compiles the few shapes it meets as it meets them
        config = batch_config(self.config, self.bundle, epoch=0)
        shapes = D.batch_shapes(self.bundle.lengths["train"], config)
        # The forward pass draws dropout masks, which advances the seed generators; put
        # them back, so that a run (or a resumed run) trains as if nothing had run here.
        rng = self._checkpoint_parts["rng"].states
        saved = {k: v.numpy() for k, v in rng.items()}
        for rows, steps in shapes:
            x_shape = [rows, steps] + ([] if self.config.is_text else [88])
            x_dtype = tf.int32 if self.config.is_text else tf.float32
            dummy = {"x": tf.zeros(x_shape, x_dtype), "lengths": tf.ones([rows], tf.int32),
                     "mask": tf.sequence_mask(tf.ones([rows], tf.int32), steps, dtype=tf.float32),
                     "weight": tf.ones([rows], tf.float32)}
            batch = next(iter(self.strategy.experimental_distribute_dataset(
                tf.data.Dataset.from_tensors(dummy))))
            self._compile_step(batch, tf.constant(0.0), self._step_seed(0))
        for key, value in saved.items():
            rng[key].assign(value)
        return len(shapes)

    def _loss_sums(self, dataset, kl_weight):
        """Corpus sums over a split of the training objective's terms (no dropout).

        The step function is traced once per run (the batch signature is the dataset's
        element spec and the KL weight is a tensor), not once per epoch.
        """
        model, config = self.model, self.config
        if self._loss_sums_step is None:
            @tf.function(input_signature=[dataset.element_spec, tf.TensorSpec([], tf.float32),
                                          tf.TensorSpec([2], tf.int64)], jit_compile=config.jit_compile)
            def sums(batch, weight, seed):
                terms = sequence_terms(model, batch, kl_weight=weight,
                                       num_samples=config.elbo_samples, seed=seed, training=False)
                rows = batch["weight"]
                steps = tf.cast(evaluation.step_counts(batch["lengths"]), tf.float32) * rows
                return (tf.reduce_sum(terms["loss"] * rows), tf.reduce_sum(terms["kl"] * rows),
                        tf.reduce_sum(steps))

            self._loss_sums_step = sums
        weight = tf.constant(kl_weight, tf.float32)
        total = np.zeros(3)
        for i, batch in enumerate(dataset):
            if config.max_eval_batches and i >= config.max_eval_batches:
                break
            total += np.array([float(v) for v in
                               self._loss_sums_step(batch, weight, self._step_seed(10**9 + i))])
        return {"loss": total[0] / total[2], "kl": total[1] / total[2]}

    def evaluate_nll(self, split: str, num_samples: int) -> dict:
        """Importance-sampled NLL of a split, per step (T + 1) in the paper's unit."""
        config = self.config
        dataset = batches(config, self.bundle, split)
        sums = self._nll_steps.get(num_samples)
        if sums is None:
            sums = self._nll_steps[num_samples] = self._make_nll_step(dataset.element_spec, num_samples)
        total = np.zeros(5)
        for i, batch in enumerate(dataset):
            if config.max_eval_batches and i >= config.max_eval_batches:
                break
            total += np.array([float(v) for v in sums(batch, self._step_seed(2 * 10**9 + i))])
        scale = 1.0 / total[3] / (math.log(2.0) if config.is_text else 1.0)
        return {"nll": total[0] * scale, "reconstruction": total[1] * scale, "kl": total[2] * scale,
                "unit": "bits per character" if config.is_text else "nats per time step",
                "sequences": int(total[4]), "num_samples": 1 if config.is_baseline else num_samples}

    def _make_nll_step(self, element_spec, num_samples: int):
        """One traced importance-sampled NLL step, shared by every split."""
        model = self.model

        @tf.function(input_signature=[element_spec, tf.TensorSpec([2], tf.int64)],
                     jit_compile=self.config.jit_compile)
        def sums(batch, seed):
            lengths = batch["lengths"]
            if isinstance(model, LSTMBaseline):
                nll = model.nll(batch["x"], lengths)
                reconstruction, kl = nll + model.length_model.log_prob(lengths), tf.zeros_like(nll)
            else:
                out = model.nll(batch["x"], lengths, num_samples=num_samples, seed=seed,
                                chunk_size=min(num_samples, 10))
                nll, reconstruction, kl = out["nll"], -out["reconstruction"], out["kl"]
            rows = batch["weight"]
            steps = tf.cast(evaluation.step_counts(lengths), tf.float32)
            return (tf.reduce_sum(nll * rows), tf.reduce_sum(reconstruction * rows),
                    tf.reduce_sum(kl * rows), tf.reduce_sum(steps * rows), tf.reduce_sum(rows))

        return sums

    # -- the loop -----------------------------------------------------------------------

    def changed_settings(self) -> dict:
        """Settings that differ from the run directory's config.json: {name: (saved, now)}."""
        path = self.output_dir / "config.json"
        if not path.exists():
            return {}
        saved = json.loads(path.read_text())
        now = json.loads(self.config.to_json())
        # A setting added after the run was saved counts as the value the code had then.
        saved = {key: saved_value(saved, key) for key in now}
        return {key: (saved[key], value) for key, value in now.items()
                if saved[key] != value and key not in PATH_SETTINGS}  # a moved run is the same run

    def check_resumable(self):
        """Refuse a run directory whose checkpointed run has different settings."""
        if tf.train.latest_checkpoint(str(self.output_dir / "checkpoints" / "latest")) is None:
            return  # nothing to resume: config.json is rewritten
        changed = self.changed_settings()
        blocking = {key: values for key, values in changed.items() if key not in RESUMABLE_SETTINGS}
        if blocking:
            raise ConfigMismatch(
                f"{self.output_dir} holds a run with different settings: " + ", ".join(
                    f"{key} {old!r} (saved) vs {new!r} (now)" for key, (old, new) in sorted(blocking.items()))
                + "; re-run with the saved settings to resume, or pass --force-new to delete that run "
                  "and start over")
        if changed:  # e.g. more --epochs; the new values apply from the resumed epoch on
            self.log("resuming with changed settings: " + ", ".join(
                f"{key} {old!r} -> {new!r}" for key, (old, new) in sorted(changed.items())))

    def check_precision(self):
        """Refuse to resume a run in another precision than it was trained in (a mixed
        float16 run's checkpoints hold a loss-scale optimizer; its numbers another rounding)."""
        path = self.output_dir / "config.json"
        if not path.exists() or tf.train.latest_checkpoint(
                str(self.output_dir / "checkpoints" / "latest")) is None:
            return
        saved = json.loads(path.read_text()).get("precision_policy", "float32")
        if saved != self.policy:
            raise ConfigMismatch(
                f"{self.output_dir} was trained with the {saved} policy and would resume with "
                f"{self.policy} (--mixed-precision {self.config.mixed_precision} on this machine); "
                f"resume it where it can run in {saved}, or pass --force-new to start over")

    def clear_previous_run(self):
        for name in ("checkpoints", "tensorboard"):
            shutil.rmtree(self.output_dir / name, ignore_errors=True)
        for name in ("config.json", "history.jsonl", "results.json"):
            (self.output_dir / name).unlink(missing_ok=True)

    def fit(self):
        """Train up to config.epochs (resuming from checkpoints/latest).

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

    def _stop_if_interrupted(self, epoch, step, steps_per_epoch):
        if self._interrupt_requested:
            path = self.latest.save(checkpoint_number=int(self.state.global_step.numpy()))
            raise Interrupted(f"interrupted at epoch {epoch}, step {step} of {steps_per_epoch}; saved {path}; "
                              f"re-run the same command to resume")

    def _fit(self):
        config, state = self.config, self.state
        self.restore_latest()
        self.write_config()
        writer = tf.summary.create_file_writer(str(self.output_dir / "tensorboard"))
        steps_per_epoch = sum(1 for _ in batches(config, self.bundle, "train", epoch=0))
        if config.max_steps_per_epoch:
            steps_per_epoch = min(steps_per_epoch, config.max_steps_per_epoch)
        validation = batches(config, self.bundle, "validation")
        kl_schedule = config.kl_schedule_spec
        while int(state.epoch.numpy()) < config.epochs:
            epoch = int(state.epoch.numpy())
            started = time.perf_counter()
            dataset = self.strategy.experimental_distribute_dataset(
                batches(config, self.bundle, "train", epoch=epoch))
            if self._train_step is None:
                self._train_step = self._make_train_step(dataset.element_spec)
                compiled = time.perf_counter()
                if shapes := self.precompile():
                    self.log(f"compiled the training step for {shapes} batch shapes with XLA "
                             f"in {time.perf_counter() - compiled:.0f} s")
            progress = keras.utils.Progbar(steps_per_epoch, stateful_metrics=[
                "loss", "kl", "kl_weight", "steps/s"])
            first = int(self.position.epoch_step.numpy())  # > 0 when resuming inside an epoch
            sums, step = self.position.epoch_sums.numpy().copy(), first - 1
            global_step = int(state.global_step.numpy())
            pending = []  # steps whose (loss, kl) the host has not read yet

            def read_pending():
                # One device -> host transfer for up to HOST_SYNC_STEPS steps: the NaN check,
                # the epoch sums and position, the progress bar and the summaries. Checkpoints
                # are only written after this ran (epoch end, interrupt), so a non-finite step
                # is always found before it could be saved.
                values = tf.stack([tf.stack(p[1:3]) for p in pending]).numpy().astype(float)
                for (at, _, _, weight), (loss, kl) in zip(pending, values):
                    if not (math.isfinite(loss) and math.isfinite(kl)):
                        raise TrainingDiverged(
                            f"{config.dataset}/{config.model}: non-finite training loss ({loss}, "
                            f"kl {kl}) at epoch {epoch}, step {at}; stopped without saving (the "
                            f"best and latest checkpoints are from before)")
                    sums[:] += (loss, kl)
                    elapsed = time.perf_counter() - loop_started  # after the compiles
                    progress.update(at + 1, [("loss", loss), ("kl", kl), ("kl_weight", weight),
                                             ("steps/s", (at + 1 - first) / max(elapsed, 1e-9))])
                    run_step = global_step - (step - at)
                    if run_step % 10 == 0:
                        with writer.as_default(step=run_step):
                            tf.summary.scalar("train/loss", loss)
                            tf.summary.scalar("train/kl", kl)
                            tf.summary.scalar("train/kl_weight", weight)
                self.position.epoch_step.assign(pending[-1][0] + 1)
                self.position.epoch_sums.assign(sums)
                pending.clear()

            loop_started = time.perf_counter()
            for step, batch in enumerate(itertools.islice(dataset, steps_per_epoch)):
                if step < first:
                    continue
                weight = kl_schedule.at(epoch, step, steps_per_epoch)
                # Accumulation groups start at step 0 of each epoch; the last may be shorter.
                in_group = step % config.grad_accum + 1
                group = in_group if in_group == config.grad_accum or step + 1 == steps_per_epoch else 0
                loss, kl = self._train_step(batch, tf.constant(weight, tf.float32),
                                            self._step_seed(state.global_step), group)
                state.global_step.assign_add(1)
                global_step += 1
                pending.append((step, loss, kl, weight))
                if (len(pending) >= HOST_SYNC_STEPS or step + 1 == steps_per_epoch
                        or self._interrupt_requested):
                    read_pending()
                if step + 1 < steps_per_epoch:
                    self._stop_if_interrupted(epoch, step + 1, steps_per_epoch)
            if pending:  # the dataset ended before steps_per_epoch
                read_pending()
            train_seconds = time.perf_counter() - started  # the training pass (and compiles)
            end_weight = kl_schedule.at_epoch_end(epoch)
            val = self._loss_sums(validation, end_weight)
            record = {"epoch": epoch, "train_loss": sums[0] / max(step + 1, 1),
                      "train_kl": sums[1] / max(step + 1, 1), "validation_loss": val["loss"],
                      "validation_kl": val["kl"], "kl_weight": end_weight,
                      "learning_rate": float(state.learning_rate.numpy())}
            if config.validation_nll_samples:
                record["validation_nll"] = self.evaluate_nll("validation",
                                                             config.validation_nll_samples)["nll"]
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
            state.epoch.assign(epoch + 1)
            self.position.epoch_step.assign(0)
            self.position.epoch_sums.assign([0.0, 0.0])
            record["train_seconds"] = train_seconds
            record["epoch_seconds"] = time.perf_counter() - started  # training and validation
            state.wall_seconds.assign_add(record["epoch_seconds"])
            if record.get("improved"):
                self.best.save(checkpoint_number=epoch + 1)
            self.latest.save(checkpoint_number=int(state.global_step.numpy()))
            with writer.as_default(step=epoch + 1):
                for key in ("validation_loss", "validation_kl", "learning_rate"):
                    tf.summary.scalar(key.replace("_", "/", 1), record[key])
            with open(self.output_dir / "history.jsonl", "a") as f:
                f.write(json.dumps(record) + "\n")
            self.log(json.dumps(record))
            if self._interrupt_requested:  # Ctrl-C during validation: the epoch is saved
                raise Interrupted(f"interrupted after epoch {epoch} (saved); re-run the same command "
                                  f"to resume")
        writer.flush()

    def _run_totals(self) -> tuple[int, float]:
        """(epochs trained, training wall seconds) of the whole run: the latest checkpoint's."""
        path = self.latest.latest_checkpoint
        if path is None:
            return int(self.state.epoch.numpy()), float(self.state.wall_seconds.numpy())
        state = TrainState(self.config.learning_rate)
        tf.train.Checkpoint(state=state).restore(path).expect_partial()
        return int(state.epoch.numpy()), float(state.wall_seconds.numpy())

    def evaluate(self) -> dict:
        """Evaluate the best checkpoint and write results.json.

        epochs_trained / wall_seconds describe the run (its latest checkpoint); best_epoch /
        best_wall_seconds the evaluated checkpoint (the epochs and training time it took).
        """
        epochs_trained, wall_seconds = self._run_totals()
        path = self.restore_for_evaluation()
        started = time.perf_counter()
        results = {
            "dataset": self.config.dataset, "model": self.config.model,
            "config": portable_config(self.config),
            "checkpoint": os.path.relpath(path, self.output_dir),
            "epochs_trained": epochs_trained,
            "wall_seconds": wall_seconds,
            "best_epoch": int(self.state.epoch.numpy()),
            "best_wall_seconds": float(self.state.wall_seconds.numpy()),
            "validation": self.evaluate_nll("validation", self.config.nll_samples),
            "test": self.evaluate_nll("test", self.config.nll_samples),
        }
        results["evaluation_seconds"] = time.perf_counter() - started
        _atomic_write(self.output_dir / "results.json", json.dumps(results, indent=2))
        self.log(json.dumps({k: results[k] for k in ("validation", "test")}))
        return results


# Where the run's files were on the machine that trained: not part of what the run is.
PATH_SETTINGS = frozenset({"output_dir", "data_dir", "prepared_dir"})


def portable_config(config: TrainConfig) -> dict:
    """The run's settings without machine paths (results.json is published as is)."""
    return {k: v for k, v in json.loads(config.to_json()).items() if k not in PATH_SETTINGS}


def results_table(results: dict) -> str:
    """The evaluation of results.json as a small text table (printed at the end of a run)."""
    unit = results["test"]["unit"]
    best = results.get("best_epoch", results["epochs_trained"])
    lines = [f"{results['dataset']} / {results['model']}: {results['checkpoint']} "
             f"(best after {best} of {results['epochs_trained']} epochs, "
             f"{results['wall_seconds'] / 60:.1f} min training)",
             f"{'split':<12}{'NLL':>9}{'recon.':>9}{'KL':>9}  ({unit}, {results['test']['num_samples']} "
             f"importance samples)"]
    for split in ("validation", "test"):
        r = results[split]
        lines.append(f"{split:<12}{r['nll']:>9.3f}{r['reconstruction']:>9.3f}{r['kl']:>9.3f}")
    return "\n".join(lines)


def _atomic_write(path: pathlib.Path, text: str) -> None:
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_text(text + "\n")
    os.replace(tmp, path)


def run(config: TrainConfig, log=print, *, force_new: bool = False) -> dict:
    """Train (resuming if the output directory has a checkpoint), then evaluate."""
    trainer = Trainer(config, log=log, force_new=force_new)
    if not config.evaluate_only:
        trainer.fit()
    return trainer.evaluate()
