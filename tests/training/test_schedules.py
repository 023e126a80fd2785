"""KL annealing and the plateau rule."""

import pytest

from tf_latentflow.training import schedules


def test_kl_weight_is_zero_then_ramps_linearly_within_epochs():
    zero, ramp, steps = 2, 4, 10
    assert [schedules.kl_weight(e, 0, steps, zero, ramp) for e in range(3)] == [0.0, 0.0, 0.0]
    # epoch 2 ramps from 0 to 1/4 across its steps, epoch 3 from 1/4 to 1/2
    assert schedules.kl_weight(2, 5, steps, zero, ramp) == pytest.approx(0.125)
    assert schedules.kl_weight(3, 0, steps, zero, ramp) == pytest.approx(0.25)
    assert schedules.kl_weight(5, 10, steps, zero, ramp) == pytest.approx(1.0)
    assert schedules.kl_weight(9, 3, steps, zero, ramp) == 1.0
    assert not schedules.ramp_done(4, zero, ramp) and schedules.ramp_done(5, zero, ramp)
    # no schedule at all (the baseline): weight 1 from the start
    assert schedules.kl_weight(0, 0, steps, 0, 0) == 1.0 and schedules.ramp_done(0, 0, 0)


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
