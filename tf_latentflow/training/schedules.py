"""KL annealing and the learning-rate plateau rule of the reference trainer.

KL weight (section 5, "KL annealing"). With `zero` epochs at the start weight
`s` and a linear ramp over `ramp` epochs, the weight at the end of epoch `i` is,
for the two shapes:

    "reference" (TextFlow utils.get_kl_weight):
        w_end(i) = s                                  i < zero
                 = s + (1 - s) (i - zero) / ramp      zero <= i <= zero + ramp
                 = 1                                  i > zero + ramp
        the ramp (and the plateau rule) is done from epoch zero + ramp + 1 on.
    "early" (this project's first schedule, the results under results/archive/jsb-v1):
        w_end(i) = s                                  i < zero
                 = s + (1 - s) min(1, (i + 1 - zero) / ramp)   otherwise
        done from the first epoch whose w_end is 1 (zero + ramp - 1).

Within epoch i the weight moves linearly from w_end(i - 1) to w_end(i), as in the
reference's `run_epoch(train, last_kl_weight, cur - last)`:

    w(i, k) = w_end(i - 1) + (w_end(i) - w_end(i - 1)) k / K      step k of K

With zero = ramp = 0 the weight is 1 throughout and the ramp is done from the
start (the LSTM baseline). The reference's s is 1e-5, never 0: with Adam even a
weight of 1e-5 trains the prior at nearly the full learning rate, since Adam
divides each gradient by its own running scale.

Plateau rule (reference `main.py`): once the ramp is done, a validation loss
that does not improve on the best for `patience` consecutive epochs divides
the learning rate by `decay` and resets the count.
"""

from __future__ import annotations

import dataclasses

__all__ = ["KL_SHAPES", "KLSchedule", "Plateau", "plateau_update"]

KL_SHAPES = ("reference", "early")


@dataclasses.dataclass(frozen=True)
class KLSchedule:
    """The KL weight of the ELBO by epoch and step (module docstring)."""

    zero: int
    ramp: int
    start: float = 1e-5
    shape: str = "reference"

    def __post_init__(self):
        if self.shape not in KL_SHAPES:
            raise ValueError(f"KL schedule shape must be one of {KL_SHAPES}, got {self.shape!r}")
        if self.zero < 0 or self.ramp < 0:
            raise ValueError(f"KL schedule epochs must be >= 0, got zero={self.zero}, ramp={self.ramp}")
        if not 0.0 <= self.start <= 1.0:
            raise ValueError(f"KL start weight must be in [0, 1], got {self.start}")

    @property
    def _none(self) -> bool:
        return self.zero == 0 and self.ramp == 0

    def at_epoch_end(self, epoch: int) -> float:
        """w_end(epoch): the weight reached at the end of `epoch` (epoch -1: the first step's)."""
        if self._none:
            return 1.0
        if epoch < self.zero:
            return self.start
        progress = epoch - self.zero + (1 if self.shape == "early" else 0)
        if self.ramp == 0 or progress >= self.ramp:
            return 1.0
        return self.start + (1.0 - self.start) * progress / self.ramp

    def at(self, epoch: int, step: int, steps_per_epoch: int) -> float:
        """The weight at `step` (0-based) of `epoch`."""
        start, end = self.at_epoch_end(epoch - 1), self.at_epoch_end(epoch)
        return start + (end - start) * min(step, steps_per_epoch) / max(steps_per_epoch, 1)

    def done(self, epoch: int) -> bool:
        """Whether the ramp is over at the end of `epoch` (the plateau rule applies from then)."""
        if self._none:
            return True
        if self.shape == "reference":
            return epoch > self.zero + self.ramp
        return self.at_epoch_end(epoch) >= 1.0


@dataclasses.dataclass(frozen=True)
class Plateau:
    best: float
    bad_epochs: int
    learning_rate: float
    improved: bool = False
    decayed: bool = False


def plateau_update(state: Plateau, validation_loss: float, patience: int, decay: float) -> Plateau:
    """The plateau state after an epoch with `validation_loss` (call only after the ramp)."""
    if validation_loss < state.best:
        return Plateau(best=validation_loss, bad_epochs=0, learning_rate=state.learning_rate,
                       improved=True)
    bad = state.bad_epochs + 1
    if bad >= patience:
        return Plateau(best=state.best, bad_epochs=0, learning_rate=state.learning_rate / decay,
                       decayed=True)
    return Plateau(best=state.best, bad_epochs=bad, learning_rate=state.learning_rate)
