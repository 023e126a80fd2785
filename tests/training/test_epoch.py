"""The host's side of a training pass: accumulation groups and reading launched steps back."""

import math

import tensorflow as tf

from tf_latentflow.training.epoch import LaunchedStep, accumulation_group, read_back


def test_accumulation_groups_start_at_each_epoch_and_the_last_one_may_be_short():
    # 7 steps in groups of 3: updates after steps 2 and 5 (3 batches each) and 6 (the epoch's end: 1)
    assert [accumulation_group(s, 7, 3) for s in range(7)] == [0, 0, 3, 0, 0, 3, 1]
    assert [accumulation_group(s, 4, 1) for s in range(4)] == [1, 1, 1, 1]  # no accumulation
    assert [accumulation_group(s, 5, 8) for s in range(5)] == [0, 0, 0, 0, 5]  # a shorter epoch


def test_read_back_gives_each_step_its_own_floats():
    launched = [LaunchedStep(index=i, run_step=10 + i, kl_weight=0.5 * i, group=i % 2,
                             loss=tf.constant(1.5 + i), kl=tf.constant(0.25 * i),
                             grad_norm=tf.constant(float("nan") if i == 2 else 3.0))
                for i in range(3)]
    results = read_back(launched)
    assert [(r.index, r.run_step, r.kl_weight, r.group, r.loss, r.kl) for r in results] == [
        (0, 10, 0.0, 0, 1.5, 0.0), (1, 11, 0.5, 1, 2.5, 0.25), (2, 12, 1.0, 0, 3.5, 0.5)]
    assert results[0].grad_norm == 3.0 and math.isnan(results[2].grad_norm)
    assert [r.updated for r in results] == [False, True, False]
    assert all(isinstance(r.loss, float) for r in results)
