"""`python -m tf_latentflow.selfcheck` on a CPU: the checks it can run pass, the GPU checks are
reported as skipped (never as passed), and the JSON holds every field a bug report needs."""

import json
import os
import pathlib
import subprocess
import sys

import numpy as np
import pytest
import tensorflow as tf

from tf_latentflow import selfcheck
from tf_latentflow.cudnn_stand_in import cudnn_stand_in
from tf_latentflow.layers.lstm import FastLSTM

ROOT = pathlib.Path(__file__).resolve().parents[1]
NO_GPU = not tf.config.list_physical_devices("GPU")


def run_selfcheck(tmp_path, *flags):
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2", PYTHONPATH=str(ROOT))
    done = subprocess.run([sys.executable, "-m", "tf_latentflow.selfcheck", "--output", str(tmp_path / "sc.json"),
                           *flags], capture_output=True, text=True, env=env, cwd=str(tmp_path), timeout=900)
    return done, json.loads((tmp_path / "sc.json").read_text())


@pytest.mark.skipif(not NO_GPU, reason="checks the report of a machine without a GPU")
def test_selfcheck_on_cpu_reports_skipped_gpu_checks_and_writes_json(tmp_path):
    done, record = run_selfcheck(tmp_path, "--models", "lstm", "af-scf", "--data-dir", "none")
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    checks = {c["name"]: c for c in record["checks"]}
    assert set(checks) == {"lstm_cudnn_vs_scan", "lstm_cudnn_kernel", "mixed_float16/lstm", "mixed_float16/af-scf",
                           "xla_step_gpu", "timing/lstm", "timing/af-scf"}
    assert record["gpu"] is False and record["devices"]["gpus"] == [] and record["devices"]["tensorflow"]
    # the cuDNN branch ran against the stand-in op, full and padded, and agreed with the scan
    lstm = checks["lstm_cudnn_vs_scan"]
    assert lstm["status"] == "passed" and "CPU stand-in" in lstm["detail"]
    assert lstm["values"]["full_cudnn_op_called"] and lstm["values"]["padded_cudnn_op_called"]
    assert lstm["values"]["padded_gradient_max_error"] < 1e-5
    for name in ("mixed_float16/lstm", "mixed_float16/af-scf"):
        values = checks[name]["values"]
        assert checks[name]["status"] == "passed" and values["finite"]
        assert 0 < values["gradient_relative_error"] <= selfcheck.TOLERANCES["mixed_float16_gradient_norm"]
        assert values["loss"] == pytest.approx(values["loss_float32"], rel=1e-2)
    # what did not run says so, and is not counted as passed
    assert record["summary"]["skipped"] == ["lstm_cudnn_kernel", "xla_step_gpu", "timing/lstm", "timing/af-scf"]
    assert "no GPU" in checks["xla_step_gpu"]["detail"] and "JSB" in checks["timing/lstm"]["detail"]
    assert "no GPU: this report does not show that the GPU path works" in record["verdict"]
    lines = [line.split()[:2] for line in done.stdout.splitlines() if line.strip()]
    assert ["SKIPPED", "xla_step_gpu"] in lines and ["PASSED", "lstm_cudnn_vs_scan"] in lines


def data_dir():
    for candidate in (os.environ.get("LATENTFLOW_DATA_DIR"), ROOT.parent / "shared" / "data"):
        if candidate and (pathlib.Path(candidate) / "jsb_chorales").is_dir():
            return str(candidate)
    pytest.skip("JSB Chorales not found in $LATENTFLOW_DATA_DIR or ../shared/data")


@pytest.mark.slow
def test_selfcheck_times_a_jsb_slice_and_sampling(tmp_path):
    done, record = run_selfcheck(tmp_path, "--models", "lstm", "--data-dir", data_dir(), "--tiny",
                                 "--train-steps", "2", "--sample-length", "8")
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    (timing,) = [c for c in record["checks"] if c["name"] == "timing/lstm"]
    values = timing["values"]
    assert timing["status"] == "passed" and values["steps"] == 2 and values["sample_length"] == 8
    for key in ("first_pass_step_seconds", "step_seconds", "sample_batch1_seconds", "sample_batch32_seconds"):
        assert values[key] > 0


def test_the_stand_in_is_what_the_cudnn_branch_calls_and_it_detects_a_wrong_layout():
    # The comparison can fail: a stand-in that reads the gates in another order disagrees.
    rng = np.random.default_rng(0)
    layer = FastLSTM(3, recurrence="cudnn")
    layer.build((None, None, 2))
    for w in layer.weights:
        w.assign(rng.normal(size=w.shape).astype(np.float32))
    x = tf.constant(rng.normal(size=(2, 4, 2)).astype(np.float32))
    scan = FastLSTM(3, recurrence="scan")
    scan.build((None, None, 2))
    scan.set_weights(layer.get_weights())
    with cudnn_stand_in() as calls:
        np.testing.assert_allclose(layer(x).numpy(), scan(x).numpy(), rtol=1e-5, atol=1e-6)
    assert calls == [4]
    layer.recurrent_kernel.assign(tf.roll(layer.recurrent_kernel, 3, axis=1))  # gates shifted
    with cudnn_stand_in():
        assert not np.allclose(layer(x).numpy(), scan(x).numpy(), atol=1e-3)
    assert tf.raw_ops.CudnnRNNV3.__name__ != "op"  # restored
