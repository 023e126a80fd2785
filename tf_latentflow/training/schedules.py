"""KL annealing and the learning-rate plateau rule of the reference trainer.

KL weight (section 5, "KL annealing"): 0 for the first `zero` epochs, then a
linear ramp to 1 over `ramp` epochs, moving smoothly within each epoch:

    w_end(i) = 0                                  i < zero
             = min(1, (i + 1 - zero) / ramp)      otherwise
    w(i, s)  = w_end(i - 1) + (w_end(i) - w_end(i - 1)) * s / S     step s of S in epoch i

Plateau rule (reference `main.py`): once the ramp is done, a validation loss
that does not improve on the best for `patience` consecutive epochs divides
the learning rate by `decay` and resets the count.
"""

from __future__ import annotations

import dataclasses

__all__ = ["kl_weight_at_epoch_end", "kl_weight", "ramp_done", "Plateau", "plateau_update"]


def kl_weight_at_epoch_end(epoch: int, zero: int, ramp: int) -> float:
    if zero <= 0 and ramp <= 0:
        return 1.0
    if epoch < zero:
        return 0.0
    if ramp <= 0:
        return 1.0
    return min(1.0, (epoch + 1 - zero) / ramp)


def kl_weight(epoch: int, step: int, steps_per_epoch: int, zero: int, ramp: int) -> float:
    """The KL weight at `step` (0-based) of `epoch`."""
    start = kl_weight_at_epoch_end(epoch - 1, zero, ramp) if epoch > 0 else (
        1.0 if zero <= 0 and ramp <= 0 else 0.0)
    end = kl_weight_at_epoch_end(epoch, zero, ramp)
    return start + (end - start) * min(step, steps_per_epoch) / max(steps_per_epoch, 1)


def ramp_done(epoch: int, zero: int, ramp: int) -> bool:
    """Whether the KL weight has reached 1 by the end of `epoch`."""
    return kl_weight_at_epoch_end(epoch, zero, ramp) >= 1.0


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
