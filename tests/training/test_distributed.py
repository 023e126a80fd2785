"""The training loop under MirroredStrategy over two logical CPU devices (a subprocess,
since logical devices must be configured before TensorFlow initialises)."""

import json
import os
import pathlib
import subprocess
import sys
import textwrap

import pytest

TESTS = pathlib.Path(__file__).resolve().parents[1]

SCRIPT = textwrap.dedent("""
    import json, pathlib, sys
    sys.path[:0] = [{tests!r}, {training!r}]
    import tensorflow as tf
    cpu = tf.config.list_physical_devices("CPU")[0]
    tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * 2)
    from test_trainer import synthetic_bundle, config_for
    from tf_latentflow.training import trainer as trainer_lib
    out = pathlib.Path(sys.argv[1])
    trainer = trainer_lib.Trainer(config_for(out, "mirrored", epochs=1, strategy="mirrored"),
                                  bundle=synthetic_bundle(), log=lambda *_: None)
    trainer.fit()
    history = json.loads((out / "mirrored" / "history.jsonl").read_text().splitlines()[-1])
    print(json.dumps({{"replicas": trainer.strategy.num_replicas_in_sync,
                      "strategy": type(trainer.strategy).__name__,
                      "loss": history["train_loss"], "steps": int(trainer.state.global_step.numpy())}}))
""")


@pytest.mark.slow
def test_mirrored_strategy_on_two_logical_cpus(tmp_path):
    script = SCRIPT.format(tests=str(TESTS), training=str(TESTS / "training"))
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2")
    done = subprocess.run([sys.executable, "-c", script, str(tmp_path)], capture_output=True,
                          text=True, env=env, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    result = json.loads(done.stdout.strip().splitlines()[-1])
    assert result["strategy"] == "MirroredStrategy" and result["replicas"] == 2
    assert result["steps"] == 3 and 0 < result["loss"] < 1e3
    assert (tmp_path / "mirrored" / "checkpoints" / "latest" / "checkpoint").exists()
