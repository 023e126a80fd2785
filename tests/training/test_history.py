"""Reading a run's history.jsonl: best epoch, decays, timing, one-epoch spikes; the CLI."""

import json

import pytest

from tf_latentflow.training.history import Spike, format_summary, read_history, summarize
from trainers import history as history_cli


def record(epoch, train, validation, *, kl_weight=1.0, improved=None, decayed=False, seconds=100.0, **extra):
    r = {"epoch": epoch, "train_loss": train, "train_kl": 1.0, "validation_loss": validation,
         "validation_kl": 0.5 + epoch / 100, "kl_weight": kl_weight, "learning_rate": 1e-3,
         "train_seconds": seconds - 10, "epoch_seconds": seconds, **extra}
    if improved is not None:
        r.update(improved=improved, lr_decayed=decayed)
    return r


def a_run():
    """Two epochs at KL weight 0, a ramp epoch, then five at full weight: a spike in epoch
    4 (from 1), the best in epoch 6, decays after 7 and 8; the first epoch compiles."""
    return [
        record(0, 9.0, 8.0, kl_weight=0.0, seconds=400.0),
        record(1, 0.2, 0.3, kl_weight=0.0, seconds=120.0),
        record(2, 1.0, 1.5, kl_weight=0.5, seconds=110.0),  # the ramp raises the loss: no spike
        record(3, 4.0, 3.0, improved=True, seconds=100.0, train_loss_max=250.0, train_loss_max_step=17,
               grad_norm_max=42.0),
        record(4, 2.5, 2.9, improved=True, seconds=90.0),
        record(5, 2.4, 2.7, improved=True, seconds=105.0),
        record(6, 2.3, 2.8, improved=False, decayed=True, seconds=95.0),
        record(7, 2.2, 2.75, improved=False, decayed=True, seconds=98.0),
    ]


def test_the_summary_reads_the_schedule_the_best_epoch_and_the_timing():
    s = summarize(a_run())
    assert s.epochs == 8
    assert (s.best_epoch, s.best_validation_loss, s.best_validation_kl) == (6, 2.7, pytest.approx(0.55))
    assert s.lr_decays_after == (7, 8)
    assert (s.first_full_weight_epoch, s.first_full_weight_validation_loss) == (4, 3.0)
    assert (s.last_train_loss, s.last_validation_loss) == (2.2, 2.75)
    assert s.first_epoch_seconds == 400.0
    # the others: 120, 110, 100, 90, 105, 95, 98 -> sorted 90 95 98 100 105 110 120
    assert (s.median_epoch_seconds, s.min_epoch_seconds, s.max_epoch_seconds) == (100.0, 90.0, 120.0)
    assert s.slow_epochs == ()
    assert s.total_hours == pytest.approx(1118.0 / 3600)


def test_slow_epochs_are_listed_apart_from_the_range():
    run = a_run()
    run[5] = dict(run[5], epoch_seconds=400.0)  # epoch 6 (from 1) resumed with its compiles
    s = summarize(run)
    # the others: 120 110 100 90 400 95 98 -> median 100; 400 > 1.5 x 100
    assert s.median_epoch_seconds == 100.0 and s.slow_epochs == ((6, 400.0),)
    assert (s.min_epoch_seconds, s.max_epoch_seconds) == (90.0, 120.0)
    assert "median 100 s (90-120; above 1.5x the median: epoch 6 400 s)" in format_summary(s)


def test_a_spike_is_an_epoch_above_both_neighbours_by_the_ratio():
    s = summarize(a_run())
    # epoch 4 (from 1): 4.0 against max(1.0, 2.5) = 2.5, ratio 1.6; epoch 1 (9.0) is the start
    assert s.spikes == (Spike(4, 4.0, 2.5, 250.0, 17, 42.0),)
    assert summarize(a_run(), ratio=1.7).spikes == ()
    # the last epoch has one neighbour
    run = a_run() + [record(8, 3.0, 2.9, improved=False)]
    assert [spike.epoch for spike in summarize(run).spikes] == [4, 9]
    assert summarize(run).spikes[1].train_loss_max is None  # not recorded before step statistics


def test_a_run_before_its_kl_ramp_ended_has_no_best_epoch_yet():
    s = summarize(a_run()[:3])
    assert s.best_epoch is None and s.first_full_weight_epoch is None and s.lr_decays_after == ()
    assert "best: epoch -" in format_summary(s)


def test_histories_that_are_not_one_run_are_refused():
    with pytest.raises(ValueError, match="empty"):
        summarize([])
    with pytest.raises(ValueError, match="not 0, 1, 2"):
        summarize(a_run()[1:])


def test_the_cli_reads_a_run_directory_or_a_history_file(tmp_path, capsys):
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    (run_dir / "history.jsonl").write_text("".join(json.dumps(r) + "\n" for r in a_run()))
    assert read_history(run_dir) == read_history(run_dir / "history.jsonl") == a_run()
    assert history_cli.main([str(run_dir)]) == 0
    out = capsys.readouterr().out
    assert "best: epoch 6, validation -ELBO 2.7000" in out
    assert "learning rate divided after epochs: 7, 8" in out
    assert "KL weight 1 from the end of epoch 4 (validation -ELBO there 3.0000)" in out
    assert ("spike: epoch 4, training loss 4.000 against 2.500 around it; largest batch loss 250.00 "
            "at step 17, largest gradient norm 42") in out
    assert history_cli.main([str(run_dir), "--spike-ratio", "1.7"]) == 0
    assert "spikes: none" in capsys.readouterr().out
