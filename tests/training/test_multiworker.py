"""`--strategy multiworker`: TF_CONFIG checks, chief-only writing, and real two-worker clusters.

The slow tests start two worker processes on 127.0.0.1, each with its own TF_CONFIG
(ports from the OS), in their own process groups, killed in a `finally`; every wait is
bounded. Collective ops run over gRPC on localhost, without a GPU.
"""

import json
import os
import pathlib
import signal
import socket
import subprocess
import sys
import textwrap
import time

import numpy as np
import pytest
import tensorflow as tf

from tf_latentflow.training import cluster
from tf_latentflow.training import trainer as trainer_lib

TESTS = pathlib.Path(__file__).resolve().parents[1]
ROOT = TESTS.parent
sys.path.insert(0, str(TESTS))

from training_testing import synthetic_music_bundle, tiny_config  # noqa: E402

PHASE_SECONDS = 420  # the bound on every wait for a process (a loaded 2-core machine)


# -- TF_CONFIG and the chief ---------------------------------------------------------------


def tf_config(addresses, index, task_type="worker"):
    return json.dumps({"cluster": {"worker": list(addresses)}, "task": {"type": task_type, "index": index}})


@pytest.mark.parametrize("text, message", [
    (None, "--strategy multiworker needs TF_CONFIG"),
    ("{'cluster': {}}", "TF_CONFIG is not JSON"),
    ('{"task": {"type": "worker", "index": 0}}', 'no "cluster" object'),
    ('{"cluster": {"worker": []}, "task": {"type": "worker", "index": 0}}', "non-empty list"),
    ('{"cluster": {"worker": ["localhost"]}, "task": {"type": "worker", "index": 0}}',
     "address 'localhost' is not \"host:port\""),
    ('{"cluster": {"worker": ["a:1", "b:2"]}}', 'has no "task"'),
    ('{"cluster": {"worker": ["a:1", "b:2"]}, "task": {"type": "worker", "index": 2}}',
     "task.index 2 is not an index of cluster.worker (2 addresses)"),
    ('{"cluster": {"worker": ["a:1", "b:2"]}, "task": {"type": "ps", "index": 0}}',
     '"chief" and "worker" tasks only'),
    ('{"cluster": {"worker": ["a:1"]}, "task": {"type": "chief", "index": 0}}', "not a job of its cluster"),
])
def test_malformed_tf_config_is_one_clear_line(text, message):
    with pytest.raises(cluster.ClusterError) as caught:
        cluster.parse_tf_config(text)
    assert message in str(caught.value) and "\n" not in str(caught.value)


def test_the_chief_is_the_chief_task_else_worker_0():
    two = '{"cluster": {"worker": ["a:1", "b:2"]}, "task": {"type": "worker", "index": %d}}'
    assert cluster.parse_tf_config(two % 0) == cluster.WorkerRole("worker", 0, 2, False)
    assert cluster.parse_tf_config(two % 0).is_chief and not cluster.parse_tf_config(two % 1).is_chief
    with_chief = '{"cluster": {"chief": ["c:1"], "worker": ["a:1"]}, "task": {"type": "%s", "index": 0}}'
    assert cluster.parse_tf_config(with_chief % "chief").is_chief
    role = cluster.parse_tf_config(with_chief % "worker")
    assert not role.is_chief and role.num_workers == 2
    assert cluster.WorkerRole().is_chief  # one process


@pytest.mark.parametrize("value", ["0", "-3", "soon"])
def test_a_bad_worker_timeout_is_refused(monkeypatch, value):
    monkeypatch.setenv(cluster.TIMEOUT_ENV, value)
    with pytest.raises(cluster.ClusterError, match=cluster.TIMEOUT_ENV):
        cluster.wait_timeout()
    monkeypatch.delenv(cluster.TIMEOUT_ENV)
    assert cluster.wait_timeout() == cluster.DEFAULT_TIMEOUT


def test_cli_with_malformed_tf_config_exits_with_one_line_and_writes_nothing(tmp_path, monkeypatch, capsys):
    from tf_latentflow.training.config import MUSIC_DATASETS
    from trainers.cli import main

    monkeypatch.setenv("TF_CONFIG", '{"cluster": {"worker": ["127.0.0.1:1"]}, "task": {"index": 0}}')
    code = main(["--dataset", "jsb", "--model", "lstm", "--strategy", "multiworker", "--no-jit-compile",
                 "--output-dir", str(tmp_path / "run")], prog="trainers.music", datasets=MUSIC_DATASETS,
                default_dataset="jsb_chorales", description="test")
    err = capsys.readouterr().err.strip()
    assert code == cluster.EXIT_NO_CLUSTER and len(err.splitlines()) == 1
    assert err.startswith('error: TF_CONFIG has no "task"') and not (tmp_path / "run").exists()


class SecondWorkerOfTwo(tf.distribute.OneDeviceStrategy):
    """One device, but the cluster resolver of worker 1 of a two-worker cluster (a
    non-chief worker without starting a cluster)."""

    @property
    def cluster_resolver(self):
        spec = tf.train.ClusterSpec({"worker": ["127.0.0.1:1", "127.0.0.1:2"]})
        return tf.distribute.cluster_resolver.SimpleClusterResolver(spec, task_type="worker", task_id=1)


def test_a_worker_other_than_the_chief_writes_nothing_into_the_run_directory(tmp_path, monkeypatch):
    monkeypatch.setattr(trainer_lib, "select_strategy", lambda name: SecondWorkerOfTwo("/cpu:0"))
    config = tiny_config(tmp_path, "run", epochs=1, strategy="multiworker")
    trainer = trainer_lib.Trainer(config, bundle=synthetic_music_bundle(), log=lambda *_: None)
    trainer.fit()
    results = trainer.evaluate()
    assert not (tmp_path / "run").exists()  # no config, checkpoint, history, summary or results
    assert results == {}  # the chief evaluates
    assert trainer.role == cluster.WorkerRole("worker", 1, 2, False) and not trainer.role.is_chief
    # it saved (a collective on a real cluster) and wrote its history into a scratch directory
    scratch = trainer.run_dir.path
    assert not scratch.is_relative_to(tmp_path)
    assert (scratch / "checkpoints" / "latest" / "checkpoint").exists() and (scratch / "history.jsonl").exists()
    trainer.close()
    assert not scratch.exists()


# -- real clusters of two worker processes ---------------------------------------------------


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Cluster:
    """Processes started in their own process groups; `reap` kills every group."""

    def __init__(self, tmp_path):
        self.tmp_path, self.processes = tmp_path, []

    def start(self, argv, name, env=None):
        log = open(self.tmp_path / f"{name}.log", "w")
        process = subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT, text=True, cwd=str(ROOT),
                                   env=dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2", **(env or {})),
                                   start_new_session=True)
        process.log_path = self.tmp_path / f"{name}.log"
        self.processes.append(process)
        return process

    def workers(self, argv_of, name, count=2, env=None):
        """`count` workers on 127.0.0.1 with their TF_CONFIG; argv_of(index) is each command."""
        addresses = [f"127.0.0.1:{free_port()}" for _ in range(count)]
        return [self.start(argv_of(i), f"{name}-{i}", dict(env or {}, TF_CONFIG=tf_config(addresses, i)))
                for i in range(count)]

    def reap(self):
        for process in self.processes:
            try:
                os.killpg(process.pid, signal.SIGKILL)  # TensorFlow ignores SIGTERM while it waits
            except ProcessLookupError:
                pass
            process.wait()


@pytest.fixture
def processes(tmp_path):
    group = Cluster(tmp_path)
    try:
        yield group
    finally:
        group.reap()


def finish(process, seconds=PHASE_SECONDS):
    """(return code, output) of a process, within `seconds`."""
    try:
        code = process.wait(timeout=seconds)
    except subprocess.TimeoutExpired:
        pytest.fail(f"{process.args} still running after {seconds} s:\n{process.log_path.read_text()[-3000:]}")
    return code, process.log_path.read_text()


def last_json(output: str) -> dict:
    return json.loads([line for line in output.splitlines() if line.startswith("{")][-1])


@pytest.mark.slow
def test_a_worker_whose_cluster_never_comes_up_ends_with_one_line(tmp_path, processes):
    # worker 0 of two; worker 1 is never started
    script = "from tf_latentflow.training.cluster import multi_worker_strategy; multi_worker_strategy()"
    env = {"TF_CONFIG": tf_config([f"127.0.0.1:{free_port()}", f"127.0.0.1:{free_port()}"], 0),
           cluster.TIMEOUT_ENV: "5", "PYTHONPATH": str(ROOT)}
    started = time.monotonic()
    code, output = finish(processes.start([sys.executable, "-c", script], "alone", env), seconds=120)
    errors = [line for line in output.splitlines() if line.startswith("error:")]
    assert code == -signal.SIGKILL and len(errors) == 1, output[-2000:]  # killed by its watchdog
    assert "worker 0 of 2: the cluster" in errors[0] and "did not come up within 5 s" in errors[0]
    assert time.monotonic() - started < 110


# The training of test (a): the same tiny LSTM run in one process or as one of the workers
# (TF_CONFIG set), through `trainer.run` with the synthetic data; prints the worker's
# role, weights and scratch directory as JSON.
WORKER_SCRIPT = textwrap.dedent("""
    import json, pathlib, sys
    sys.path[:0] = [{tests!r}]
    from training_testing import TINY, synthetic_music_bundle
    from tf_latentflow.training import trainer as trainer_lib
    from tf_latentflow.training.config import default_config
    out, strategy = sys.argv[1:3]
    # 11 training sequences in batches of 5: global batches of 5, 5 and 1 (rows 3 + 2 and
    # 1 + 0 over two workers); no dropout, so nothing random.
    trainer_lib.load_data = lambda config: synthetic_music_bundle(sizes=(11, 6, 6))
    created = []

    class Recorded(trainer_lib.Trainer):
        def __init__(self, *args, **kwargs):
            super().__init__(*args, **kwargs)
            created.append(self)

    trainer_lib.Trainer = Recorded
    config = default_config("jsb", "lstm", out, **dict(TINY, epochs=2, batch_size=5, kl_zero_epochs=0,
                            kl_ramp_epochs=1, seed=3, strategy=strategy, baseline_dropout=0.0, clip_norm=0.25))
    results = trainer_lib.run(config, log=lambda *_: None)
    trainer = created[0]
    print(json.dumps({{"chief": trainer.role.is_chief, "workers": trainer.role.num_workers,
                      "replicas": trainer.strategy.num_replicas_in_sync,
                      "steps": int(trainer.state.global_step.numpy()),
                      "weights": {{v.path: v.numpy().tolist() for v in trainer.model.trainable_variables}},
                      "scratch": str(trainer.run_dir.path), "results": results}}))
""")


@pytest.mark.slow
def test_two_workers_train_the_lstm_as_one_process_on_the_same_global_batches(tmp_path, processes):
    script = WORKER_SCRIPT.format(tests=str(TESTS))
    env = {"PYTHONPATH": str(ROOT)}
    code, output = finish(processes.start([sys.executable, "-c", script, str(tmp_path / "one"), "default"],
                                          "one", env))
    assert code == 0, output[-3000:]
    one = last_json(output)
    assert one["replicas"] == 1 and one["steps"] == 6
    workers = processes.workers(lambda i: [sys.executable, "-c", script, str(tmp_path / "two"), "multiworker"],
                                "two", env=env)
    done = [finish(w) for w in workers]
    assert all(code == 0 for code, _ in done), "\n".join(out[-3000:] for _, out in done)
    chief, other = (last_json(out) for _, out in done)
    assert chief["chief"] and not other["chief"] and chief["workers"] == other["workers"] == 2
    assert chief["replicas"] == 2 and chief["steps"] == other["steps"] == 6
    # the same weights as one process, within float32 rounding (summing two workers'
    # shares of each batch's gradient is not bit-for-bit the one-device sum)
    assert chief["weights"].keys() == one["weights"].keys()
    for path, value in one["weights"].items():
        np.testing.assert_allclose(chief["weights"][path], value, rtol=1e-4, atol=2e-6, err_msg=path)
    assert chief["weights"] == other["weights"]  # the workers stay identical, bit for bit
    # the chief alone wrote the run directory: one history (not two), one TensorBoard
    # event file, the results; the other worker's scratch directory is gone
    run = tmp_path / "two"
    history = [json.loads(line) for line in (run / "history.jsonl").read_text().splitlines()]
    assert [h["epoch"] for h in history] == [0, 1]
    reference = [json.loads(line) for line in (tmp_path / "one" / "history.jsonl").read_text().splitlines()]
    for key in ("train_loss", "validation_loss"):
        np.testing.assert_allclose([h[key] for h in history], [h[key] for h in reference], rtol=1e-5)
    assert len(list((run / "tensorboard").iterdir())) == 1
    assert other["results"] == {} and chief["results"]["test"]["nll"] == pytest.approx(
        one["results"]["test"]["nll"], rel=1e-4)
    assert json.loads((run / "results.json").read_text())["test"] == chief["results"]["test"]
    assert not pathlib.Path(other["scratch"]).exists()


def data_dir():
    for candidate in (os.environ.get("LATENTFLOW_DATA_DIR"), ROOT.parent / "shared" / "data"):
        if candidate and (pathlib.Path(candidate) / "jsb_chorales").is_dir():
            return str(candidate)
    pytest.skip("JSB Chorales not found in $LATENTFLOW_DATA_DIR or ../shared/data")


def trainer_command(tmp_path, model, run, prepared, *extra):
    """`python -m trainers.music` on JSB with tiny sizes (tests/training/test_trainer_cli.py)."""
    return [sys.executable, "-m", "trainers.music", "--dataset", "jsb", "--model", model, "--data-dir",
            data_dir(), "--prepared-dir", str(tmp_path / prepared), "--output-dir", str(tmp_path / run),
            "--max-steps-per-epoch", "3", "--max-eval-batches", "1", "--kl-zero-epochs", "0",
            "--kl-ramp-epochs", "1", "--nll-samples", "2", "--latent-size", "4", "--embedding-size", "8",
            "--hidden-units", "8", "--prior-lstm-units", "8", "--num-flow-layers", "2",
            "--flow-hidden-units", "8", "--no-jit-compile", *extra]


@pytest.mark.slow
def test_two_workers_train_a_flow_that_one_process_resumes_and_exports(tmp_path, processes):
    # each worker prepares the data in its own directory, as on two machines
    workers = processes.workers(lambda i: trainer_command(tmp_path, "af-scf", "run", f"prepared{i}", "--epochs",
                                                          "1", "--strategy", "multiworker"), "flow")
    done = [finish(w) for w in workers]
    assert [code for code, _ in done] == [0, 0], "\n".join(out[-3000:] for _, out in done)
    assert "jsb_chorales / af-scf" in done[0][1] and "jsb_chorales / af-scf" not in done[1][1]
    run = tmp_path / "run"
    (record,) = [json.loads(line) for line in (run / "history.jsonl").read_text().splitlines()]
    assert all(np.isfinite(record[k]) for k in ("train_loss", "validation_loss"))
    first = json.loads((run / "results.json").read_text())
    assert np.isfinite(first["test"]["nll"]) and json.loads((run / "config.json").read_text())["num_replicas"] == 2
    # one process resumes the two workers' checkpoint for a second epoch...
    code, output = finish(processes.start(trainer_command(tmp_path, "af-scf", "run", "prepared0", "--epochs", "2",
                                                          "--strategy", "default"), "resume"))
    assert code == 0, output[-3000:]
    assert "resumed from" in output and "epoch 1, step 3" in output
    assert [json.loads(line)["epoch"] for line in (run / "history.jsonl").read_text().splitlines()] == [0, 1]
    # ... and exports it
    code, output = finish(processes.start([sys.executable, "-m", "export", "--run-dir", str(run), "--output",
                                           str(tmp_path / "model"), "--no-xla"], "export"))
    assert code == 0, output[-3000:]
    assert (tmp_path / "model" / "1" / "saved_model.pb").exists()


@pytest.mark.slow
def test_a_worker_killed_mid_run_stops_the_other_with_one_line_and_the_run_resumes(tmp_path, processes):
    def command(i):
        return trainer_command(tmp_path, "lstm", "run", f"prepared{i}", "--epochs", "5", "--strategy",
                               "multiworker")

    chief, other = processes.workers(command, "first")
    history = tmp_path / "run" / "history.jsonl"
    latest = tmp_path / "run" / "checkpoints" / "latest" / "checkpoint"  # written after the history record
    deadline = time.monotonic() + PHASE_SECONDS
    while not latest.exists():  # epoch 0 saved
        assert time.monotonic() < deadline and chief.poll() is None, chief.log_path.read_text()[-3000:]
        time.sleep(0.2)
    os.killpg(other.pid, signal.SIGKILL)
    killed = time.monotonic()
    code, output = finish(chief, seconds=180)
    errors = [line for line in output.splitlines() if line.startswith("error:")]
    print(f"the chief stopped {time.monotonic() - killed:.0f} s after the kill: {errors}")
    assert code == cluster.EXIT_NO_CLUSTER and len(errors) == 1, output[-3000:]
    assert "worker 0 of 2: another worker stopped during the run" in errors[0]
    assert "start every worker again with the same command to resume" in errors[0]
    saved = len(history.read_text().splitlines())
    assert 1 <= saved < 5
    # every worker restarted with the same command: they resume and finish the run
    restarted = processes.workers(command, "again")
    done = [finish(w) for w in restarted]
    assert [code for code, _ in done] == [0, 0], "\n".join(out[-3000:] for _, out in done)
    assert f"resumed from" in done[0][1] and f"epoch {saved}," in done[0][1]
    assert [json.loads(line)["epoch"] for line in history.read_text().splitlines()] == list(range(5))
    assert json.loads((tmp_path / "run" / "results.json").read_text())["epochs_trained"] == 5
    # a worker that does not see the chief's run directory (no shared filesystem, simulated
    # by another --output-dir) would train from scratch: both stop with one line instead
    split = processes.workers(lambda i: command(i) if i == 0 else trainer_command(
        tmp_path, "lstm", "elsewhere", "prepared1", "--epochs", "5", "--strategy", "multiworker"), "split")
    done = [finish(w) for w in split]
    for code, output in done:
        errors = [line for line in output.splitlines() if line.startswith("error:")]
        assert code == cluster.EXIT_NO_CLUSTER and len(errors) == 1, output[-3000:]
        assert "the workers hold different training steps after the resume (15, 0, chief first)" in errors[0]
        assert "a shared filesystem" in errors[0]
