"""Per-epoch statistics of the training steps, kept beside the epoch's mean loss.

The epoch mean of the batch losses hides a single bad step: a batch loss of 15 among
140 batches near 1.9 moves the mean by 0.1, the same as a slow drift. For every epoch
the history records, next to `train_loss`,

    train_loss_max, train_loss_max_step   max_s loss_s and its step s in the epoch
                                          (loss_s: the batch's mean per-step loss, the
                                          value the epoch mean averages)
    updates                               the optimizer updates of the epoch (one per
                                          accumulation group with --grad-accum; under
                                          mixed float16 including those the loss scale
                                          skipped, counted in nonfinite_grad_norms)
    grad_norm_max, grad_norm_mean         max and mean over those updates of the global
                                          norm ||g|| of the update's gradient (summed over
                                          replicas, averaged over the accumulation group,
                                          unscaled under mixed precision) BEFORE clipping
    clipped_updates                       the updates with ||g|| > clip_norm
    nonfinite_grad_norms                  the updates whose ||g|| was Inf or NaN (skipped
                                          by the mixed-precision loss scale; with float32
                                          the run stops at that update, before saving:
                                          `trainer.TrainingDiverged`)

so a transient excursion can be told apart from drift, and a large gradient from a
hard batch. Mean and max are over the finite norms; with no finite norm they are None.
Without clipping on several replicas the norm is not measured (it would cost an
all-reduce of the gradients per update that nothing else needs): the updates are
counted, the norm fields are None.

`StepStatistics` is the host-side accumulator; `EpochStatisticsState` holds its values
in a checkpointed variable so that an epoch resumed after Ctrl-C keeps its earlier
steps (`training.state.Checkpoints` restores it when stored; a checkpoint written
before it existed restores it empty).
"""

from __future__ import annotations

import dataclasses
import math

import tensorflow as tf

__all__ = ["StepStatistics", "EpochStatisticsState"]


@dataclasses.dataclass
class StepStatistics:
    """The running statistics of one epoch's training steps (see the module docstring)."""

    loss_max: float = -math.inf
    loss_max_step: int = -1
    norm_max: float = -math.inf
    norm_sum: float = 0.0
    finite_norms: int = 0
    updates: int = 0
    clipped: int = 0
    nonfinite: int = 0

    def add_loss(self, step: int, loss: float) -> None:
        """A step's batch loss (finite: the trainer stops on a non-finite one first)."""
        if loss > self.loss_max:
            self.loss_max, self.loss_max_step = float(loss), int(step)

    def add_update(self, norm: float | None, clip_norm: float | None) -> None:
        """An optimizer update whose pre-clip global gradient norm was `norm` (None: not
        measured)."""
        self.updates += 1
        if norm is None:
            return
        if not math.isfinite(norm):
            self.nonfinite += 1
            return
        self.finite_norms += 1
        self.norm_sum += float(norm)
        self.norm_max = max(self.norm_max, float(norm))
        if clip_norm and norm > clip_norm:
            self.clipped += 1

    def record(self) -> dict:
        """The history fields of the epoch."""
        finite = self.finite_norms > 0
        return {"train_loss_max": self.loss_max if self.loss_max_step >= 0 else None,
                "train_loss_max_step": self.loss_max_step if self.loss_max_step >= 0 else None,
                "updates": self.updates,
                "grad_norm_max": self.norm_max if finite else None,
                "grad_norm_mean": self.norm_sum / self.finite_norms if finite else None,
                "clipped_updates": self.clipped,
                "nonfinite_grad_norms": self.nonfinite}

    _FIELDS = ("loss_max", "loss_max_step", "norm_max", "norm_sum", "finite_norms", "updates", "clipped",
               "nonfinite")

    def to_vector(self) -> list[float]:
        return [float(getattr(self, name)) for name in self._FIELDS]

    @classmethod
    def from_vector(cls, values) -> "StepStatistics":
        values = [float(v) for v in values]
        kwargs = dict(zip(cls._FIELDS, values))
        for name in ("loss_max_step", "finite_norms", "updates", "clipped", "nonfinite"):
            kwargs[name] = int(kwargs[name])
        return cls(**kwargs)


class EpochStatisticsState(tf.Module):
    """`StepStatistics` of the current epoch as a checkpointed float64 vector (what the
    last host read saw; reset at every epoch end)."""

    def __init__(self):
        super().__init__(name="epoch_statistics")
        self.values = tf.Variable(StepStatistics().to_vector(), dtype=tf.float64, trainable=False,
                                  name="values")

    def read(self) -> StepStatistics:
        return StepStatistics.from_vector(self.values.numpy())

    def write(self, statistics: StepStatistics) -> None:
        self.values.assign(statistics.to_vector())

    def reset(self) -> None:
        self.write(StepStatistics())
