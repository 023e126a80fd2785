"""The four polyphonic music benchmarks of Boulanger-Lewandowski et al. (2012).

JSB Chorales, Nottingham, Piano-midi.de and MuseData, as used in section 5.2 of
Ziegler & Rush (2019). Each example is one piece:

  piano_roll  uint8 [T, 88], piano_roll[t, j] = 1 iff MIDI note j + 21 sounds at step t
  length      int32 T (>= 1)
  index       int32 position of the piece in its published split

Splits are the published ones (train / validation / test), in their published
order. The builders read the normalised JSON copies
(`{"train","valid","test"}` -> pieces -> steps -> sorted MIDI notes 21..108);
for JSB Chorales the original BL2012 pickle is accepted as well, read with the
restricted unpickler of `sources.load_plain_pickle`, and can be downloaded from
its canonical URL (sha256 checked) when `allow_download=True`.
"""

from __future__ import annotations

import dataclasses
import json
import pathlib
from typing import Sequence

import numpy as np
import tensorflow_datasets as tfds

from tf_latentflow.data import sources
from tf_latentflow.data.builder import LocalSourceBuilder
from tf_latentflow.data.errors import DataError, MissingDataError

LOWEST_NOTE = 21
HIGHEST_NOTE = 108
NUM_NOTES = HIGHEST_NOTE - LOWEST_NOTE + 1  # 88 piano keys

# (TFDS split name, key in the source files)
SPLITS = (("train", "train"), ("validation", "valid"), ("test", "test"))

_CITATION = """@inproceedings{boulanger2012modeling,
  title={Modeling Temporal Dependencies in High-Dimensional Sequences: Application to
         Polyphonic Music Generation and Transcription},
  author={Boulanger-Lewandowski, Nicolas and Bengio, Yoshua and Vincent, Pascal},
  booktitle={ICML}, year={2012}}"""


@dataclasses.dataclass(frozen=True)
class MusicSpec:
    """Where a music dataset's files are and what its published splits hold."""

    name: str
    title: str
    subdir: str
    json_file: str
    split_sizes: tuple[int, int, int]  # train, validation, test
    pickle_file: str | None = None
    pickle_url: str | None = None
    pickle_sha256: str | None = None

    @property
    def json_source(self) -> sources.SourceFile:
        return sources.SourceFile(self.name, self.subdir, self.json_file)

    @property
    def pickle_source(self) -> sources.SourceFile | None:
        if not self.pickle_file:
            return None
        return sources.SourceFile(self.name, self.subdir, self.pickle_file,
                                  self.pickle_url, self.pickle_sha256)


JSB_CHORALES = MusicSpec(
    name="jsb_chorales", title="JSB Chorales", subdir="jsb_chorales",
    json_file="jsb_chorales.json", split_sizes=(229, 76, 77),
    pickle_file="JSB_Chorales.pickle",
    pickle_url="http://www-etud.iro.umontreal.ca/~boulanni/JSB%20Chorales.pickle",
    pickle_sha256="69dc4c3e52800959ac0ab3b82aa3e5f55285ce64f1705acb3e3a8ef77a5c051c")
NOTTINGHAM = MusicSpec(name="nottingham", title="Nottingham", subdir="nottingham",
                       json_file="nottingham.json", split_sizes=(694, 173, 170))
PIANO_MIDI = MusicSpec(name="piano_midi", title="Piano-midi.de", subdir="piano_midi",
                       json_file="piano_midi.json", split_sizes=(87, 12, 25))
MUSE_DATA = MusicSpec(name="muse_data", title="MuseData", subdir="musedata",
                      json_file="musedata.json", split_sizes=(524, 135, 124))

SPECS = {s.name: s for s in (JSB_CHORALES, NOTTINGHAM, PIANO_MIDI, MUSE_DATA)}

Piece = list  # list of time steps, each a list of MIDI note numbers


def read_json(path: pathlib.Path, dataset: str):
    """Parse a JSON file, turning decoding and syntax errors into one-line DataErrors."""
    text = sources.decode_utf8(sources.read_bytes_or_fail(path, dataset), path, dataset)
    try:
        return json.loads(text)
    except json.JSONDecodeError as e:
        raise DataError(f"{dataset}: {path} is truncated or not valid JSON: {e.msg} "
                        f"at line {e.lineno} column {e.colno}") from None
    except RecursionError:
        raise DataError(f"{dataset}: {path}: JSON nested too deeply") from None


def validate_splits(raw, path: pathlib.Path, dataset: str) -> dict[str, list[Piece]]:
    """Check the `{"train","valid","test"}` structure and every note; return by TFDS split name.

    Raises DataError naming the file and the first bad record
    (split, piece, step) on: a missing split, a piece that is not a non-empty
    list, a step that is not a list, a note that is not an int in 21..108, or a
    note repeated within a step.
    """
    if not isinstance(raw, dict):
        raise DataError(f"{dataset}: {path}: top level is {type(raw).__name__}, "
                        "expected a dict with keys 'train', 'valid', 'test'")
    out = {}
    for split, key in SPLITS:
        if key not in raw:
            raise DataError(f"{dataset}: {path}: split {key!r} missing (keys: {sorted(map(str, raw))})")
        pieces = raw[key]
        if not isinstance(pieces, (list, tuple)):
            raise DataError(f"{dataset}: {path}: split {key!r} is {type(pieces).__name__}, expected a list")
        for i, piece in enumerate(pieces):
            where = f"{dataset}: {path}: split {key!r}, sequence {i}"
            if not isinstance(piece, (list, tuple)):
                raise DataError(f"{where}: is {type(piece).__name__}, expected a list of time steps")
            if not piece:
                raise DataError(f"{where}: empty sequence (no time steps)")
            for t, step in enumerate(piece):
                if not isinstance(step, (list, tuple)):
                    raise DataError(f"{where}, step {t}: is {type(step).__name__}, "
                                    "expected a list of MIDI notes")
                for note in step:
                    if type(note) is not int:  # noqa: E721 (bool and float are refused)
                        raise DataError(f"{where}, step {t}: note {note!r} is not an integer")
                    if not LOWEST_NOTE <= note <= HIGHEST_NOTE:
                        raise DataError(f"{where}, step {t}: note {note} outside "
                                        f"{LOWEST_NOTE}..{HIGHEST_NOTE}")
                if len(set(step)) != len(step):
                    raise DataError(f"{where}, step {t}: note repeated in {list(step)}")
        out[split] = [list(p) for p in pieces]
    return out


def read_music(spec: MusicSpec, dirs: Sequence[pathlib.Path], *,
               fallback: pathlib.Path | None = None) -> tuple[dict[str, list[Piece]], pathlib.Path]:
    """Read and validate a music dataset from the first of `dirs` that holds it.

    The normalised JSON is preferred; for JSB Chorales the BL2012 pickle is used
    when the JSON is absent. `fallback` is an already-downloaded pickle path.
    Returns (pieces by split, path read).
    """
    try:
        path = sources.locate(spec.json_source, dirs)
        raw = read_json(path, spec.name)
    except MissingDataError as missing:
        path = fallback
        if path is None and spec.pickle_source is not None:
            try:
                path = sources.locate(spec.pickle_source, dirs)
            except MissingDataError:
                pass
        if path is None:
            raise missing
        raw = sources.load_plain_pickle(path, spec.name)
    return validate_splits(raw, path, spec.name), path


def piano_roll(piece: Piece) -> np.ndarray:
    """uint8 [T, 88] piano roll of a piece given as lists of MIDI notes (column j = note j + 21)."""
    roll = np.zeros((len(piece), NUM_NOTES), np.uint8)
    rows = np.repeat(np.arange(len(piece)), [len(s) for s in piece])
    cols = np.fromiter((n for s in piece for n in s), np.int64, count=len(rows)) - LOWEST_NOTE
    roll[rows, cols] = 1
    return roll


def notes_of(roll: np.ndarray) -> Piece:
    """Inverse of `piano_roll`: the sorted MIDI notes of each step."""
    return [sorted(int(j) + LOWEST_NOTE for j in np.flatnonzero(row)) for row in np.asarray(roll)]


class MusicBuilder(LocalSourceBuilder, skip_registration=True):
    """TFDS builder for one BL2012 music dataset; subclasses set SPEC."""

    SPEC: MusicSpec
    VERSION = tfds.core.Version("1.0.0")
    RELEASE_NOTES = {"1.0.0": "Published BL2012 splits from the normalised JSON files."}

    def _info(self) -> tfds.core.DatasetInfo:
        return tfds.core.DatasetInfo(
            builder=self,
            description=(f"{self.SPEC.title} (Boulanger-Lewandowski et al., 2012), published split "
                         f"{'/'.join(map(str, self.SPEC.split_sizes))}. piano_roll[t, j] = 1 iff "
                         f"MIDI note j+{LOWEST_NOTE} sounds at step t."),
            features=tfds.features.FeaturesDict({
                "piano_roll": tfds.features.Tensor(shape=(None, NUM_NOTES), dtype=np.uint8,
                                                   encoding=tfds.features.Encoding.ZLIB),
                "length": tfds.features.Scalar(dtype=np.int32),
                "index": tfds.features.Scalar(dtype=np.int32),
            }),
            homepage="http://www-etud.iro.umontreal.ca/~boulanni/icml2012",
            citation=_CITATION,
            disable_shuffling=True,  # keep the published order
            metadata=tfds.core.MetadataDict(),
        )

    def _split_generators(self, dl_manager):
        dirs = self._search_dirs(dl_manager)
        fallback = None
        try:
            sources.locate(self.SPEC.json_source, dirs)
        except MissingDataError:
            src = self.SPEC.pickle_source
            local = False
            if src is not None:
                try:
                    sources.locate(src, dirs)
                    local = True
                except MissingDataError:
                    pass
            if not local and self._allow_download and src is not None and src.url:
                fallback = sources.download(src, pathlib.Path(dl_manager.download_dir) / "latentflow")
        # Read and validate everything before the first example is written.
        splits, path = read_music(self.SPEC, dirs, fallback=fallback)
        self.info.metadata.update({
            "source_file": path.name,
            "source_sha256": sources.sha256_of(path),
            "lowest_note": LOWEST_NOTE,
            "num_notes": NUM_NOTES,
        })
        return {split: self._generate_examples(pieces) for split, pieces in splits.items()}

    def _generate_examples(self, pieces):
        for i, piece in enumerate(pieces):
            yield i, {"piano_roll": piano_roll(piece), "length": len(piece), "index": i}


class JsbChorales(MusicBuilder):
    """JSB Chorales: 382 four-part Bach chorales, quarter-note steps (229/76/77)."""

    name = "jsb_chorales"
    SPEC = JSB_CHORALES


class Nottingham(MusicBuilder):
    """Nottingham: 1037 folk tunes, eighth-note steps (694/173/170)."""

    name = "nottingham"
    SPEC = NOTTINGHAM


class PianoMidi(MusicBuilder):
    """Piano-midi.de: 124 classical piano pieces, eighth-note steps (87/12/25)."""

    name = "piano_midi"
    SPEC = PIANO_MIDI


class MuseData(MusicBuilder):
    """MuseData: 783 orchestral and piano pieces, eighth-note steps (524/135/124)."""

    name = "muse_data"
    SPEC = MUSE_DATA
