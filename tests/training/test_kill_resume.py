"""A training process killed with SIGKILL (no handler runs, nothing is saved on the way
out) and re-run with the same command ends with the same weights as a run never
interrupted: it resumes from the last checkpoint written at an epoch boundary, and the
data order, the ELBO samples and the dropout masks depend only on the epoch and step."""

import os
import pathlib
import random
import signal
import subprocess
import sys
import textwrap

import numpy as np
import pytest

TESTS = pathlib.Path(__file__).resolve().parents[1]

SCRIPT = textwrap.dedent("""
    import os, signal, sys
    sys.path[:0] = [{tests!r}, {training!r}]
    import numpy as np
    import tensorflow as tf
    tf.config.experimental.enable_op_determinism()
    from training_testing import synthetic_music_bundle as synthetic_bundle, tiny_config as config_for
    from tf_latentflow.training import trainer as trainer_lib
    out, name, kill_at = sys.argv[1], sys.argv[2], int(sys.argv[3])
    make = trainer_lib.Trainer._make_train_step
    steps = [0]

    def killing(self, element_spec):
        step = make(self, element_spec)

        def run(*args):
            if steps[0] == kill_at:
                os.kill(os.getpid(), signal.SIGKILL)  # no handler, no checkpoint
            steps[0] += 1
            return step(*args)
        return run

    trainer_lib.Trainer._make_train_step = killing
    import pathlib
    trainer = trainer_lib.Trainer(config_for(pathlib.Path(out), name, epochs=3),
                                  bundle=synthetic_bundle(), log=lambda *_: None)
    trainer.fit()
    np.savez(pathlib.Path(out) / (name + ".npz"),
             *[v.numpy() for v in trainer.model.trainable_variables])
""")


def run(tmp_path, name, kill_at=-1):
    script = SCRIPT.format(tests=str(TESTS), training=str(TESTS / "training"))
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2")
    return subprocess.run([sys.executable, "-c", script, str(tmp_path), name, str(kill_at)],
                          capture_output=True, text=True, env=env, timeout=600)


def saved_weights(tmp_path, name):
    with np.load(tmp_path / f"{name}.npz") as data:
        return [data[k] for k in sorted(data.files, key=lambda k: int(k.split("_")[1]))]


@pytest.mark.slow
def test_a_killed_run_resumes_to_the_weights_of_an_uninterrupted_one(tmp_path):
    straight = run(tmp_path, "straight")
    assert straight.returncode == 0, straight.stderr[-3000:]
    # 12 training sequences at batch 4: 3 steps per epoch, 9 in all; kill after the first
    # epoch's checkpoint and before the last step
    kill_at = random.Random().randrange(3, 8)
    killed = run(tmp_path, "killed", kill_at)
    assert killed.returncode == -signal.SIGKILL, (kill_at, killed.stderr[-3000:])
    assert not (tmp_path / "killed.npz").exists()
    resumed = run(tmp_path, "killed")  # the same command again
    assert resumed.returncode == 0, (kill_at, resumed.stderr[-3000:])
    for got, want in zip(saved_weights(tmp_path, "killed"), saved_weights(tmp_path, "straight"),
                         strict=True):
        np.testing.assert_array_equal(got, want, err_msg=f"killed at step {kill_at}")
