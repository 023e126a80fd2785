"""training.xla_cache: the TF_XLA_FLAGS it writes, and a second process that reuses the
first one's compiled steps (no new cache entries) and trains to the same weights."""

import os
import pathlib
import shlex
import subprocess
import sys
import textwrap

import numpy as np
import pytest

from tf_latentflow.training import xla_cache

TESTS = pathlib.Path(__file__).resolve().parents[1]


def test_enable_appends_the_flag_and_keeps_the_others(tmp_path):
    environ = {"TF_XLA_FLAGS": "--tf_xla_auto_jit=2 --tf_xla_cpu_global_jit"}
    got = xla_cache.enable(tmp_path / "cache", environ)
    assert got == str(tmp_path / "cache") and (tmp_path / "cache").is_dir()
    assert shlex.split(environ["TF_XLA_FLAGS"]) == [
        "--tf_xla_auto_jit=2", "--tf_xla_cpu_global_jit",
        f"--tf_xla_persistent_cache_directory={tmp_path / 'cache'}"]


def test_a_directory_already_in_the_flags_wins(tmp_path):
    environ = {"TF_XLA_FLAGS": "--tf_xla_persistent_cache_directory=/elsewhere"}
    assert xla_cache.enable(tmp_path / "cache", environ) == "/elsewhere"
    assert environ["TF_XLA_FLAGS"] == "--tf_xla_persistent_cache_directory=/elsewhere"
    assert not (tmp_path / "cache").exists()


def test_off_leaves_the_environment_alone():
    for off in (None, "none", ""):
        environ = {"HOME": "/root"}
        assert xla_cache.enable(off, environ) is None
        assert environ == {"HOME": "/root"}
    assert xla_cache.default_directory({}) is None
    assert xla_cache.default_directory({xla_cache.ENV_VAR: ""}) is None
    assert xla_cache.default_directory({xla_cache.ENV_VAR: "/c"}) == "/c"


def test_a_path_with_spaces_survives_tensorflow_style_splitting(tmp_path):
    environ = {}
    path = xla_cache.enable(tmp_path / "a cache", environ)
    assert shlex.split(environ["TF_XLA_FLAGS"]) == [f"--tf_xla_persistent_cache_directory={path}"]


SCRIPT = textwrap.dedent("""
    import pathlib, sys
    sys.path[:0] = [{tests!r}]
    from tf_latentflow.training import xla_cache
    out, cache = pathlib.Path(sys.argv[1]), sys.argv[2]
    xla_cache.enable(cache)
    import numpy as np
    import tensorflow as tf
    tf.config.list_physical_devices("GPU")  # as the command line does before training
    from training_testing import synthetic_music_bundle, tiny_config
    from tf_latentflow.training import Trainer
    trainer = Trainer(tiny_config(out, "run", epochs=1, jit_compile=True),
                      bundle=synthetic_music_bundle(), log=lambda *_: None)
    trainer.fit()
    np.savez(out / "weights.npz", *[v.numpy() for v in trainer.model.trainable_variables])
""")


# TensorFlow's own log line for an executable read back from the persistent cache.
LOADED = "Loading cached entry for"


def _train(out, cache):
    """Train the tiny run in a fresh process; (its weights, how many cached executables it loaded)."""
    out.mkdir()
    env = {k: v for k, v in os.environ.items() if k != "TF_XLA_FLAGS"}
    env.update(TF_CPP_MIN_LOG_LEVEL="0", TF_CPP_VMODULE="device_executable_persistor=1")
    done = subprocess.run([sys.executable, "-c", SCRIPT.format(tests=str(TESTS)), str(out), str(cache)],
                          capture_output=True, text=True, env=env, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    with np.load(out / "weights.npz") as data:
        weights = [data[k] for k in sorted(data.files, key=lambda k: int(k.split("_")[1]))]
    return weights, done.stderr.count(LOADED)


@pytest.mark.slow
def test_a_second_process_reuses_the_compiled_steps(tmp_path):
    cache = tmp_path / "cache"
    cold, cold_loaded = _train(tmp_path / "cold", cache)
    entries = {p.name: p.stat().st_mtime_ns for p in cache.iterdir()}
    assert entries and all(name.endswith(".pb") for name in entries) and cold_loaded == 0
    warm, warm_loaded = _train(tmp_path / "warm", cache)
    assert {p.name: p.stat().st_mtime_ns for p in cache.iterdir()} == entries  # nothing compiled afresh
    assert warm_loaded == len(entries)  # every step program read back
    for got, want in zip(warm, cold, strict=True):
        np.testing.assert_array_equal(got, want)


@pytest.mark.slow
def test_the_command_line_fills_the_cache_with_xla_on_by_default(tmp_path):
    """The trainer's CLI enables the cache before anything lists TensorFlow's devices (the
    --jit-compile default asks whether a GPU is visible, which reads TF_XLA_FLAGS)."""
    data = os.environ.get("LATENTFLOW_DATA_DIR") or str(TESTS.parents[1] / "shared" / "data")
    if not (pathlib.Path(data) / "jsb_chorales").is_dir():
        pytest.skip("JSB Chorales not found")
    env = {k: v for k, v in os.environ.items() if k != "TF_XLA_FLAGS"}
    argv = [sys.executable, "-m", "trainers.music", "--dataset", "jsb", "--model", "lstm", "--data-dir", data,
            "--prepared-dir", str(tmp_path / "prepared"), "--output-dir", str(tmp_path / "run"),
            "--xla-cache-dir", str(tmp_path / "cache"), "--epochs", "1", "--max-steps-per-epoch", "2",
            "--max-eval-batches", "1", "--embedding-size", "8", "--hidden-units", "8"]
    done = subprocess.run(argv, capture_output=True, text=True, env=env, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    assert any(p.name.endswith(".pb") for p in (tmp_path / "cache").iterdir())
