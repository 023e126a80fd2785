"""Run a plan of experiments one after another, resumably (`python -m trainers.reproduce`).

Each `plan.PlannedRun` trains in `<runs_dir>/<folder>/<name>`, through the trainer's
own command line (`python -m trainers.music` or `trainers.text`) in a child process,
so a run that crashes or runs out of memory fails alone. A run's state is read from
its directory (`run_state`):

  done         results.json exists (the trainer writes it last)
  failed       FAILED.json exists (written here when the trainer exits non-zero);
               skipped until `retry_failed`
  partial      config.json exists: the trainer resumes it from checkpoints/latest
               (`epochs_done` finished epochs, from history.jsonl)
  not started  nothing yet

A finished run's results.json and history.jsonl are copied ("harvested") to
`<results_dir>/<folder>/<name>.json` and `.history.jsonl`; the log says "replaced"
where a different file was there before. Running the plan again trains nothing that
is done and copies nothing that is already identical.

Interruptions: SIGINT or SIGTERM to this process is passed on to the trainer as one
SIGINT (it finishes its step, saves a checkpoint and exits), then the queue stops; one
that comes between two runs starts no other. The
trainer dies with this process if this process is killed (Linux: PR_SET_PDEATHSIG), and
a later invocation resumes it from its last checkpoint. One invocation per runs
directory at a time (a lock file).

Projected hours (`project`) come from the committed histories of the same dataset and
model under `results_dir` (its table folder's runs, else any of its runs, else, marked
"~", another latent model's): the median epoch time (epoch 0, which compiles, apart), the
median number of epochs those runs trained (the plateau rule usually ends them before
their declared epochs) capped by the run's declared epochs, and the median final
evaluation time. A partial run with two or more epochs of its own supplies the epoch
time instead: it was measured on this machine with the run's own settings, where the
committed histories may come from another machine.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import json
import os
import pathlib
import shutil
import signal
import statistics
import subprocess
import sys
import time
from typing import Callable, Iterable, Sequence

from tf_latentflow.training import plan
from tf_latentflow.training.history import read_history
from tf_latentflow.training.plan import PlannedRun

__all__ = ["RunState", "Projection", "run_state", "trainer_command", "project", "harvest", "Reproducer",
           "FAILED_FILE", "LOG_FILE", "ReproduceError"]

FAILED_FILE = "FAILED.json"
LOG_FILE = "reproduce.log"
LOCK_FILE = ".reproduce.lock"
# Exit code of the trainer after Ctrl-C (trainers.cli): a checkpoint was saved.
INTERRUPTED = 130


class ReproduceError(RuntimeError):
    """The plan cannot run (a setting without a flag, a runs directory in use)."""


@dataclasses.dataclass(frozen=True)
class RunState:
    status: str  # "done", "failed", "partial" or "not started"
    epochs_done: int = 0
    detail: str = ""

    def describe(self) -> str:
        if self.status == "partial":
            return f"partial at epoch {self.epochs_done}"
        if self.status == "failed":
            return f"failed ({self.detail})" if self.detail else "failed"
        return self.status


def run_state(run_dir) -> RunState:
    """The state of the run in `run_dir` (module docstring)."""
    run_dir = pathlib.Path(run_dir)
    epochs = 0
    history = run_dir / "history.jsonl"
    if history.is_file():
        epochs = sum(1 for line in history.read_text().splitlines() if line.strip())
    if (run_dir / "results.json").is_file():
        return RunState("done", epochs)
    failed = run_dir / FAILED_FILE
    if failed.is_file():
        record = json.loads(failed.read_text())
        return RunState("failed", epochs, f"exit code {record.get('returncode')}")
    if (run_dir / "config.json").is_file():
        return RunState("partial", epochs)
    return RunState("not started")


# -- the trainer's command line -------------------------------------------------------------

def _trainer_flags() -> dict[str, argparse.Action]:
    from tf_latentflow.training.config import MUSIC_DATASETS, TEXT_DATASETS, add_arguments

    parser = argparse.ArgumentParser(add_help=False)
    add_arguments(parser, datasets=tuple(MUSIC_DATASETS) + tuple(TEXT_DATASETS), default_dataset="jsb_chorales")
    return {action.dest: action for action in parser._actions if action.option_strings}


def _flag_tokens(action: argparse.Action, value) -> list[str]:
    name = action.option_strings[0]
    if isinstance(action, argparse.BooleanOptionalAction):
        return [name if value else "--no-" + name[2:]]
    if isinstance(value, (tuple, list)):
        return [name, *map(str, value)]
    return [name, repr(value) if isinstance(value, float) else str(value)]


def trainer_command(run: PlannedRun, output_dir, *, data_dir: str | None = None,
                    prepared_dir: str | None = None, xla_cache_dir: str | None = None,
                    python: str = sys.executable) -> list[str]:
    """The argv that trains `run` into `output_dir` with the trainer's own CLI."""
    flags = _trainer_flags()
    argv = [python, "-m", "trainers.text" if run.is_text else "trainers.music",
            "--dataset", run.dataset, "--model", run.model, "--seed", str(run.seed),
            "--output-dir", str(output_dir)]
    for name, value in sorted(run.settings.items()):
        if name not in flags:
            raise ReproduceError(f"{run.key}: setting {name!r} has no trainer flag")
        argv += _flag_tokens(flags[name], value)
    for flag, value in (("--data-dir", data_dir), ("--prepared-dir", prepared_dir),
                        ("--xla-cache-dir", xla_cache_dir)):
        if value:
            argv += [flag, str(value)]
    return argv


# -- projected hours ------------------------------------------------------------------------

@dataclasses.dataclass(frozen=True)
class Projection:
    hours: float | None
    source: str  # which committed runs it rests on


def _declared_epochs(run: PlannedRun) -> int:
    from tf_latentflow.training.config import default_config

    return default_config(run.dataset, run.model, "", **{"jit_compile": True, **dict(run.settings)}).epochs


def _committed_runs(results_dir: pathlib.Path, dataset: str) -> list[tuple[dict, list[dict]]]:
    """(results.json, history records) of every committed run of `dataset` with a history
    in `results_dir` and its sub-folders."""
    found = []
    for history in sorted(results_dir.rglob("*.history.jsonl")):
        results = history.with_name(history.name[:-len(".history.jsonl")] + ".json")
        if not results.is_file():
            continue
        record = json.loads(results.read_text())
        if record.get("dataset") != dataset:
            continue
        found.append((record, read_history(history)))
    return found


def _own_epoch_seconds(run_dir) -> list[float]:
    """The epoch times in `run_dir`'s history after its first epoch (which compiles)."""
    if run_dir is None or not (pathlib.Path(run_dir) / "history.jsonl").is_file():
        return []
    return [r["epoch_seconds"] for r in read_history(run_dir)[1:] if "epoch_seconds" in r]


def project(run: PlannedRun, state: RunState, results_dir, run_dir=None) -> Projection:
    """The hours `run` still needs, from the committed runs of its dataset and model
    (module docstring); of its dataset's other latent models when its model has none.
    `run_dir`: the run's own directory, whose epochs, when it has two or more, give
    the epoch time."""
    if state.status == "done":
        return Projection(0.0, "done")
    results_dir = pathlib.Path(results_dir)
    table_folder = results_dir / plan.RESULT_FOLDERS.get(run.dataset, run.dataset)
    committed = {where: [c for c in _committed_runs(folder, run.dataset) if len(c[1]) >= 2]
                 for where, folder in (("table ", table_folder), ("", results_dir))}
    same, source = [], ""
    # The same model's table runs, then any of its runs; then another latent model's.
    for where in ("table ", ""):
        same = [c for c in committed[where] if c[0].get("model") == run.model]
        source = f"{len(same)} committed {where}{run.model} run(s)"
        if same:
            break
    for where in ("table ", "") if not same and run.model != "lstm" else ():
        same = [c for c in committed[where] if c[0].get("model") != "lstm"]
        source = f"~ {len(same)} committed {where}run(s) of other flows"
        if same:
            break
    if not same:
        return Projection(None, "no committed history")
    epoch_seconds = [r["epoch_seconds"] for _, history in same for r in history[1:] if "epoch_seconds" in r]
    first_extra = statistics.median(h[0].get("epoch_seconds", 0.0) for _, h in same) - statistics.median(
        epoch_seconds)
    own = _own_epoch_seconds(run_dir) if state.status in ("partial", "failed") else []
    if own:
        epoch_seconds = own
        source += f"; epoch time from its own {len(own) + 1} epochs"
    trained = statistics.median(int(r.get("epochs_trained", len(h))) for r, h in same)
    expected = min(_declared_epochs(run), int(round(trained)))
    evaluation = statistics.median(float(r.get("evaluation_seconds", 0.0)) for r, _ in same)
    remaining = max(expected - state.epochs_done, 0)
    seconds = remaining * statistics.median(epoch_seconds) + evaluation
    if state.epochs_done == 0:
        seconds += max(first_extra, 0.0)
    return Projection(seconds / 3600.0, source)


# -- harvesting -----------------------------------------------------------------------------

def harvest_targets(run: PlannedRun, results_dir) -> tuple[pathlib.Path, pathlib.Path]:
    """Where `harvest` copies `run`: `<results_dir>/<folder>/<name>.history.jsonl` and
    `.json`."""
    target = pathlib.Path(results_dir) / run.folder
    return target / (run.name + ".history.jsonl"), target / (run.name + ".json")


def harvest(run: PlannedRun, run_dir, results_dir) -> list[pathlib.Path]:
    """Copy a finished run's history.jsonl and results.json to `harvest_targets`; returns
    the files that changed (none when the copies are already identical). Each copy is
    written beside its target and renamed over it, the results file last, so a copy
    killed part-way never leaves a truncated file, nor a results file (what
    `--only-missing` looks for) without its history."""
    run_dir = pathlib.Path(run_dir)
    changed = []
    for source, dst in zip(("history.jsonl", "results.json"), harvest_targets(run, results_dir)):
        src = run_dir / source
        if not src.is_file():
            continue
        if dst.is_file() and dst.read_bytes() == src.read_bytes():
            continue
        dst.parent.mkdir(parents=True, exist_ok=True)
        partial = dst.with_name(dst.name + ".partial")
        shutil.copyfile(src, partial)
        os.replace(partial, dst)
        changed.append(dst)
    return changed


# -- running --------------------------------------------------------------------------------

def _die_with_parent():  # runs in the child between fork and exec
    try:
        import ctypes

        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        pass


@contextlib.contextmanager
def _exclusive(runs_dir: pathlib.Path):
    import fcntl

    runs_dir.mkdir(parents=True, exist_ok=True)
    with open(runs_dir / LOCK_FILE, "w") as lock:
        try:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise ReproduceError(f"another `trainers.reproduce` is running in {runs_dir}") from None
        yield


def _tail(path: pathlib.Path, lines: int = 20) -> list[str]:
    if not path.is_file():
        return []
    return path.read_text(errors="replace").splitlines()[-lines:]


class Reproducer:
    """Runs planned runs one after another in `runs_dir` (module docstring).

    `command(run, output_dir)` makes a run's argv (default: `trainer_command` with the
    given data and cache directories); tests pass another."""

    def __init__(self, runs_dir, results_dir, *, command: Callable[[PlannedRun, pathlib.Path], list[str]],
                 log: Callable[[str], None] = print, env: dict | None = None):
        self.runs_dir, self.results_dir = pathlib.Path(runs_dir), pathlib.Path(results_dir)
        self.command, self.log, self.env = command, log, env
        self._child: subprocess.Popen | None = None
        self._stop = False

    def run_dir(self, run: PlannedRun) -> pathlib.Path:
        return self.runs_dir / run.folder / run.name

    def states(self, runs: Iterable[PlannedRun]) -> list[tuple[PlannedRun, RunState]]:
        return [(run, run_state(self.run_dir(run))) for run in runs]

    def run(self, runs: Sequence[PlannedRun], *, retry_failed: bool = False) -> int:
        """Train every run that is not done; 0 when all are done, 1 when one failed,
        130 when stopped by a signal (the interrupted run resumes next time)."""
        for run in runs:  # every command is valid before the first run starts
            self.command(run, self.run_dir(run))
        self._stop = False
        with _exclusive(self.runs_dir), self._signals():
            failed = 0
            for index, run in enumerate(runs, 1):
                if self._stop:  # a signal between two runs: start no other
                    self.log(f"stopped before {run.key}; run the same command to go on")
                    return INTERRUPTED
                outcome = self._one(run, f"[{index}/{len(runs)}]", retry_failed)
                if outcome == "stopped":
                    self.log(f"stopped during {run.key}; run the same command to resume it")
                    return INTERRUPTED
                failed += outcome == "failed"
            return 1 if failed else 0

    def _one(self, run: PlannedRun, counter: str, retry_failed: bool) -> str:
        run_dir = self.run_dir(run)
        state = run_state(run_dir)
        if state.status == "failed" and not retry_failed:
            self.log(f"{counter} {run.key}: {state.describe()}; skipped (--retry-failed retries)")
            return "failed"
        if state.status != "done":
            (run_dir / FAILED_FILE).unlink(missing_ok=True)
            self.log(f"{counter} {run.key}: {state.describe()}, training (log: {run_dir / LOG_FILE})")
            returncode, seconds = self._launch(run, run_dir)
            if self._stop or returncode == INTERRUPTED:  # Ctrl-C here or to the trainer: it saved
                return "stopped"
            if returncode != 0 or run_state(run_dir).status != "done":
                record = {"returncode": returncode, "seconds": seconds,
                          "command": self.command(run, run_dir), "log_tail": _tail(run_dir / LOG_FILE)}
                (run_dir / FAILED_FILE).write_text(json.dumps(record, indent=2))
                self.log(f"{counter} {run.key}: failed with exit code {returncode} after {seconds:.0f} s "
                         f"(see {run_dir / LOG_FILE})")
                return "failed"
            self.log(f"{counter} {run.key}: trained in {seconds / 3600:.2f} h")
        existing = {path for path in harvest_targets(run, self.results_dir) if path.is_file()}
        for path in harvest(run, run_dir, self.results_dir):
            self.log(f"{counter} {run.key}: {'replaced' if path in existing else 'wrote'} {path}")
        if state.status == "done":
            self.log(f"{counter} {run.key}: done")
        return "done"

    def _launch(self, run: PlannedRun, run_dir: pathlib.Path) -> tuple[int, float]:
        run_dir.mkdir(parents=True, exist_ok=True)
        argv = self.command(run, run_dir)
        started = time.monotonic()
        with open(run_dir / LOG_FILE, "a") as log:
            log.write(f"\n$ {' '.join(argv)}\n")
            log.flush()
            self._child = subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                           start_new_session=True, preexec_fn=_die_with_parent, env=self.env)
            if self._stop:  # the signal came while it started, before the handler could pass it on
                self._child.send_signal(signal.SIGINT)
            try:
                returncode = self._child.wait()
            finally:
                self._child = None
        return returncode, time.monotonic() - started

    @contextlib.contextmanager
    def _signals(self):
        def handler(signum, frame):
            if not self._stop:
                self.log(f"signal {signum}: stopping the current run after its step (it saves a checkpoint)")
            self._stop = True
            if self._child is not None and self._child.poll() is None:
                self._child.send_signal(signal.SIGINT)

        previous = {s: signal.signal(s, handler) for s in (signal.SIGINT, signal.SIGTERM)}
        try:
            yield
        finally:
            for s, h in previous.items():
                signal.signal(s, h)


def default_command(*, data_dir=None, prepared_dir=None, xla_cache_dir=None):
    """`Reproducer`'s command: the trainer's CLI (`trainer_command`)."""
    def command(run: PlannedRun, output_dir) -> list[str]:
        return trainer_command(run, output_dir, data_dir=data_dir, prepared_dir=prepared_dir,
                               xla_cache_dir=xla_cache_dir)
    return command


def environment() -> dict:
    """The children's environment: this one, with the checkout that holds this module
    first on PYTHONPATH, so that a pinned worktree's runs train its own code."""
    env = dict(os.environ)
    here = str(pathlib.Path(__file__).resolve().parents[2])
    rest = [p for p in env.get("PYTHONPATH", "").split(os.pathsep) if p and p != here]
    env["PYTHONPATH"] = os.pathsep.join([here, *rest])
    return env
