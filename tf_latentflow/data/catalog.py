"""The five datasets by name: their builders, kinds and CLI aliases; preparing and loading them."""

from __future__ import annotations

import contextlib
import dataclasses
import fcntl
import os
import pathlib
import types

import tensorflow_datasets as tfds

from tf_latentflow.data import music, ptb
from tf_latentflow.data.errors import DataError


@dataclasses.dataclass(frozen=True)
class DatasetEntry:
    name: str
    kind: str  # "music" or "text"
    builder_cls: type


DATASETS = types.MappingProxyType({
    "jsb_chorales": DatasetEntry("jsb_chorales", "music", music.JsbChorales),
    "nottingham": DatasetEntry("nottingham", "music", music.Nottingham),
    "piano_midi": DatasetEntry("piano_midi", "music", music.PianoMidi),
    "muse_data": DatasetEntry("muse_data", "music", music.MuseData),
    "ptb_char": DatasetEntry("ptb_char", "text", ptb.PtbChar),
})
ALIASES = types.MappingProxyType({
    "jsb": "jsb_chorales", "piano": "piano_midi", "muse": "muse_data", "musedata": "muse_data",
    "ptb": "ptb_char",
})


def canonical_name(name: str) -> str:
    """The builder name for `name` or an alias; DataError listing the choices otherwise."""
    key = name.strip().lower().replace("-", "_")
    key = ALIASES.get(key, key)
    if key not in DATASETS:
        raise DataError(f"unknown dataset {name!r}; choose one of {', '.join(DATASETS)} "
                        f"(aliases: {', '.join(ALIASES)})")
    return key


@contextlib.contextmanager
def preparation_lock(name: str, data_dir: os.PathLike | str):
    """Exclusive lock on preparing `name` under `data_dir`, across processes.

    TFDS prepares into an `incomplete.*` folder and renames it; two runs started at
    once on a fresh machine (two trainers, say) both prepare and the second rename
    fails. Whoever holds this lock prepares; the others wait, then reuse the result.
    """
    root = pathlib.Path(data_dir)
    root.mkdir(parents=True, exist_ok=True)
    with open(root / f".{canonical_name(name)}.prepare.lock", "a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def prepare(name: str, *, data_dir: os.PathLike | str, source_dir: os.PathLike | str | None = None,
            allow_download: bool = False) -> tfds.core.DatasetBuilder:
    """The prepared TFDS builder of `name` under `data_dir` (prepared now if needed).

    Raw files come from `source_dir`, else $LATENTFLOW_DATA_DIR (see builder.py).
    Safe to call from several processes at once (`preparation_lock`).
    """
    entry = DATASETS[canonical_name(name)]
    with preparation_lock(name, data_dir):
        # Built under the lock: a builder made earlier would not see a dataset that
        # another process finished preparing meanwhile.
        builder = entry.builder_cls(data_dir=os.fspath(data_dir), source_dir=source_dir,
                                    allow_download=allow_download)
        builder.download_and_prepare(
            download_config=tfds.download.DownloadConfig(try_download_gcs=False))
    return builder
