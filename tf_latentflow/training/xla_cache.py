"""A persistent XLA compilation cache on disk, shared by the runs of one machine.

With XLA on (the default without a GPU) a run compiles its training step once per
batch shape before the first step, and its evaluation steps when it first meets them, minutes
for the paper's models. Every process pays that again: a resumed run, the next seed of the same configuration, `--evaluate-only`.

TensorFlow's XLA device compiler can keep what it compiles in a directory and read it
back in a later process: `--tf_xla_persistent_cache_directory=DIR` in `TF_XLA_FLAGS`.
Each entry is keyed by a fingerprint of the HLO module it was compiled from (with the
argument shapes and the device type), so a changed model, shape or setting compiles
afresh and cannot pick up a stale program; what a cached start still spends is tracing
and lowering to HLO.

Off unless asked for (`--xla-cache-dir DIR` or `$LATENTFLOW_XLA_CACHE_DIR`):
  * the key does not name the host CPU, so a directory shared between machines of
    different CPU families (a cluster's common home) could hand one machine code built
    for another's instruction set; keep one directory per machine type;
  * TensorFlow never evicts entries (a few MB per compiled shape);
  * on every entry it reads back, TensorFlow first tries the protobuf text format and
    logs "Error parsing text-format tensorflow.XlaSerializedCacheEntry" before reading
    the binary entry it wrote: harmless, but it says "Error".

TensorFlow reads `TF_XLA_FLAGS` once, at a process's first XLA compilation, so `enable`
must run before anything is compiled (the trainers' command line calls it first).
"""

from __future__ import annotations

import os
import shlex

__all__ = ["ENV_VAR", "FLAG", "default_directory", "enable"]

ENV_VAR = "LATENTFLOW_XLA_CACHE_DIR"
FLAG = "--tf_xla_persistent_cache_directory"


def default_directory(environ=None) -> str | None:
    """`$LATENTFLOW_XLA_CACHE_DIR` when set and not empty, else None (no cache)."""
    value = (os.environ if environ is None else environ).get(ENV_VAR, "")
    return value or None


def enable(directory: str | os.PathLike | None, environ=None) -> str | None:
    """Make this process's XLA compilations use the cache in `directory` (created if
    missing) by adding `FLAG` to `TF_XLA_FLAGS`, keeping the flags already there.

    A `TF_XLA_FLAGS` that already names a cache directory wins (the user's explicit
    setting); `directory` None or "none" leaves everything as it is. Returns the
    directory in effect, or None."""
    environ = os.environ if environ is None else environ
    flags = shlex.split(environ.get("TF_XLA_FLAGS", ""))
    for flag in flags:
        if flag.startswith(FLAG + "="):
            return flag.split("=", 1)[1] or None
    if directory is None or str(directory).lower() == "none" or not str(directory):
        return None
    path = os.path.abspath(os.path.expanduser(os.fspath(directory)))
    os.makedirs(path, exist_ok=True)
    environ["TF_XLA_FLAGS"] = shlex.join(flags + [f"{FLAG}={path}"])
    return path
