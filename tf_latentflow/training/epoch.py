"""The host's side of a training pass: which steps update, and the steps' results read back.

A pass launches steps without waiting for them (`LaunchedStep`: the step's tensors and
what the host knew when it launched it) and reads them back a few at a time in one
device -> host transfer (`read_back`), which gives one `StepResult` of Python floats
per step for the NaN checks, the epoch's sums, the progress bar and the summaries
(`TrainingPass` keeps those of one pass).
"""

from __future__ import annotations

import dataclasses
import time

import keras
import numpy as np
import tensorflow as tf

from tf_latentflow.training.step_statistics import StepStatistics

__all__ = ["accumulation_group", "LaunchedStep", "StepResult", "read_back", "TrainingPass"]


def accumulation_group(step: int, steps_per_epoch: int, grad_accum: int) -> int:
    """0 when step `step` of the epoch only accumulates its gradient; otherwise the size k
    of the accumulation group its update ends (this step included).

    Groups of `grad_accum` steps start at step 0 of every epoch; the epoch's last step
    ends a group, which may then be shorter (k < grad_accum). Without accumulation
    (grad_accum = 1) every step is a group of 1."""
    in_group = step % grad_accum + 1
    return in_group if in_group == grad_accum or step + 1 == steps_per_epoch else 0


@dataclasses.dataclass(frozen=True)
class LaunchedStep:
    """A training step launched on the device, its results not read yet."""

    index: int  # the step's index in the epoch
    run_step: int  # the run's global step count once this step is done
    kl_weight: float
    group: int  # `accumulation_group`: 0 accumulated, k > 0 updated
    loss: tf.Tensor
    kl: tf.Tensor
    grad_norm: tf.Tensor


@dataclasses.dataclass(frozen=True)
class StepResult:
    """A training step's results on the host (`training.steps.StepOutput`, as floats)."""

    index: int
    run_step: int
    kl_weight: float
    group: int
    loss: float
    kl: float
    grad_norm: float  # NaN when not measured; 0 when the step did not update

    @property
    def updated(self) -> bool:
        return self.group > 0


def read_back(launched: list[LaunchedStep]) -> list[StepResult]:
    """The launched steps' results, in one device -> host transfer."""
    values = tf.stack([tf.stack([s.loss, s.kl, s.grad_norm]) for s in launched]).numpy().astype(float)
    return [StepResult(index=s.index, run_step=s.run_step, kl_weight=s.kl_weight, group=s.group,
                       loss=float(loss), kl=float(kl), grad_norm=float(norm))
            for s, (loss, kl, norm) in zip(launched, values)]


@dataclasses.dataclass
class TrainingPass:
    """What one training pass keeps on the host while its steps run."""

    epoch: int
    steps_per_epoch: int
    writer: tf.summary.SummaryWriter
    first: int  # the first step it runs (> 0 when resuming inside the epoch)
    sums: np.ndarray  # the sums of the steps' (loss, kl)
    statistics: StepStatistics
    global_step: int  # the run's step count
    progress: keras.utils.Progbar
    started: float  # perf_counter when the steps began (after the compiles)

    def add(self, result: StepResult) -> None:
        """A step's loss into the sums, the statistics and the progress bar."""
        self.sums[:] += (result.loss, result.kl)
        self.statistics.add_loss(result.index, result.loss)
        elapsed = time.perf_counter() - self.started
        self.progress.update(result.index + 1, [
            ("loss", result.loss), ("kl", result.kl), ("kl_weight", result.kl_weight),
            ("steps/s", (result.index + 1 - self.first) / max(elapsed, 1e-9))])
