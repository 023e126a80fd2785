"""Character-level Penn Treebank, one sentence per example (Ziegler & Rush 2019, section 5.1).

Preprocessing follows the reference implementation (harvardnlp/TextFlow,
`utils.py`, `load_categorical`), which reads the Mikolov *word-level* files
(`data/ptb/{train,valid,test}.txt` there, `ptb/ptb.{train,valid,test}.txt`
here) line by line:

  tokens(line) = list(line.strip())      # characters; spaces inside the line kept,
                                         # "<unk>" spelled as '<','u','n','k','>'
  keep a sentence iff 1 <= len(tokens) <= 288                 (every split)

With T-conditioning the reference appends no end-of-sentence token, and neither
do we: the length model p(T) carries that information.

Vocabulary (built from the kept training sentences only):

  id 0 = "<pad>", id 1 = "<unk>", then the characters by decreasing training
  frequency, ties by code point.

The reference (torchtext) has the same size, len = 2 + #distinct train chars;
its order is "<unk>"=0, "<pad>"=1. Characters unseen in training map to "<unk>".

Examples: tokens int32 [T], length int32 T, index int32 (line number, 0-based).
The dataset metadata holds the vocabulary, its size and, per split, how many
sentences were read, kept, and dropped as too long or empty.
"""

from __future__ import annotations

import collections
import dataclasses
import io
import pathlib
from typing import Sequence

import numpy as np
import tensorflow_datasets as tfds

from tf_latentflow.data import sources
from tf_latentflow.data.builder import LocalSourceBuilder

NAME = "ptb_char"
SUBDIR = "ptb"
MAX_LENGTH = 288  # characters, as in the paper and the reference code
PAD, UNK = "<pad>", "<unk>"
PAD_ID, UNK_ID = 0, 1

_RAW = "https://raw.githubusercontent.com/harvardnlp/TextFlow/0eb8552ae5b370f69e440bca6c6c226b1734c1ba/data/ptb/"
# (TFDS split, file, canonical URL, sha256 from ../shared/data/ptb/PROVENANCE.md)
FILES = (
    ("train", sources.SourceFile(NAME, SUBDIR, "ptb.train.txt", _RAW + "train.txt",
                                 "fcea919f6cf83f35d4d00c6cbf08040d13d4155226340912e2fef9c9c4102cbf")),
    ("validation", sources.SourceFile(NAME, SUBDIR, "ptb.valid.txt", _RAW + "valid.txt",
                                      "c9fe6985fe0d4ccb578183407d7668fc6066c20700cb4cf87d8ff1cc34df1bf2")),
    ("test", sources.SourceFile(NAME, SUBDIR, "ptb.test.txt", _RAW + "test.txt",
                                "dd65dff31e70846b2a6030a87482edcd5d199130cdcfa1f3dccbb033728deee0")),
)


@dataclasses.dataclass(frozen=True)
class TextSplit:
    """The kept sentences of one split and what the length filter removed."""

    sentences: tuple[str, ...]
    line_numbers: tuple[int, ...]  # 0-based line of each kept sentence
    lines_read: int
    dropped_too_long: int
    dropped_empty: int


@dataclasses.dataclass(frozen=True)
class Vocabulary:
    """Character vocabulary: `tokens[i]` is the symbol of id i."""

    tokens: tuple[str, ...]

    @classmethod
    def from_sentences(cls, sentences: Sequence[str]) -> "Vocabulary":
        counts = collections.Counter()
        for s in sentences:
            counts.update(s)
        chars = sorted(counts, key=lambda c: (-counts[c], c))
        return cls((PAD, UNK, *chars))

    @classmethod
    def from_metadata(cls, metadata) -> "Vocabulary":
        """Rebuild from a prepared dataset's `info.metadata`."""
        return cls(tuple(metadata["vocab"]))

    @property
    def size(self) -> int:
        return len(self.tokens)

    def encode(self, sentence: str) -> np.ndarray:
        index = {c: i for i, c in enumerate(self.tokens) if i >= 2}
        return np.array([index.get(c, UNK_ID) for c in sentence], np.int32)

    def decode(self, ids) -> str:
        return "".join(self.tokens[i] if i >= 2 else ("" if i == PAD_ID else UNK) for i in np.asarray(ids))


def split_sentences(text: str, max_length: int = MAX_LENGTH) -> TextSplit:
    """Sentences of a PTB file: each line stripped, kept iff 1 <= len <= max_length."""
    kept, where, too_long, empty, n = [], [], 0, 0, 0
    for n, line in enumerate(io.StringIO(text, newline=None), start=1):
        s = line.strip()
        if not s:
            empty += 1
        elif len(s) > max_length:
            too_long += 1
        else:
            kept.append(s)
            where.append(n - 1)
    return TextSplit(tuple(kept), tuple(where), n, too_long, empty)


def read_ptb(dirs: Sequence[pathlib.Path], paths: dict[str, pathlib.Path] | None = None,
             max_length: int = MAX_LENGTH) -> dict[str, TextSplit]:
    """Read and check (UTF-8, non-empty) the three PTB files; keyed by TFDS split name."""
    out = {}
    for split, src in FILES:
        path = (paths or {}).get(split) or sources.locate(src, dirs)
        text = sources.decode_utf8(sources.read_bytes_or_fail(path, NAME), path, NAME)
        if "\x00" in text:
            line = text.count("\n", 0, text.index("\x00")) + 1
            raise sources.DataError(f"{NAME}: {path}: NUL character on line {line}: not a text file")
        out[split] = split_sentences(text, max_length)
        if not out[split].sentences:
            raise sources.DataError(f"{NAME}: {path}: no sentence of 1..{max_length} characters")
    return out


def metadata_of(splits: dict[str, TextSplit], vocab: Vocabulary, max_length: int) -> dict:
    """JSON-serialisable description of the prepared dataset (stored as TFDS metadata)."""
    return {
        "vocab": list(vocab.tokens),
        "vocab_size": vocab.size,
        "pad_id": PAD_ID,
        "unk_id": UNK_ID,
        "max_length": max_length,
        "splits": {
            name: {"lines_read": s.lines_read, "kept": len(s.sentences),
                   "dropped_too_long": s.dropped_too_long, "dropped_empty": s.dropped_empty}
            for name, s in splits.items()},
    }


class PtbChar(LocalSourceBuilder):
    """Character-level PTB sentences (Mikolov split), sentences of at most 288 characters."""

    name = NAME
    VERSION = tfds.core.Version("1.0.0")
    RELEASE_NOTES = {"1.0.0": "Sentences of the Mikolov PTB word files as characters, length <= 288."}

    def _info(self) -> tfds.core.DatasetInfo:
        return tfds.core.DatasetInfo(
            builder=self,
            description=("Penn Treebank (Mikolov preprocessing), one sentence per example, "
                         "characters as tokens, sentences longer than 288 characters dropped."),
            features=tfds.features.FeaturesDict({
                "tokens": tfds.features.Tensor(shape=(None,), dtype=np.int32),
                "length": tfds.features.Scalar(dtype=np.int32),
                "index": tfds.features.Scalar(dtype=np.int32),
            }),
            homepage="https://www.fit.vutbr.cz/~imikolov/rnnlm/",
            disable_shuffling=True,
            metadata=tfds.core.MetadataDict(),
        )

    def _split_generators(self, dl_manager):
        paths = {split: self._find(src, dl_manager) for split, src in FILES}
        splits = read_ptb((), paths)
        vocab = Vocabulary.from_sentences(splits["train"].sentences)
        self.info.metadata.update(metadata_of(splits, vocab, MAX_LENGTH))
        return {name: self._generate_examples(s, vocab) for name, s in splits.items()}

    def _generate_examples(self, split: TextSplit, vocab: Vocabulary):
        for line, sentence in zip(split.line_numbers, split.sentences):
            yield line, {"tokens": vocab.encode(sentence), "length": len(sentence), "index": line}
