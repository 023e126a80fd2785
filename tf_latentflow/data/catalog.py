"""The five datasets by name: kind, alphabet, reporting unit, CLI aliases and TFDS builder;
preparing them.

This is the one list of the datasets (`tf_latentflow.runs.registry` re-exports it
beside the models). It is plain Python: the TFDS builders are imported only when a
dataset is prepared (`DatasetEntry.builder_class`), so reading the list does not
load TensorFlow Datasets.
"""

from __future__ import annotations

import contextlib
import dataclasses
import fcntl
import os
import pathlib
import importlib
import types

from tf_latentflow import paper
from tf_latentflow.data.errors import DataError

NUM_NOTES = 88  # piano keys A0..C8: the frame size of the four music datasets (BL2012)


@dataclasses.dataclass(frozen=True)
class DatasetEntry:
    """One dataset: name (= its TFDS builder's), kind ("music": [T, 88] 0/1 piano rolls;
    "text": [T] token ids with a vocabulary stored by the builder), num_notes (music),
    and where its builder class is ("module:Class", imported on use)."""

    name: str
    kind: str
    builder: str
    num_notes: int | None = None

    @property
    def is_text(self) -> bool:
        return self.kind == "text"

    @property
    def unit(self) -> str:
        """The paper's unit of a per-step NLL: nats per time step (music), bits per character
        (text) (`tf_latentflow.paper`)."""
        return paper.unit(self.kind)

    @property
    def paper_tables(self) -> tuple[int, ...]:
        """The paper's tables that report this dataset: 3 (music), 1 and 2 (text)."""
        return paper.tables(self.kind)

    def builder_class(self) -> type:
        module, name = self.builder.split(":")
        return getattr(importlib.import_module(module), name)


def _music(name, builder):
    return DatasetEntry(name, "music", f"tf_latentflow.data.music:{builder}", NUM_NOTES)


DATASETS = types.MappingProxyType({
    "jsb_chorales": _music("jsb_chorales", "JsbChorales"),
    "nottingham": _music("nottingham", "Nottingham"),
    "piano_midi": _music("piano_midi", "PianoMidi"),
    "muse_data": _music("muse_data", "MuseData"),
    "ptb_char": DatasetEntry("ptb_char", "text", "tf_latentflow.data.ptb:PtbChar"),
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
            allow_download: bool = False):
    """The prepared TFDS builder (`tfds.core.DatasetBuilder`) of `name` under `data_dir` (prepared now if needed).

    Raw files come from `source_dir`, else $LATENTFLOW_DATA_DIR (see builder.py).
    Safe to call from several processes at once (`preparation_lock`).
    """
    import tensorflow_datasets as tfds  # here: reading the catalog stays light

    entry = DATASETS[canonical_name(name)]
    with preparation_lock(name, data_dir):
        # Built under the lock: a builder made earlier would not see a dataset that
        # another process finished preparing meanwhile.
        builder = entry.builder_class()(data_dir=os.fspath(data_dir), source_dir=source_dir,
                                    allow_download=allow_download)
        builder.download_and_prepare(
            download_config=tfds.download.DownloadConfig(try_download_gcs=False))
    return builder
