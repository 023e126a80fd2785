"""What a run's `history.jsonl` says: schedule, best epoch, timing and one-epoch spikes.

The trainer appends one record per epoch (`Trainer._end_epoch`; `epoch` counts from 0).
`summarize` reads off what `results/README.md` reports for every run, in the units it uses
(epochs counted from 1, as checkpoints are numbered: "best after epoch 53 of 59"):

    best epoch        the last epoch whose validation -ELBO improved on every earlier
                      one after the KL ramp (`improved`; the `best` checkpoint's epoch)
    decays            the epochs after which the plateau rule divided the learning rate
    full weight       the epoch at whose end the KL weight reached 1 (the ramp's last,
                      trained at weights below 1) and its validation -ELBO (at weight 1)
    timing            the first epoch (with the XLA compiles) apart; the median of the
                      others, their min and max without the slow ones (above
                      `SLOW` x the median: an epoch that resumed a run and compiled
                      again, or ran beside other work or paused), listed apart; the sum
                      of all (`epoch_seconds`; an epoch resumed after Ctrl-C counts
                      only its time after the resume, so the sum can fall short)
    spikes            epochs e > 1 whose mean training loss exceeds `ratio` times the
                      larger of its neighbours' (e - 1 and e + 1, the one there is for
                      the last), with the epoch's largest batch loss, its step and the
                      largest pre-clip gradient norm where the history records them
                      (`training.step_statistics`)

The first epoch is never a spike (it descends from the initialisation). The default
ratio, 1.3, flags the same 9 epochs of the 39 histories under `results/` as 1.2 does
(1.1 adds 3 ordinary ones); a KL ramp raises the loss monotonically, so it flags none.

    python -m trainers.history results/nottingham/af-scf-seed0.history.jsonl
"""

from __future__ import annotations

import dataclasses
import json
import pathlib
import statistics

__all__ = ["SLOW", "Spike", "HistorySummary", "read_history", "summarize", "format_summary"]

SLOW = 1.5  # an epoch above SLOW x the median epoch is listed apart


@dataclasses.dataclass(frozen=True)
class Spike:
    epoch: int  # from 1
    train_loss: float
    neighbours: float  # the larger neighbouring epoch mean
    train_loss_max: float | None = None
    train_loss_max_step: int | None = None
    grad_norm_max: float | None = None


@dataclasses.dataclass(frozen=True)
class HistorySummary:
    epochs: int
    best_epoch: int | None  # from 1; None before the KL ramp ends
    best_validation_loss: float | None
    best_validation_kl: float | None
    lr_decays_after: tuple[int, ...]  # epochs from 1
    first_full_weight_epoch: int | None  # from 1: the KL weight is 1 at its end
    first_full_weight_validation_loss: float | None
    last_train_loss: float
    last_validation_loss: float
    first_epoch_seconds: float
    median_epoch_seconds: float | None  # epochs after the first
    min_epoch_seconds: float | None  # of those, without the slow ones
    max_epoch_seconds: float | None
    slow_epochs: tuple[tuple[int, float], ...]  # (epoch from 1, seconds) above SLOW x median
    total_hours: float
    spikes: tuple[Spike, ...]


def read_history(path) -> list[dict]:
    """The records of a history.jsonl (a run directory's, or `results/<dataset>/*.history.jsonl`)."""
    path = pathlib.Path(path)
    if path.is_dir():
        path = path / "history.jsonl"
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def summarize(records: list[dict], ratio: float = 1.3) -> HistorySummary:
    """The summary of a run's epoch records (see the module docstring)."""
    if not records:
        raise ValueError("an empty history: no epoch has finished")
    if [r["epoch"] for r in records] != list(range(len(records))):
        raise ValueError("the history's epochs are not 0, 1, 2, ...: not one run's history")
    improved = [r for r in records if r.get("improved")]
    best = improved[-1] if improved else None
    full = [r for r in records if r.get("kl_weight") == 1.0]
    later = [r["epoch_seconds"] for r in records[1:]]
    median = statistics.median(later) if later else None
    slow = tuple((e + 2, t) for e, t in enumerate(later) if t > SLOW * median)
    usual = [t for t in later if t <= SLOW * median]
    spikes = []
    losses = [r["train_loss"] for r in records]
    for e in range(1, len(records)):
        around = max(losses[e - 1:e] + losses[e + 1:e + 2])
        if losses[e] > ratio * around:
            r = records[e]
            spikes.append(Spike(e + 1, losses[e], around, r.get("train_loss_max"),
                                r.get("train_loss_max_step"), r.get("grad_norm_max")))
    return HistorySummary(
        epochs=len(records),
        best_epoch=best["epoch"] + 1 if best else None,
        best_validation_loss=best["validation_loss"] if best else None,
        best_validation_kl=best["validation_kl"] if best else None,
        lr_decays_after=tuple(r["epoch"] + 1 for r in records if r.get("lr_decayed")),
        first_full_weight_epoch=full[0]["epoch"] + 1 if full else None,
        first_full_weight_validation_loss=full[0]["validation_loss"] if full else None,
        last_train_loss=records[-1]["train_loss"],
        last_validation_loss=records[-1]["validation_loss"],
        first_epoch_seconds=records[0]["epoch_seconds"],
        median_epoch_seconds=median,
        min_epoch_seconds=min(usual) if usual else None,
        max_epoch_seconds=max(usual) if usual else None,
        slow_epochs=slow,
        total_hours=sum(r["epoch_seconds"] for r in records) / 3600,
        spikes=tuple(spikes))


def _value(x, fmt):
    return "-" if x is None else format(x, fmt)


def format_summary(summary: HistorySummary) -> str:
    """The summary as text (epochs from 1)."""
    s = summary
    lines = [
        f"epochs: {s.epochs} ({s.total_hours:.2f} h); first epoch {s.first_epoch_seconds:.0f} s, "
        f"the others median {_value(s.median_epoch_seconds, '.0f')} s "
        f"({_value(s.min_epoch_seconds, '.0f')}-{_value(s.max_epoch_seconds, '.0f')}"
        + (f"; above {SLOW:g}x the median: " + ", ".join(f"epoch {e} {t:.0f} s" for e, t in s.slow_epochs)
           if s.slow_epochs else "") + ")",
        f"best: epoch {_value(s.best_epoch, 'd')}, validation -ELBO {_value(s.best_validation_loss, '.4f')} "
        f"(KL {_value(s.best_validation_kl, '.3f')})",
        f"learning rate divided after epochs: {', '.join(map(str, s.lr_decays_after)) or '-'}",
        f"KL weight 1 from the end of epoch {_value(s.first_full_weight_epoch, 'd')} "
        f"(validation -ELBO there {_value(s.first_full_weight_validation_loss, '.4f')})",
        f"last epoch: training {s.last_train_loss:.4f}, validation {s.last_validation_loss:.4f}",
    ]
    if not s.spikes:
        lines.append("spikes: none")
    for spike in s.spikes:
        detail = ""
        if spike.train_loss_max is not None:
            detail = (f"; largest batch loss {spike.train_loss_max:.2f} at step {spike.train_loss_max_step}, "
                      f"largest gradient norm {_value(spike.grad_norm_max, '.3g')}")
        lines.append(f"spike: epoch {spike.epoch}, training loss {spike.train_loss:.3f} against "
                     f"{spike.neighbours:.3f} around it{detail}")
    return "\n".join(lines)
