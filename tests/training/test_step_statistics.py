"""The per-epoch step statistics: max batch loss, pre-clip gradient norms, clipped updates."""

import math

import numpy as np
import pytest

from tf_latentflow.training.step_statistics import EpochStatisticsState, StepStatistics


def test_the_record_holds_the_extremes_and_the_mean_of_the_finite_norms():
    statistics = StepStatistics()
    for step, loss in enumerate([1.9, 2.1, 15.4, 1.8]):
        statistics.add_loss(step, loss)
    for norm in [0.1, 0.3, math.inf, 2.0]:
        statistics.add_update(norm, clip_norm=0.25)
    record = statistics.record()
    assert record["train_loss_max"] == 15.4 and record["train_loss_max_step"] == 2
    assert record["updates"] == 4 and record["nonfinite_grad_norms"] == 1
    assert record["grad_norm_max"] == 2.0
    assert record["grad_norm_mean"] == pytest.approx((0.1 + 0.3 + 2.0) / 3)
    assert record["clipped_updates"] == 2  # 0.3 and 2.0 exceed 0.25; the Inf one is not counted


def test_the_first_of_equal_maxima_is_kept_and_no_clip_norm_clips_nothing():
    statistics = StepStatistics()
    for step, loss in enumerate([3.0, 1.0, 3.0]):
        statistics.add_loss(step, loss)
    for norm in [5.0, 7.0]:
        statistics.add_update(norm, clip_norm=0.0)  # --clip-norm 0: no clipping
    record = statistics.record()
    assert record["train_loss_max_step"] == 0
    assert record["clipped_updates"] == 0 and record["grad_norm_max"] == 7.0


def test_an_epoch_without_steps_or_finite_norms_records_none_not_infinities():
    assert StepStatistics().record() == {
        "train_loss_max": None, "train_loss_max_step": None, "updates": 0, "grad_norm_max": None,
        "grad_norm_mean": None, "clipped_updates": 0, "nonfinite_grad_norms": 0}
    statistics = StepStatistics()
    statistics.add_update(float("nan"), clip_norm=0.25)
    record = statistics.record()
    assert record["updates"] == 1 and record["nonfinite_grad_norms"] == 1
    assert record["grad_norm_max"] is None and record["grad_norm_mean"] is None


def test_the_checkpointed_vector_restores_the_same_statistics():
    statistics = StepStatistics()
    statistics.add_loss(4, 2.5)
    statistics.add_update(0.75, clip_norm=0.25)
    holder = EpochStatisticsState()
    assert holder.read() == StepStatistics()  # starts empty
    holder.write(statistics)
    assert np.asarray(holder.values.numpy()).dtype == np.float64
    assert holder.read() == statistics
    holder.reset()
    assert holder.read() == StepStatistics()


def test_updates_without_a_measured_norm_are_counted_but_not_as_non_finite():
    statistics = StepStatistics()
    statistics.add_update(None, clip_norm=0.0)  # several replicas without clipping
    statistics.add_update(None, clip_norm=0.0)
    record = statistics.record()
    assert record["updates"] == 2 and record["nonfinite_grad_norms"] == 0
    assert record["grad_norm_max"] is None and record["clipped_updates"] == 0
