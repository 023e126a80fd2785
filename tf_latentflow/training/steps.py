"""The compiled steps of a run: training (with clipping and gradient accumulation),
precompiling every training shape, the validation loss sums and the importance-sampled
NLL sums.

    per replica:  loss = sum_b w_b loss_b / (T_b + 1) / (sequences in the global batch)
                  (the reference objective, a batch mean of per-step losses; w_b = 0 for
                  the filler rows of a filled batch)
    update:       gradients clipped by the global norm across replicas, Adam or SGD;
                  the step returns (loss, kl, ||g|| before clipping) for the epoch's
                  statistics (`training.step_statistics`)

Every step uses only the `SequenceModel` interface (`loss_terms`, `nll_terms`), so it
serves every model of the registry. With jit_compile the per-replica math runs under
XLA (the all-reduce and the optimizer update stay outside).
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np
import tensorflow as tf

from tf_latentflow import evaluation
from tf_latentflow.training.config import TrainConfig
from tf_latentflow.training.distribution import clip_across_replicas, global_norm_across_replicas
from tf_latentflow.training.inputs import zero_batch

__all__ = ["step_seed", "nll_chunk", "StepOutput", "ReplicaTerms", "TrainSteps"]

MAX_NLL_CHUNK = 10  # importance samples at once


def step_seed(config: TrainConfig, step) -> tf.Tensor:
    """The stateless seed of global step `step` (also of evaluation batches, offset)."""
    return tf.random.experimental.stateless_fold_in(
        tf.constant([config.seed, 7919], tf.int64), tf.cast(step, tf.int64))


def nll_chunk(num_samples: int, rows: int, steps: int, budget: int) -> int:
    """Importance samples evaluated at once for a batch of [rows, steps]:

        chunk = max(1, min(K, 10, floor(budget / (rows * steps))))

    The NLL's memory grows with chunk x rows x steps (the K samples are a loop over
    chunks, `LatentFlowVAE.nll`): with 10 samples at once, a Nottingham validation batch
    of 16 at 1,480 steps would need a buffer of many GiB. Chunk c draws from fold_in(seed, c), so
    the estimate's random draws depend on the chunk (its distribution does not); batches
    within the budget keep the chunk of 10."""
    return max(1, min(int(num_samples), MAX_NLL_CHUNK, int(budget) // max(int(rows) * int(steps), 1)))


class StepOutput(NamedTuple):
    """What a training step returns: the batch's loss and KL term (the reference objective's
    batch mean of per-step values) and the update's global gradient norm before clipping
    (0 when the step only accumulated: no update; NaN when not `measures_grad_norm`)."""

    loss: tf.Tensor
    kl: tf.Tensor
    grad_norm: tf.Tensor


class ReplicaTerms(NamedTuple):
    """One replica's share of a step: its loss and KL shares of the global batch mean and the
    gradient of its loss share (one entry per trainable variable, None where unconnected)."""

    loss: tf.Tensor
    kl: tf.Tensor
    gradients: list


class TrainSteps:
    """The run's tf.functions, traced once each (the batch signature is the dataset's
    element spec; the KL weight and seed are tensors)."""

    def __init__(self, config: TrainConfig, model, optimizer, strategy, accumulator=None):
        self.config, self.model, self.optimizer, self.strategy = config, model, optimizer, strategy
        self.accumulator = accumulator
        self.train_step = None
        self._loss_and_gradients = None
        self._compile_step = None
        self._loss_sums_step = None
        self._nll_steps = {}
        # The pre-clip gradient norm needs the replicas' summed gradient: clipping computes
        # it anyway; without clipping on several replicas it would cost an all-reduce of
        # every gradient per update, so it is not measured (`step_statistics`).
        self.measures_grad_norm = bool(config.clip_norm) or strategy.num_replicas_in_sync == 1

    # -- training ------------------------------------------------------------------------
    #
    # A training step, read top to bottom:
    #   train_step            group 0: accumulate_step; group k > 0: update_step
    #   update_step           strategy.run(_replica_update), the replicas' outputs reduced
    #   _replica_update       _replica_terms, the accumulation group's mean gradient, the
    #                         norm before clipping, clipping, the optimizer's update
    #   _replica_accumulate   _replica_terms, the gradient added to the accumulator
    #   _replica_terms        this replica's seed and the global batch's sequence count,
    #                         then _loss_and_gradients (XLA-compiled with jit_compile)

    def build_train_step(self, element_spec):
        """Trace `train_step(batch, kl_weight, seed, group=1) -> StepOutput` for batches of
        `element_spec`: group = 0 adds the batch's gradient to the accumulation group;
        group = k > 0 ends a group of k batches (this one included) with the update."""
        # The per-replica math only: the all-reduce in apply_gradients stays outside XLA.
        self._loss_and_gradients = (tf.function(self._replica_loss_and_gradients, jit_compile=True)
                                    if self.config.jit_compile else self._replica_loss_and_gradients)
        signature = [element_spec, tf.TensorSpec([], tf.float32), tf.TensorSpec([2], tf.int64)]
        update_step = tf.function(self._update_step, input_signature=signature + [tf.TensorSpec([], tf.float32)])
        accumulate_step = tf.function(self._accumulate_step, input_signature=signature)
        self._compile_step = tf.function(self._compile_only_step, input_signature=signature)

        def train_step(batch, kl_weight, seed, group=1) -> StepOutput:
            if group == 0:
                return accumulate_step(batch, kl_weight, seed)
            return update_step(batch, kl_weight, seed, tf.constant(group, tf.float32))

        self.train_step = train_step
        return train_step

    def _update_step(self, batch, kl_weight, seed, group) -> StepOutput:
        return self._reduce(self.strategy.run(self._replica_update, args=(batch, kl_weight, seed, group)))

    def _accumulate_step(self, batch, kl_weight, seed) -> StepOutput:
        return self._reduce(self.strategy.run(self._replica_accumulate, args=(batch, kl_weight, seed)))

    def _compile_only_step(self, batch, kl_weight, seed):
        """The same per-replica function as the training step (so the same XLA cache entry),
        nothing applied; every output is used, so no pass prunes the function."""
        def replica(batch):
            terms = self._replica_terms(batch, kl_weight, seed)
            return terms.loss + terms.kl + tf.add_n([tf.reduce_sum(tf.cast(g, tf.float32))
                                                     for g in terms.gradients if g is not None])
        return self.strategy.reduce(tf.distribute.ReduceOp.SUM, self.strategy.run(replica, args=(batch,)),
                                    axis=None)

    def _reduce(self, output: StepOutput) -> StepOutput:
        """The replicas' outputs as one: loss and kl are the replicas' shares of the global
        mean (summed); the norm is the same on every replica (that of the summed gradient)."""
        reduce = self.strategy.reduce
        return StepOutput(loss=reduce(tf.distribute.ReduceOp.SUM, output.loss, axis=None),
                          kl=reduce(tf.distribute.ReduceOp.SUM, output.kl, axis=None),
                          grad_norm=reduce(tf.distribute.ReduceOp.MEAN, output.grad_norm, axis=None))

    def _replica_update(self, batch, kl_weight, seed, group) -> StepOutput:
        terms = self._replica_terms(batch, kl_weight, seed)
        gradients = terms.gradients
        if self.accumulator is not None:
            gradients = self._group_mean(gradients, group)
        optimizer = self.optimizer
        scale = optimizer.dynamic_scale if hasattr(optimizer, "dynamic_scale") else 1.0
        norm = tf.constant(float("nan"))
        if self.measures_grad_norm:
            norm = global_norm_across_replicas(gradients, scale)  # before clipping
        if self.config.clip_norm:
            gradients = clip_across_replicas(gradients, self.config.clip_norm, scale, norm=norm)
        optimizer.apply_gradients(zip(gradients, self.model.trainable_variables))
        return StepOutput(terms.loss, terms.kl, norm)

    def _replica_accumulate(self, batch, kl_weight, seed) -> StepOutput:
        terms = self._replica_terms(batch, kl_weight, seed)
        for total, g in zip(self.accumulator.ordered, terms.gradients):
            if g is not None:
                total.assign_add(g)
        return StepOutput(terms.loss, terms.kl, tf.constant(0.0))  # no update: no norm

    def _group_mean(self, gradients, group):
        """The accumulation group's mean gradient (the sums so far and this batch's, over
        the group's size); the sums start again."""
        ordered = self.accumulator.ordered
        mean = [None if g is None else (total + g) / tf.cast(group, g.dtype)
                for total, g in zip(ordered, gradients)]
        for total in ordered:
            total.assign(tf.zeros_like(total))
        return mean

    def _replica_terms(self, batch, kl_weight, seed) -> ReplicaTerms:
        """This replica's seed (the step's, folded with the replica id) and the number of
        sequences in the global batch, then `_replica_loss_and_gradients`."""
        context = tf.distribute.get_replica_context()
        seed = tf.random.experimental.stateless_fold_in(
            seed, tf.cast(context.replica_id_in_sync_group, tf.int64))
        sequences = tf.reduce_sum(batch["weight"])
        if context.num_replicas_in_sync > 1:
            sequences = context.all_reduce(tf.distribute.ReduceOp.SUM, sequences)
        return self._loss_and_gradients(batch, kl_weight, seed, sequences)

    def _replica_loss_and_gradients(self, batch, kl_weight, seed, global_sequences) -> ReplicaTerms:
        """This replica's share of the global objective: the sum of its sequences' per-step
        losses over the number of sequences in the global batch, so that the replicas'
        shares (and gradients) add up to the one-device mean however unevenly the batch is
        split (5 = 3 + 2 over two replicas). Filler rows (weight 0, `data.pipeline`) count
        for nothing."""
        model, optimizer, weight = self.model, self.optimizer, batch["weight"]
        with tf.GradientTape() as tape:
            terms = model.loss_terms(batch["x"], batch["lengths"], kl_weight=kl_weight,
                                     num_samples=self.config.elbo_samples, seed=seed, training=True)
            per_step = evaluation.per_step(terms["loss"], batch["lengths"]) * weight
            loss = tf.reduce_sum(per_step) / global_sequences
            scaled = optimizer.scale_loss(loss) if hasattr(optimizer, "scale_loss") else loss
        gradients = tape.gradient(scaled, model.trainable_variables)
        # Row gathers (the T-feature rows of a kernel) give IndexedSlices; clipping and
        # the all-reduce want dense tensors of the weight's shape.
        gradients = [tf.convert_to_tensor(g) if isinstance(g, tf.IndexedSlices) else g
                     for g in gradients]
        kl = tf.reduce_sum(evaluation.per_step(terms["kl"], batch["lengths"]) * weight) / global_sequences
        return ReplicaTerms(loss, kl, gradients)

    def precompile(self, shapes, rng) -> int:
        """Run the XLA compile of the training step for every (rows, steps) in `shapes`
        before the first step, on batches of zeros, without touching any weight or
        optimizer slot; returns the number of shapes. Without it a shape first met in a
        later epoch compiles there, and epoch times alternate.

        rng: the model's `SeedStates`: the forward pass draws dropout masks, which
        advances the seed generators; they are put back, so that a run (or a resumed
        run) trains as if nothing had run here."""
        saved = rng.snapshot()
        for rows, steps in shapes:
            batch = next(iter(self.strategy.experimental_distribute_dataset(
                tf.data.Dataset.from_tensors(zero_batch(self.config, rows, steps)))))
            self._compile_step(batch, tf.constant(0.0), step_seed(self.config, 0))
        rng.restore(saved)
        return len(shapes)

    # -- evaluation ----------------------------------------------------------------------

    def loss_sums(self, dataset, kl_weight: float) -> dict:
        """Corpus means per step over a split of the training objective's terms (no
        dropout): {"loss", "kl"}."""
        model, config = self.model, self.config
        if self._loss_sums_step is None:
            @tf.function(input_signature=[dataset.element_spec, tf.TensorSpec([], tf.float32),
                                          tf.TensorSpec([2], tf.int64)], jit_compile=config.jit_compile)
            def sums(batch, weight, seed):
                terms = model.loss_terms(batch["x"], batch["lengths"], kl_weight=weight,
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
                               self._loss_sums_step(batch, weight, step_seed(config, 10**9 + i))])
        return {"loss": total[0] / total[2], "kl": total[1] / total[2]}

    def nll_sums(self, dataset, num_samples: int) -> np.ndarray:
        """Sums over a split of (nll, reconstruction, kl, steps T + 1, sequences), nats, with
        `num_samples` importance samples (`SequenceModel.nll_terms`)."""
        config = self.config
        total = np.zeros(5)
        for i, batch in enumerate(dataset):
            if config.max_eval_batches and i >= config.max_eval_batches:
                break
            rows, steps = batch["x"].shape[:2]
            chunk = nll_chunk(num_samples, rows, steps, config.nll_chunk_budget)
            step = self._nll_steps.get((num_samples, chunk))
            if step is None:  # one function per chunk size (each traced once)
                step = self._nll_steps[num_samples, chunk] = self._make_nll_step(
                    dataset.element_spec, num_samples, chunk)
            total += np.array([float(v) for v in step(batch, step_seed(config, 2 * 10**9 + i))])
        return total

    def _make_nll_step(self, element_spec, num_samples: int, chunk: int):
        model = self.model

        @tf.function(input_signature=[element_spec, tf.TensorSpec([2], tf.int64)],
                     jit_compile=self.config.jit_compile)
        def sums(batch, seed):
            lengths = batch["lengths"]
            terms = model.nll_terms(batch["x"], lengths, num_samples=num_samples, seed=seed,
                                    chunk_size=chunk)
            rows = batch["weight"]
            steps = tf.cast(evaluation.step_counts(lengths), tf.float32)
            return (tf.reduce_sum(terms["nll"] * rows), tf.reduce_sum(terms["reconstruction"] * rows),
                    tf.reduce_sum(terms["kl"] * rows), tf.reduce_sum(steps * rows), tf.reduce_sum(rows))

        return sums
