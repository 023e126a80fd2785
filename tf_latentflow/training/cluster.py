"""The worker cluster of `--strategy multiworker`: TF_CONFIG, which worker writes, agreement.

Every worker runs the same command with its own TF_CONFIG, e.g. for the second of two:

    TF_CONFIG='{"cluster": {"worker": ["host0:12345", "host1:12345"]},
                "task": {"type": "worker", "index": 1}}'

The chief (task "chief", else worker 0) writes the run directory; the others write to
a temporary directory that they delete (`WorkerRole`, `Trainer`). TF_CONFIG is
checked here before TensorFlow reads it, so that a malformed one is one line
(`ClusterError`). Building `MultiWorkerMirroredStrategy` waits for every worker of
the cluster without a limit, inside TensorFlow, holding Python's interpreter lock
(no Python thread or signal handler runs meanwhile); `multi_worker_strategy` waits
at most $LATENTFLOW_WORKER_TIMEOUT seconds (default `DEFAULT_TIMEOUT`): a small
watchdog process then prints one line and kills the waiting process (SIGKILL:
TensorFlow does not end on SIGTERM while it waits; exit status 137 in a shell). A worker that stops later is reported by TensorFlow's coordination
service to the others within seconds, as an `UnavailableError` that the trainer
turns into a `ClusterError`.
"""

from __future__ import annotations

import dataclasses
import json
import os
import subprocess
import sys

import numpy as np
import tensorflow as tf

__all__ = ["ClusterError", "DEFAULT_TIMEOUT", "EXIT_NO_CLUSTER", "TIMEOUT_ENV", "WorkerRole",
           "agree_across_workers", "multi_worker_strategy", "parse_tf_config", "sum_across_workers",
           "wait_timeout", "worker_role"]

TIMEOUT_ENV = "LATENTFLOW_WORKER_TIMEOUT"
DEFAULT_TIMEOUT = 300.0  # seconds a worker waits for the others to start
EXIT_NO_CLUSTER = 4  # the trainer's exit code for a ClusterError

# The watchdog process: waits on its stdin; when nothing arrives (neither a byte nor the
# end of the file, which the waiting process's exit also gives) within the timeout, it
# prints the message and kills the waiting process.
WATCHDOG = """
import os, select, signal, sys
parent, timeout, message = int(sys.argv[1]), float(sys.argv[2]), sys.argv[3]
ready, _, _ = select.select([sys.stdin], [], [], timeout)
if not ready:
    sys.stderr.write(message + chr(10))
    sys.stderr.flush()
    os.kill(parent, signal.SIGKILL)
"""

# What the surviving workers get when another worker stops during a collective.
LOST_WORKER_ERRORS = (tf.errors.UnavailableError, tf.errors.DeadlineExceededError, tf.errors.AbortedError,
                      tf.errors.CancelledError)


class ClusterError(RuntimeError):
    """TF_CONFIG is malformed, the workers disagree, or a worker stopped during the run."""


@dataclasses.dataclass(frozen=True)
class WorkerRole:
    """This process's place in the cluster (one process: task None, id 0, 1 worker)."""

    task_type: str | None = None
    task_id: int = 0
    num_workers: int = 1
    has_chief_task: bool = False

    @property
    def is_chief(self) -> bool:
        """The worker that writes the run directory: task "chief", else worker 0 (TensorFlow's rule)."""
        if self.task_type is None:
            return True
        if self.task_type == "chief":
            return True
        return self.task_type == "worker" and self.task_id == 0 and not self.has_chief_task

    @property
    def name(self) -> str:
        return "the only worker" if self.task_type is None else f"{self.task_type} {self.task_id}"


def worker_role(strategy) -> WorkerRole:
    """The role of this process in `strategy`'s cluster (its cluster resolver's task)."""
    resolver = getattr(strategy, "cluster_resolver", None)
    if resolver is None or resolver.task_type is None:
        return WorkerRole()
    jobs = resolver.cluster_spec().as_dict()
    count = sum(len(jobs.get(job, ())) for job in ("chief", "worker"))
    return WorkerRole(task_type=resolver.task_type, task_id=int(resolver.task_id), num_workers=max(count, 1),
                      has_chief_task=bool(jobs.get("chief")))


def parse_tf_config(text: str | None) -> WorkerRole:
    """This worker's role from the text of TF_CONFIG; ClusterError saying what is wrong."""
    if not text:
        raise ClusterError("--strategy multiworker needs TF_CONFIG, e.g. TF_CONFIG='{\"cluster\": "
                           "{\"worker\": [\"host0:12345\", \"host1:12345\"]}, \"task\": {\"type\": "
                           "\"worker\", \"index\": 0}}' (docs/distributed.md)")
    try:
        spec = json.loads(text)
    except json.JSONDecodeError as error:
        raise ClusterError(f"TF_CONFIG is not JSON ({error.msg} at character {error.pos}): {text!r}") from None
    if not isinstance(spec, dict) or not isinstance(spec.get("cluster"), dict):
        raise ClusterError(f"TF_CONFIG has no \"cluster\" object: {text!r}")
    cluster, task = spec["cluster"], spec.get("task")
    for job, addresses in cluster.items():
        if not isinstance(addresses, list) or not addresses:
            raise ClusterError(f"TF_CONFIG cluster.{job} must be a non-empty list of \"host:port\", got "
                               f"{addresses!r}")
        for address in addresses:
            host, _, port = str(address).rpartition(":")
            if not host or not port.isdigit() or not 0 < int(port) < 65536:
                raise ClusterError(f"TF_CONFIG cluster.{job} address {address!r} is not \"host:port\"")
    if not cluster.get("worker") and not cluster.get("chief"):
        raise ClusterError(f"TF_CONFIG cluster has no \"worker\" (or \"chief\") list: {text!r}")
    if not isinstance(task, dict) or "type" not in task or "index" not in task:
        raise ClusterError(f"TF_CONFIG has no \"task\": {{\"type\": ..., \"index\": ...}}: {text!r}")
    task_type, index = task["type"], task["index"]
    if task_type not in ("chief", "worker"):
        raise ClusterError(f"TF_CONFIG task.type {task_type!r}: training runs on \"chief\" and \"worker\" "
                           f"tasks only")
    if task_type not in cluster:
        raise ClusterError(f"TF_CONFIG task.type {task_type!r} is not a job of its cluster "
                           f"({', '.join(sorted(cluster))})")
    if not isinstance(index, int) or isinstance(index, bool) or not 0 <= index < len(cluster[task_type]):
        raise ClusterError(f"TF_CONFIG task.index {index!r} is not an index of cluster.{task_type} "
                           f"({len(cluster[task_type])} addresses)")
    workers = len(cluster.get("chief", ())) + len(cluster.get("worker", ()))
    return WorkerRole(task_type=task_type, task_id=index, num_workers=workers,
                      has_chief_task=bool(cluster.get("chief")))


def wait_timeout() -> float:
    """Seconds to wait for the cluster: $LATENTFLOW_WORKER_TIMEOUT, else `DEFAULT_TIMEOUT`."""
    text = os.environ.get(TIMEOUT_ENV)
    if not text:
        return DEFAULT_TIMEOUT
    try:
        value = float(text)
    except ValueError:
        value = -1.0
    if not value > 0:
        raise ClusterError(f"{TIMEOUT_ENV}={text!r} must be a number of seconds > 0")
    return value


def multi_worker_strategy(timeout: float | None = None) -> tf.distribute.MultiWorkerMirroredStrategy:
    """MultiWorkerMirroredStrategy from TF_CONFIG (checked first: `parse_tf_config`), once every
    worker has joined. A cluster not complete within `timeout` seconds (`wait_timeout`):
    one line on stderr, and the process is killed (module docstring)."""
    text = os.environ.get("TF_CONFIG")
    role = parse_tf_config(text)
    timeout = wait_timeout() if timeout is None else timeout
    message = (f"error: {role.name} of {role.num_workers}: the cluster {json.dumps(json.loads(text)['cluster'])} "
               f"did not come up within {timeout:g} s; start every worker of TF_CONFIG with its own task, "
               f"check the addresses and ports, or wait longer with {TIMEOUT_ENV}")
    watchdog = subprocess.Popen([sys.executable, "-c", WATCHDOG, str(os.getpid()), str(timeout), message],
                                stdin=subprocess.PIPE)
    try:
        strategy = tf.distribute.MultiWorkerMirroredStrategy()
        sum_across_workers(strategy, np.ones(1))  # a barrier: every worker is there
    finally:
        watchdog.stdin.close()  # the end of its input: the watchdog ends quietly
        watchdog.wait()
    return strategy


def sum_across_workers(strategy, values) -> np.ndarray:
    """The element-wise sum over the workers of each worker's `values` (float64; a
    collective that every worker must call; the values themselves with one worker)."""
    values = np.asarray(values, np.float64)
    if strategy.num_replicas_in_sync == 1:
        return values
    local = len(strategy.extended.worker_devices)

    def contribute():
        # Each worker's first local replica contributes; its other replicas add zeros.
        context = tf.distribute.get_replica_context()
        first = tf.equal(context.replica_id_in_sync_group % local, 0)
        return tf.where(first, tf.constant(values), tf.zeros_like(tf.constant(values)))

    total = strategy.reduce(tf.distribute.ReduceOp.SUM, strategy.run(contribute), axis=None)
    return total.numpy()


def agree_across_workers(strategy, role: WorkerRole, value: float, what: str, hint: str) -> None:
    """Raise ClusterError on every worker unless every worker holds the same `value`
    (a collective every worker must call)."""
    if role.num_workers == 1:
        return
    mine = np.zeros(role.num_workers)
    mine[role.task_id + (1 if role.task_type == "worker" and role.has_chief_task else 0)] = value
    values = sum_across_workers(strategy, mine)
    if np.any(values != values[0]):
        raise ClusterError(f"the workers hold different {what} ({', '.join(f'{v:g}' for v in values)}, "
                           f"chief first): {hint}")
