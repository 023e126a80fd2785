"""KL annealing and the plateau rule."""

import pytest

from tf_latentflow.training import schedules


def reference_get_kl_weight(initial_kl_zero, kl_rampup_time, i):
    """harvardnlp/TextFlow utils.get_kl_weight, transcribed: (weight, done)."""
    if initial_kl_zero == 0 and kl_rampup_time == 0:
        return 1.0, True
    x_start, x_end = initial_kl_zero, initial_kl_zero + kl_rampup_time
    y_start, y_end = 0.00001, 1.0
    if i < x_start:
        return y_start, False
    if i > x_end:
        return y_end, True
    return (i - x_start) / (x_end - x_start) * (y_end - y_start) + y_start, False


@pytest.mark.parametrize("zero, ramp", [(20, 15), (4, 10), (0, 3), (1, 1)])
def test_reference_shape_equals_the_reference_formula_epoch_by_epoch(zero, ramp):
    schedule = schedules.KLSchedule(zero, ramp, start=1e-5, shape="reference")
    steps = 7
    for epoch in range(zero + ramp + 5):
        last, _ = reference_get_kl_weight(zero, ramp, epoch - 1)
        current, done = reference_get_kl_weight(zero, ramp, epoch)
        assert schedule.at_epoch_end(epoch) == pytest.approx(current, rel=1e-12, abs=1e-15)
        assert schedule.done(epoch) == done, epoch
        for step in range(steps):  # main.run_epoch: start + delta * i / len(ds)
            assert schedule.at(epoch, step, steps) == pytest.approx(
                last + (current - last) * step / steps, rel=1e-12, abs=1e-15)


def test_reference_shape_is_never_zero_and_ends_the_ramp_two_epochs_after_the_early_shape():
    reference = schedules.KLSchedule(20, 15, start=1e-5, shape="reference")
    early = schedules.KLSchedule(20, 15, start=1e-5, shape="early")
    assert min(reference.at(e, s, 10) for e in range(40) for s in range(10)) == 1e-5
    assert [e for e in range(60) if reference.done(e)][0] == 36
    assert [e for e in range(60) if early.done(e)][0] == 34


def test_early_shape_with_start_zero_is_the_first_schedule():
    """The schedule of the v1 results: 0 for `zero` epochs, then (i + 1 - zero) / ramp."""
    zero, ramp, steps = 2, 4, 10
    schedule = schedules.KLSchedule(zero, ramp, start=0.0, shape="early")
    assert [schedule.at(e, 0, steps) for e in range(3)] == [0.0, 0.0, 0.0]
    # epoch 2 ramps from 0 to 1/4 across its steps, epoch 3 from 1/4 to 1/2
    assert schedule.at(2, 5, steps) == pytest.approx(0.125)
    assert schedule.at(3, 0, steps) == pytest.approx(0.25)
    assert schedule.at(5, 10, steps) == pytest.approx(1.0)
    assert schedule.at(9, 3, steps) == 1.0
    assert not schedule.done(4) and schedule.done(5)


@pytest.mark.parametrize("shape", schedules.KL_SHAPES)
def test_no_schedule_is_weight_one_from_the_start(shape):
    schedule = schedules.KLSchedule(0, 0, start=1e-5, shape=shape)
    assert schedule.at(0, 0, 10) == 1.0 and schedule.done(0)


def test_bad_schedules_are_refused():
    with pytest.raises(ValueError, match="shape"):
        schedules.KLSchedule(1, 1, shape="cosine")
    with pytest.raises(ValueError, match=">= 0"):
        schedules.KLSchedule(-1, 1)
    with pytest.raises(ValueError, match="start weight"):
        schedules.KLSchedule(1, 1, start=2.0)


def test_plateau_divides_the_learning_rate_after_patience_epochs():
    state = schedules.Plateau(best=float("inf"), bad_epochs=0, learning_rate=1e-3)
    state = schedules.plateau_update(state, 5.0, patience=2, decay=4.0)
    assert state.improved and state.best == 5.0
    state = schedules.plateau_update(state, 5.5, patience=2, decay=4.0)
    assert not state.decayed and state.bad_epochs == 1 and state.learning_rate == 1e-3
    state = schedules.plateau_update(state, 5.1, patience=2, decay=4.0)
    assert state.decayed and state.learning_rate == pytest.approx(2.5e-4) and state.bad_epochs == 0
    state = schedules.plateau_update(state, 4.0, patience=2, decay=4.0)
    assert state.improved and state.best == 4.0
