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

import numpy as np
import tensorflow as tf

from tf_latentflow import evaluation
from tf_latentflow.training.config import TrainConfig
from tf_latentflow.training.distribution import clip_across_replicas, global_norm_across_replicas
from tf_latentflow.training.inputs import zero_batch

__all__ = ["step_seed", "nll_chunk", "TrainSteps"]

MAX_NLL_CHUNK = 10  # importance samples at once (the chunk every earlier result used)


def step_seed(config: TrainConfig, step) -> tf.Tensor:
    """The stateless seed of global step `step` (also of evaluation batches, offset)."""
    return tf.random.experimental.stateless_fold_in(
        tf.constant([config.seed, 7919], tf.int64), tf.cast(step, tf.int64))


def nll_chunk(num_samples: int, rows: int, steps: int, budget: int) -> int:
    """Importance samples evaluated at once for a batch of [rows, steps]:

        chunk = max(1, min(K, 10, floor(budget / (rows * steps))))

    The NLL's memory grows with chunk x rows x steps (the K samples are a loop over
    chunks, `LatentFlowVAE.nll`); 10 samples of a Nottingham validation batch of 16 at
    1,480 steps asked for a 17.7 GiB buffer. Chunk c draws from fold_in(seed, c), so the
    estimate's random draws depend on the chunk (its distribution does not); batches
    within the budget keep the chunk of 10 of every earlier result."""
    return max(1, min(int(num_samples), MAX_NLL_CHUNK, int(budget) // max(int(rows) * int(steps), 1)))


class TrainSteps:
    """The run's tf.functions, traced once each (the batch signature is the dataset's
    element spec; the KL weight and seed are tensors)."""

    def __init__(self, config: TrainConfig, model, optimizer, strategy, accumulator=None):
        self.config, self.model, self.optimizer, self.strategy = config, model, optimizer, strategy
        self.accumulator = accumulator
        self.train_step = None
        self._compile_step = None
        self._loss_sums_step = None
        self._nll_steps = {}
        # The pre-clip gradient norm needs the replicas' summed gradient: clipping computes
        # it anyway; without clipping on several replicas it would cost an all-reduce of
        # every gradient per update, so it is not measured (`step_statistics`).
        self.measures_grad_norm = bool(config.clip_norm) or strategy.num_replicas_in_sync == 1

    # -- training ------------------------------------------------------------------------

    def build_train_step(self, element_spec):
        """Trace `train_step(batch, kl_weight, seed, group=1)` for batches of `element_spec`."""
        config, model, optimizer, strategy = self.config, self.model, self.optimizer, self.strategy

        def loss_and_gradients(batch, kl_weight, seed, global_sequences):
            # This replica's share of the global objective: the sum of its sequences'
            # per-step losses over the number of sequences in the global batch, so that
            # the replicas' shares (and gradients) add up to the one-device mean however
            # unevenly the batch is split (5 = 3 + 2 over two replicas). Filler rows
            # (weight 0, `data.pipeline`) count for nothing.
            weight = batch["weight"]
            with tf.GradientTape() as tape:
                terms = model.loss_terms(batch["x"], batch["lengths"], kl_weight=kl_weight,
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

        accumulator, measures_grad_norm = self.accumulator, self.measures_grad_norm

        def replica_accumulate(batch, kl_weight, seed):
            loss, kl, gradients = replica_terms(batch, kl_weight, seed)
            for total, g in zip(accumulator.ordered, gradients):
                if g is not None:
                    total.assign_add(g)
            return loss, kl, tf.constant(0.0)  # no update: no norm

        def replica_step(batch, kl_weight, seed, group):
            loss, kl, gradients = replica_terms(batch, kl_weight, seed)
            if accumulator is not None:  # the group's mean gradient; the sums start again
                gradients = [None if g is None else (total + g) / tf.cast(group, g.dtype)
                             for total, g in zip(accumulator.ordered, gradients)]
                for total in accumulator.ordered:
                    total.assign(tf.zeros_like(total))
            scale = optimizer.dynamic_scale if hasattr(optimizer, "dynamic_scale") else 1.0
            norm = tf.constant(float("nan"))
            if measures_grad_norm:
                norm = global_norm_across_replicas(gradients, scale)  # before clipping
            if config.clip_norm:
                gradients = clip_across_replicas(gradients, config.clip_norm, scale, norm=norm)
            optimizer.apply_gradients(zip(gradients, model.trainable_variables))
            return loss, kl, norm

        signature = [element_spec, tf.TensorSpec([], tf.float32), tf.TensorSpec([2], tf.int64)]

        def reduced(loss, kl, norm):
            # loss and kl: the replicas' shares of the global mean; the norm is the
            # same on every replica (that of the summed gradient)
            return (strategy.reduce(tf.distribute.ReduceOp.SUM, loss, axis=None),
                    strategy.reduce(tf.distribute.ReduceOp.SUM, kl, axis=None),
                    strategy.reduce(tf.distribute.ReduceOp.MEAN, norm, axis=None))

        @tf.function(input_signature=signature + [tf.TensorSpec([], tf.float32)])
        def update_step(batch, kl_weight, seed, group):
            return reduced(*strategy.run(replica_step, args=(batch, kl_weight, seed, group)))

        @tf.function(input_signature=signature)
        def accumulate_step(batch, kl_weight, seed):
            return reduced(*strategy.run(replica_accumulate, args=(batch, kl_weight, seed)))

        def train_step(batch, kl_weight, seed, group=1):
            """One batch: group = 0 adds its gradient to the accumulation group; group = k > 0
            ends a group of k batches (this one included) with the update. Returns the
            batch's (loss, kl) and the update's global gradient norm before clipping
            (0 when group = 0: no update; NaN when not `measures_grad_norm`)."""
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
        self.train_step = train_step
        return train_step

    def precompile(self, shapes, rng) -> int:
        """Run the XLA compile of the training step for every (rows, steps) in `shapes`
        before the first step, on batches of zeros, without touching any weight or
        optimizer slot; returns the number of shapes. Without it a shape first met in a
        later epoch compiled there (7-12 s each for JSB), and epoch times alternated.

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
