"""`trainers.reproduce`: run states, projections, the queue's resume / skip / failure rules
and harvesting. The fast tests drive the queue with a stand-in trainer (a tiny script
that writes a run directory as the trainer does); the slow ones train real tiny JSB runs
through the trainer's CLI, kill the queue mid-run and compare the resumed weights."""

import json
import os
import pathlib
import signal
import subprocess
import sys
import textwrap
import threading
import time

import numpy as np
import pytest

from tf_latentflow.training.plan import PlannedRun
from tf_latentflow.training.reproduce import (FAILED_FILE, Reproducer, ReproduceError, RunState, harvest, project,
                                              run_state)

# The stand-in trainer: `script RUN_DIR EPOCHS LAUNCHES`. Resumes after the epochs in
# history.jsonl, fails (exit 3) after one epoch while RUN_DIR/fail exists, waits while
# RUN_DIR/hold exists (exit 130 on SIGINT, as the trainer after Ctrl-C), writes
# results.json at the end.
FAKE_TRAINER = textwrap.dedent("""
    import json, pathlib, signal, sys, time
    run_dir, epochs, launches = pathlib.Path(sys.argv[1]), int(sys.argv[2]), sys.argv[3]
    with open(launches, "a") as f:
        f.write(run_dir.name + "\\n")
    signal.signal(signal.SIGINT, lambda *_: sys.exit(130))
    run_dir.mkdir(parents=True, exist_ok=True)
    (run_dir / "config.json").write_text("{}")
    history = run_dir / "history.jsonl"
    done = len(history.read_text().splitlines()) if history.exists() else 0
    for epoch in range(done, epochs):
        while (run_dir / "hold").exists():
            (run_dir / "holding").touch()
            time.sleep(0.01)
        with open(history, "a") as f:
            f.write(json.dumps({"epoch": epoch, "epoch_seconds": 10.0}) + "\\n")
        if (run_dir / "fail").exists():
            sys.exit(3)
        if (run_dir / "interrupt").exists():
            sys.exit(130)
    (run_dir / "results.json").write_text(json.dumps({"dataset": "jsb_chorales", "test": {"nll": 6.5},
                                                      "epochs_trained": epochs}))
""")


def fake_reproducer(tmp_path, epochs=3):
    script = tmp_path / "fake_trainer.py"
    script.write_text(FAKE_TRAINER)
    launches = tmp_path / "launches.txt"
    launches.touch()

    def command(run, output_dir):
        return [sys.executable, str(script), str(output_dir), str(epochs), str(launches)]

    lines = []
    reproducer = Reproducer(tmp_path / "runs", tmp_path / "results", command=command, log=lines.append)
    return reproducer, launches, lines


def two_runs():
    return [PlannedRun("jsb", "lstm", 0), PlannedRun("jsb", "af-af", 1)]


def test_two_runs_end_to_end_then_a_second_invocation_does_nothing(tmp_path):
    reproducer, launches, lines = fake_reproducer(tmp_path)
    runs = two_runs()
    assert reproducer.run(runs) == 0
    assert launches.read_text().split() == ["lstm-seed0", "af-af-seed1"]
    for run in runs:
        results = tmp_path / "results" / "jsb" / f"{run.name}.json"
        history = tmp_path / "results" / "jsb" / f"{run.name}.history.jsonl"
        assert json.loads(results.read_text())["test"]["nll"] == 6.5
        assert [json.loads(x)["epoch"] for x in history.read_text().splitlines()] == [0, 1, 2]
    stamps = {p: p.stat().st_mtime_ns for p in (tmp_path / "results").rglob("*.*")}
    first_invocation = len(lines)
    assert reproducer.run(runs) == 0
    assert launches.read_text().split() == ["lstm-seed0", "af-af-seed1"]  # nothing trained again
    assert lines[first_invocation:] == [f"[1/2] {runs[0].key}: done", f"[2/2] {runs[1].key}: done"]  # nor copied
    assert {p: p.stat().st_mtime_ns for p in (tmp_path / "results").rglob("*.*")} == stamps


def test_a_failed_run_is_marked_skipped_then_retried_from_where_it_stopped(tmp_path):
    reproducer, launches, lines = fake_reproducer(tmp_path)
    first, second = two_runs()
    (reproducer.run_dir(first)).mkdir(parents=True)
    (reproducer.run_dir(first) / "fail").touch()
    assert reproducer.run([first, second]) == 1  # the queue goes on past a failure
    record = json.loads((reproducer.run_dir(first) / FAILED_FILE).read_text())
    assert record["returncode"] == 3 and record["command"][-3] == str(reproducer.run_dir(first))
    assert run_state(reproducer.run_dir(first)) == RunState("failed", 1, "exit code 3")
    assert run_state(reproducer.run_dir(second)).status == "done"
    assert reproducer.run([first, second]) == 1  # not retried
    assert launches.read_text().split() == ["lstm-seed0", "af-af-seed1"]
    assert any("skipped (--retry-failed retries)" in line for line in lines)
    (reproducer.run_dir(first) / "fail").unlink()
    assert reproducer.run([first, second], retry_failed=True) == 0
    assert launches.read_text().split() == ["lstm-seed0", "af-af-seed1", "lstm-seed0"]
    epochs = [json.loads(x)["epoch"] for x in (reproducer.run_dir(first) / "history.jsonl").read_text().splitlines()]
    assert epochs == [0, 1, 2]  # resumed after epoch 0, not started over
    assert not (reproducer.run_dir(first) / FAILED_FILE).exists()


def test_a_signal_stops_the_queue_without_marking_the_run_failed(tmp_path):
    reproducer, launches, _ = fake_reproducer(tmp_path)
    first, second = two_runs()
    run_dir = reproducer.run_dir(first)
    run_dir.mkdir(parents=True)
    (run_dir / "hold").touch()

    def interrupt_when_training():
        deadline = time.monotonic() + 60
        while not (run_dir / "holding").exists() and time.monotonic() < deadline:
            time.sleep(0.01)
        os.kill(os.getpid(), signal.SIGINT)

    threading.Thread(target=interrupt_when_training, daemon=True).start()
    assert reproducer.run([first, second]) == 130
    assert launches.read_text().split() == ["lstm-seed0"]  # the second run was not started
    assert run_state(run_dir).status == "partial" and not (run_dir / FAILED_FILE).exists()
    (run_dir / "hold").unlink()
    assert reproducer.run([first, second]) == 0


def test_a_signal_between_two_runs_starts_no_other(tmp_path):
    reproducer, launches, lines = fake_reproducer(tmp_path)
    first, second = two_runs()

    def log(line):  # SIGINT while the first run is harvested, with no trainer running
        lines.append(line)
        if ": wrote " in line:
            os.kill(os.getpid(), signal.SIGINT)

    reproducer.log = log
    assert reproducer.run([first, second]) == 130
    assert launches.read_text().split() == ["lstm-seed0"]
    assert lines[-1] == f"stopped before {second.key}; run the same command to go on"
    assert run_state(reproducer.run_dir(first)).status == "done"
    assert not reproducer.run_dir(second).exists()
    reproducer.log = lines.append
    assert reproducer.run([first, second]) == 0
    assert launches.read_text().split() == ["lstm-seed0", "af-af-seed1"]


def test_a_trainer_interrupted_on_its_own_stops_the_queue_unmarked(tmp_path):
    reproducer, launches, lines = fake_reproducer(tmp_path)
    first, second = two_runs()
    reproducer.run_dir(first).mkdir(parents=True)
    (reproducer.run_dir(first) / "interrupt").touch()
    assert reproducer.run([first, second]) == 130
    assert launches.read_text().split() == ["lstm-seed0"]
    assert run_state(reproducer.run_dir(first)) == RunState("partial", 1)


def test_one_queue_per_runs_directory(tmp_path):
    import fcntl

    reproducer, _, _ = fake_reproducer(tmp_path)
    (tmp_path / "runs").mkdir()
    with open(tmp_path / "runs" / ".reproduce.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        with pytest.raises(ReproduceError, match="another"):
            reproducer.run(two_runs())


def test_states_and_projected_hours_from_committed_histories(tmp_path):
    results = tmp_path / "results"
    (results / "jsb").mkdir(parents=True)
    # a committed AF/AF run: epoch 0 compiles (100 s), then 10 s epochs; 4 epochs; 36 s evaluation
    (results / "jsb" / "af-af-seed0.json").write_text(json.dumps(
        {"dataset": "jsb_chorales", "model": "af-af", "epochs_trained": 4, "evaluation_seconds": 36.0}))
    (results / "jsb" / "af-af-seed0.history.jsonl").write_text("".join(
        json.dumps({"epoch": e, "epoch_seconds": s}) + "\n" for e, s in enumerate([100.0, 10.0, 10.0, 10.0])))
    run = PlannedRun("jsb", "af-af", 1, {"epochs": 65})
    fresh = project(run, RunState("not started"), results)
    assert fresh.hours == pytest.approx((4 * 10 + 36 + 90) / 3600)
    assert "1 committed table af-af" in fresh.source
    assert project(run, RunState("partial", 3), results).hours == pytest.approx((10 + 36) / 3600)
    assert project(run, RunState("done", 4), results).hours == 0.0
    # a partial run's own epochs (after its first) give the epoch time on this machine
    own = tmp_path / "own"
    own.mkdir()
    (own / "history.jsonl").write_text("".join(
        json.dumps({"epoch": e, "epoch_seconds": s}) + "\n" for e, s in enumerate([300.0, 25.0, 35.0])))
    resumed = project(run, RunState("partial", 3), results, own)
    assert resumed.hours == pytest.approx((30 + 36) / 3600) and "its own 3 epochs" in resumed.source
    assert project(run, RunState("partial", 3), results, tmp_path / "missing").hours == pytest.approx((10 + 36) / 3600)
    # the declared epochs cap the committed count; another flow model is a marked stand-in
    short = project(PlannedRun("jsb", "iaf-scf", 0, {"epochs": 2}), RunState("not started"), results)
    assert short.hours == pytest.approx((2 * 10 + 36 + 90) / 3600) and short.source.startswith("~")
    assert project(PlannedRun("jsb", "lstm", 0), RunState("not started"), results).hours is None
    # the same model's experiment runs come before another model's table runs
    (results / "experiments" / "jsb").mkdir(parents=True)
    (results / "experiments" / "jsb" / "iaf-scf-x-seed0.json").write_text(json.dumps(
        {"dataset": "jsb_chorales", "model": "iaf-scf", "epochs_trained": 3, "evaluation_seconds": 6.0}))
    (results / "experiments" / "jsb" / "iaf-scf-x-seed0.history.jsonl").write_text("".join(
        json.dumps({"epoch": e, "epoch_seconds": s}) + "\n" for e, s in enumerate([50.0, 20.0, 20.0])))
    own_model = project(PlannedRun("jsb", "iaf-scf", 0, {"epochs": 65}), RunState("not started"), results)
    assert own_model.hours == pytest.approx((3 * 20 + 6 + 30) / 3600)
    assert own_model.source == "1 committed iaf-scf run(s)"
    # a plan may set jit_compile itself (the tests' tiny runs do)
    no_xla = project(PlannedRun("jsb", "af-af", 0, {"epochs": 2, "jit_compile": False}), RunState("not started"),
                     results)
    assert no_xla.hours == pytest.approx((2 * 10 + 36 + 90) / 3600)

    run_dir = tmp_path / "run"
    assert run_state(run_dir) == RunState("not started")
    run_dir.mkdir()
    (run_dir / "config.json").write_text("{}")
    (run_dir / "history.jsonl").write_text('{"epoch": 0}\n{"epoch": 1}\n')
    assert run_state(run_dir).describe() == "partial at epoch 2"
    (run_dir / "results.json").write_text("{}")
    assert run_state(run_dir).describe() == "done"


def test_dry_run_prints_states_and_trains_nothing(tmp_path, capsys):
    from trainers import reproduce

    plan = tmp_path / "plan.json"
    plan.write_text(json.dumps([{"dataset": "jsb", "model": "lstm", "seed": 0},
                                {"dataset": "jsb", "model": "lstm", "seed": 1}]))
    partial = tmp_path / "runs" / "jsb" / "lstm-seed1"
    partial.mkdir(parents=True)
    (partial / "config.json").write_text("{}")
    (partial / "history.jsonl").write_text('{"epoch": 0}\n')
    assert reproduce.main(["--plan", str(plan), "--runs-dir", str(tmp_path / "runs"),
                           "--results-dir", str(tmp_path / "results"), "--dry-run"]) == 0
    out = capsys.readouterr().out
    assert "jsb/lstm-seed0" in out and "not started" in out and "partial at epoch 1" in out
    assert "--model lstm --seed 1 --output-dir" in out
    assert not (tmp_path / "runs" / "jsb" / "lstm-seed0").exists()


def test_harvest_copies_only_what_changed(tmp_path):
    run = PlannedRun("nottingham", "af-scf", 0, name="af-scf-x", folder="experiments/nottingham")
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    (run_dir / "results.json").write_text('{"a": 1}')
    (run_dir / "history.jsonl").write_text('{"epoch": 0}\n')
    target = tmp_path / "results" / "experiments" / "nottingham"
    assert harvest(run, run_dir, tmp_path / "results") == [target / "af-scf-x.history.jsonl",
                                                           target / "af-scf-x.json"]  # results last
    assert harvest(run, run_dir, tmp_path / "results") == []
    (run_dir / "results.json").write_text('{"a": 2}')
    assert harvest(run, run_dir, tmp_path / "results") == [target / "af-scf-x.json"]
    assert json.loads((target / "af-scf-x.json").read_text()) == {"a": 2}
    assert sorted(p.name for p in target.iterdir()) == ["af-scf-x.history.jsonl", "af-scf-x.json"]  # no leftovers


def test_a_copy_killed_part_way_leaves_the_committed_files_whole(tmp_path, monkeypatch):
    import shutil

    run = PlannedRun("jsb", "af-scf", 0)
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    (run_dir / "results.json").write_text('{"test": {"nll": 6.4}}')
    (run_dir / "history.jsonl").write_text('{"epoch": 0}\n{"epoch": 1}\n')
    target = tmp_path / "results" / "jsb"
    target.mkdir(parents=True)
    (target / "af-scf-seed0.json").write_text('{"test": {"nll": 6.5}}')
    real_copy = shutil.copyfile

    def dies_after_half(src, dst):  # writes half the file, then the process "dies"
        pathlib.Path(dst).write_bytes(pathlib.Path(src).read_bytes()[:5])
        raise KeyboardInterrupt

    monkeypatch.setattr(shutil, "copyfile", dies_after_half)
    with pytest.raises(KeyboardInterrupt):
        harvest(run, run_dir, tmp_path / "results")
    # the history's copy died: no history, and the committed results file is untouched
    assert not (target / "af-scf-seed0.history.jsonl").exists()
    assert json.loads((target / "af-scf-seed0.json").read_text()) == {"test": {"nll": 6.5}}
    monkeypatch.setattr(shutil, "copyfile", real_copy)
    harvest(run, run_dir, tmp_path / "results")
    assert json.loads((target / "af-scf-seed0.json").read_text()) == {"test": {"nll": 6.4}}


def test_the_log_says_when_a_harvest_replaces_a_different_file(tmp_path):
    reproducer, _, lines = fake_reproducer(tmp_path)
    first, second = two_runs()
    committed = tmp_path / "results" / "jsb" / "lstm-seed0.json"
    committed.parent.mkdir(parents=True)
    committed.write_text('{"test": {"nll": 8.0}}')
    assert reproducer.run([first, second]) == 0
    assert f"[1/2] jsb/lstm-seed0: replaced {committed}" in lines
    assert any(line.endswith("lstm-seed0.history.jsonl") and ": wrote " in line for line in lines)
    assert any(line.startswith("[2/2] jsb/af-af-seed1: wrote ") for line in lines)


# -- real runs through the trainer's CLI ----------------------------------------------------------

TINY_SETTINGS = dict(epochs=3, max_steps_per_epoch=6, max_eval_batches=1, kl_zero_epochs=0, kl_ramp_epochs=1,
                     nll_samples=2, latent_size=4, embedding_size=8, hidden_units=8, prior_lstm_units=8,
                     num_flow_layers=2, flow_hidden_units=[8], jit_compile=False)


def reproduce_argv(tmp_path, plan, runs_dir, data_dir):
    return [sys.executable, "-m", "trainers.reproduce", "--plan", str(plan), "--runs-dir", str(runs_dir),
            "--results-dir", str(tmp_path / "results"), "--data-dir", str(data_dir),
            "--prepared-dir", str(tmp_path / "prepared")]


def write_plan(tmp_path, entries):
    plan = tmp_path / "plan.json"
    plan.write_text(json.dumps(entries))
    return plan


def env():
    return dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2", TF_DETERMINISTIC_OPS="1")


@pytest.mark.slow
def test_a_plan_of_two_tiny_runs_trains_harvests_and_then_does_nothing(tmp_path, shared_data_dir):
    plan = write_plan(tmp_path, [{"dataset": "jsb", "model": "af-scf", "seed": 0, "settings": TINY_SETTINGS},
                                 {"dataset": "jsb", "model": "lstm", "seed": 1, "settings": TINY_SETTINGS}])
    argv = reproduce_argv(tmp_path, plan, tmp_path / "runs", shared_data_dir)
    first = subprocess.run(argv, capture_output=True, text=True, env=env(), timeout=900)
    assert first.returncode == 0, first.stdout[-3000:] + first.stderr[-3000:]
    for name in ("af-scf-seed0", "lstm-seed1"):
        results = json.loads((tmp_path / "results" / "jsb" / f"{name}.json").read_text())
        assert np.isfinite(results["test"]["nll"]) and results["epochs_trained"] == 3
        assert len((tmp_path / "results" / "jsb" / f"{name}.history.jsonl").read_text().splitlines()) == 3
    second = subprocess.run(argv, capture_output=True, text=True, env=env(), timeout=300)
    assert second.returncode == 0 and "training" not in second.stdout, second.stdout
    assert second.stdout.count(": done") == 2


def latest_weights(run_dir):
    import tensorflow as tf

    reader = tf.train.load_checkpoint(str(run_dir / "checkpoints" / "latest"))
    return {k: reader.get_tensor(k) for k in reader.get_variable_to_shape_map()
            if k.startswith("model_variables/")}


@pytest.mark.slow
def test_a_queue_killed_mid_run_resumes_to_the_weights_of_an_uninterrupted_one(tmp_path, shared_data_dir):
    settings = dict(TINY_SETTINGS, epochs=4, max_steps_per_epoch=40)
    plan = write_plan(tmp_path, [{"dataset": "jsb", "model": "af-scf", "seed": 0, "settings": settings}])
    straight = subprocess.run(reproduce_argv(tmp_path, plan, tmp_path / "straight", shared_data_dir), capture_output=True,
                              text=True, env=env(), timeout=900)
    assert straight.returncode == 0, straight.stdout[-3000:] + straight.stderr[-3000:]

    runs_dir = tmp_path / "killed"
    run_dir = runs_dir / "jsb" / "af-scf-seed0"
    queue = subprocess.Popen(reproduce_argv(tmp_path, plan, runs_dir, shared_data_dir), stdout=subprocess.DEVNULL,
                             stderr=subprocess.DEVNULL, env=env(), start_new_session=True)
    try:
        deadline = time.monotonic() + 600
        while time.monotonic() < deadline and not (
                (run_dir / "history.jsonl").exists() and (run_dir / "history.jsonl").read_text().strip()):
            time.sleep(0.02)
        os.killpg(queue.pid, signal.SIGKILL)  # the queue only; its trainer dies with it
    finally:
        queue.wait(timeout=60)
    time.sleep(3)  # the trainer's death signal
    state = run_state(run_dir)
    assert state.status == "partial" and 1 <= state.epochs_done < 4, state

    resumed = subprocess.run(reproduce_argv(tmp_path, plan, runs_dir, shared_data_dir), capture_output=True, text=True,
                             env=env(), timeout=900)
    assert resumed.returncode == 0, resumed.stdout[-3000:] + resumed.stderr[-3000:]
    assert f"partial at epoch {state.epochs_done}, training" in resumed.stdout
    got, want = latest_weights(run_dir), latest_weights(tmp_path / "straight" / "jsb" / "af-scf-seed0")
    assert got.keys() == want.keys() and got
    for key in want:
        np.testing.assert_array_equal(got[key], want[key], err_msg=key)
