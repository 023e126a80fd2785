"""Devices and precision: the tf.distribute strategy, clipping across replicas, the dtype policy.

With `--strategy multiworker` the strategy is a `MultiWorkerMirroredStrategy` built from
TF_CONFIG (`cluster.py`: checked before TensorFlow reads it, and a cluster that does not
come up within a timeout ends the process with one line instead of a hang).
"""

from __future__ import annotations

import tensorflow as tf

from tf_latentflow.training.cluster import ClusterError, WorkerRole, multi_worker_strategy, worker_role

__all__ = ["ClusterError", "WorkerRole", "clip_across_replicas", "global_norm_across_replicas",
           "select_strategy", "resolve_precision", "worker_role"]


def global_norm_across_replicas(gradients, loss_scale=1.0) -> tf.Tensor:
    """||sum_r g_r|| / loss_scale: the global norm of the summed per-replica gradients (an
    all-reduce when there are replicas), unscaled for mixed float16; the same value on
    every replica. Runs in replica context."""
    context = tf.distribute.get_replica_context()
    present = [g for g in gradients if g is not None]
    if context is not None and context.num_replicas_in_sync > 1:
        present = context.all_reduce(tf.distribute.ReduceOp.SUM, present)
    return tf.linalg.global_norm([tf.cast(g, tf.float32) for g in present]) / tf.cast(loss_scale, tf.float32)


def clip_across_replicas(gradients, clip_norm: float, loss_scale=1.0, norm=None):
    """Per-replica gradients scaled so that their sum has global norm <= clip_norm.

        g_sum  = sum_r g_r                       (an all-reduce when there are replicas)
        factor = clip_norm / max(||g_sum|| / loss_scale, clip_norm)
        return   factor * g_r

    The optimizer then sums the replicas' factor * g_r: the clipped global gradient,
    as on one device (Keras's `global_clipnorm` clips every replica's part by its own
    norm before the all-reduce). `loss_scale` unscales mixed-float16 gradients for the
    norm; non-finite gradients stay non-finite, so the loss-scale optimizer still skips
    the step. `norm`: ||g_sum|| / loss_scale when already computed
    (`global_norm_across_replicas`). Runs in replica context.
    """
    if norm is None:
        norm = global_norm_across_replicas(gradients, loss_scale)
    factor = clip_norm / tf.maximum(norm, clip_norm)
    return [None if g is None else g * tf.cast(factor, g.dtype) for g in gradients]


def select_strategy(name: str) -> tf.distribute.Strategy:
    """"multiworker" (`cluster.multi_worker_strategy`: TF_CONFIG, every worker's local GPUs or
    CPU), "mirrored" (every local GPU, or the CPU), "default" (one device), or "auto":
    mirrored when more than one GPU is visible, else the default strategy."""
    if name == "multiworker":
        return multi_worker_strategy()
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
