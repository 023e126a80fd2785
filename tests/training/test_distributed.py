"""The training loop under MirroredStrategy over two logical CPU devices (a subprocess,
since logical devices must be configured before TensorFlow initialises)."""

import json
import os
import pathlib
import subprocess
import sys
import textwrap

import numpy as np
import pytest

TESTS = pathlib.Path(__file__).resolve().parents[1]

SCRIPT = textwrap.dedent("""
    import json, pathlib, sys
    sys.path[:0] = [{tests!r}, {training!r}]
    import keras
    import tensorflow as tf
    cpu = tf.config.list_physical_devices("CPU")[0]
    tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * 2)
    from training_testing import synthetic_music_bundle as synthetic_bundle
    from training_testing import TINY
    from tf_latentflow.training import trainer as trainer_lib
    from tf_latentflow.training.config import default_config
    out, name, strategy, model, jit, batch, mixed, clip = sys.argv[1:9]
    fields = dict(TINY, epochs=2, batch_size=int(batch), mixed_precision=mixed, kl_zero_epochs=1, kl_ramp_epochs=1, seed=3,
                  strategy=strategy, baseline_dropout=0.0, jit_compile=jit == "xla", clip_norm=float(clip))
    config = default_config("jsb", model, str(pathlib.Path(out) / name), **fields)
    trainer = trainer_lib.Trainer(config, bundle=synthetic_bundle(), log=lambda *_: None)
    trainer.fit()
    history = [json.loads(l) for l in (pathlib.Path(out) / name / "history.jsonl").read_text().splitlines()]
    print(json.dumps({{"replicas": trainer.strategy.num_replicas_in_sync,
                      "policy": trainer.policy,
                      "global_policy": keras.mixed_precision.global_policy().name,
                      "optimizer": type(trainer.optimizer).__name__,
                      "strategy": type(trainer.strategy).__name__,
                      "losses": [[h["train_loss"], h["validation_loss"]] for h in history],
                      "statistics": [[h[k] for k in ("updates", "grad_norm_max", "grad_norm_mean",
                                                     "clipped_updates", "train_loss_max")] for h in history],
                      "weights": [float(v.numpy().sum()) for v in trainer.model.trainable_variables],
                      "steps": int(trainer.state.global_step.numpy())}}))
""")


def run(tmp_path, name, strategy, model, jit="graph", batch=4, mixed="off", clip=0.25):
    """One training run in a fresh process (one MirroredStrategy per process)."""
    script = SCRIPT.format(tests=str(TESTS), training=str(TESTS / "training"))
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2")
    done = subprocess.run([sys.executable, "-c", script, str(tmp_path), name, strategy, model, jit,
                           str(batch), mixed, str(clip)],
                          capture_output=True, text=True, env=env, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    return json.loads(done.stdout.strip().splitlines()[-1])


@pytest.mark.slow
def test_mirrored_strategy_on_two_logical_cpus(tmp_path):
    # A flow model: replicas draw their own samples, so only finite losses are checked.
    flow = run(tmp_path, "flow", "mirrored", "af-scf")
    assert flow["strategy"] == "MirroredStrategy" and flow["replicas"] == 2
    assert flow["steps"] == 6 and all(0 < loss < 1e3 for pair in flow["losses"] for loss in pair)
    assert (tmp_path / "flow" / "checkpoints" / "latest" / "checkpoint").exists()


@pytest.mark.slow
@pytest.mark.parametrize("batch", [4, 5])
def test_two_replicas_train_exactly_as_one_device(tmp_path, batch):
    # The LSTM baseline without dropout draws no random numbers: on the same global
    # batches, each replica's share of the global mean and the summed gradients must
    # reproduce the one-device run (with and without XLA). Batch 5 of the 12 training
    # sequences gives batches 5, 5, 2, split 3 + 2 and 1 + 1 over the two replicas.
    one = run(tmp_path, "lstm_default", "default", "lstm", batch=batch)
    assert one["replicas"] == 1
    steps = {4: 6, 5: 6}[batch]
    for name, jit in (("lstm_mirrored", "graph"), ("lstm_mirrored_xla", "xla")):
        two = run(tmp_path, name, "mirrored", "lstm", jit, batch=batch)
        assert two["replicas"] == 2 and two["steps"] == one["steps"] == steps
        np.testing.assert_allclose(two["losses"], one["losses"], rtol=1e-5)
        np.testing.assert_allclose(two["weights"], one["weights"], rtol=1e-4, atol=1e-4)
        # the epoch statistics: the pre-clip norm is that of the replicas' summed gradient
        np.testing.assert_allclose(two["statistics"], one["statistics"], rtol=1e-5)
        assert [row[0] for row in two["statistics"]] == [3, 3]


@pytest.mark.slow
def test_without_clipping_several_replicas_count_updates_but_measure_no_norm(tmp_path):
    # The norm would cost an all-reduce of every gradient that nothing else needs.
    two = run(tmp_path, "lstm_noclip", "mirrored", "lstm", clip=0.0)
    assert two["replicas"] == 2
    assert [row[:4] for row in two["statistics"]] == [[3, None, None, 0]] * 2
    one = run(tmp_path, "lstm_noclip_one", "default", "lstm", clip=0.0)  # one device: measured
    assert all(row[0] == 3 and row[1] > 0 and row[3] == 0 for row in one["statistics"])


@pytest.mark.slow
def test_iaf_scf_trains_under_mirrored_strategy_with_xla(tmp_path):
    # The IAF-in-time density trains through serial_scan's custom gradient; each replica
    # runs it inside its XLA-compiled loss and gradients.
    flow = run(tmp_path, "iaf", "mirrored", "iaf-scf", "xla")
    assert flow["replicas"] == 2 and flow["steps"] == 6
    assert all(0 < loss < 1e3 for pair in flow["losses"] for loss in pair)
    assert all(np.isfinite(w) for w in flow["weights"])


RESET_SCRIPT = textwrap.dedent("""
    import json, sys
    sys.path[:0] = [{tests!r}]
    import keras
    import tensorflow as tf
    cpu = tf.config.list_physical_devices("CPU")[0]
    tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * 2)
    from tf_latentflow.training import state as state_lib
    strategy = tf.distribute.MirroredStrategy(["/cpu:0", "/cpu:1"])
    with strategy.scope():
        variable = keras.Variable([1.0, -2.0, 3.0])
        optimizer = keras.optimizers.Adam(learning_rate=0.01)
        optimizer.build([variable])

    @tf.function
    def step():
        def replica():
            optimizer.apply_gradients([(tf.constant([0.5, 0.1, -0.3]), variable)])
        strategy.run(replica)

    for _ in range(3):
        step()
    before = [float(tf.reduce_sum(tf.abs(v.value)).numpy()) for v in optimizer.variables]
    with strategy.scope():
        state_lib.reset_optimizer_state(optimizer)
    per_replica = {{v.name: [float(tf.reduce_sum(tf.abs(t)).numpy())
                            for t in strategy.experimental_local_results(v.value)]
                   for v in optimizer.variables}}
    step()
    print(json.dumps({{"before": before, "after": per_replica,
                      "iterations_after_one_step": int(optimizer.iterations.numpy())}}))
""")


def test_optimizer_reset_zeroes_every_replica_copy():
    # --reset-optimizer-on-decay assigns from the cross-replica context between epochs.
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2")
    done = subprocess.run([sys.executable, "-c", RESET_SCRIPT.format(tests=str(TESTS))],
                          capture_output=True, text=True, env=env, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    result = json.loads(done.stdout.strip().splitlines()[-1])
    assert all(total > 0 for total in result["before"])  # iteration, lr, momentum, velocity
    after = result["after"]
    assert after["learning_rate"] == [pytest.approx(0.01)] * 2
    assert {name: values for name, values in after.items() if name != "learning_rate"} == {
        name: [0.0, 0.0] for name in after if name != "learning_rate"}
    assert len(after) == 4 and result["iterations_after_one_step"] == 1


@pytest.mark.slow
def test_mixed_float16_with_loss_scaling_and_clipping_across_replicas_tracks_float32(tmp_path):
    # mixed_float16 on CPU (--mixed-precision on): a loss-scale optimizer, gradients
    # unscaled for the clip across two replicas. float16 keeps ~3 decimal digits, so the
    # losses of 6 steps of the LSTM baseline (no dropout) agree with float32 to 1e-2
    # relative and the weights move the same way to 2e-2.
    mixed = run(tmp_path, "mixed", "mirrored", "lstm", batch=5, mixed="on")
    reference = run(tmp_path, "float32_5", "default", "lstm", batch=5)
    assert reference["policy"] == "float32" and mixed["policy"] == "mixed_float16"
    assert mixed["global_policy"] == "float32"  # the run's policy is the model's, not global
    assert mixed["optimizer"] == "LossScaleOptimizer" and mixed["replicas"] == 2
    np.testing.assert_allclose(mixed["losses"], reference["losses"], rtol=1e-2)
    np.testing.assert_allclose(mixed["weights"], reference["weights"], rtol=2e-2, atol=2e-2)
    # the pre-clip norm is measured unscaled (the loss scale is 2^15 at the start)
    np.testing.assert_allclose([row[1:3] for row in mixed["statistics"]],
                               [row[1:3] for row in reference["statistics"]], rtol=2e-2)
