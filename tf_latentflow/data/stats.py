"""Per-split statistics of a dataset, read from its raw files (behind `info` in the CLI)."""

from __future__ import annotations

import dataclasses
import os
from typing import Sequence

from tf_latentflow.data import catalog, music, ptb, sources


@dataclasses.dataclass(frozen=True)
class SplitStats:
    split: str
    sequences: int
    total_steps: int
    min_length: int
    mean_length: float
    max_length: int
    dropped_too_long: int | None = None  # text only
    dropped_empty: int | None = None  # text only

    @classmethod
    def of_lengths(cls, split: str, lengths: Sequence[int], **kw) -> "SplitStats":
        lengths = list(lengths)
        return cls(split, len(lengths), sum(lengths), min(lengths),
                   sum(lengths) / len(lengths), max(lengths), **kw)


@dataclasses.dataclass(frozen=True)
class DatasetStats:
    name: str
    source: str
    splits: tuple[SplitStats, ...]
    vocab_size: int | None = None  # text only


def source_stats(name: str, data_dir: os.PathLike | str | None = None) -> DatasetStats:
    """Read, validate and summarise `name` from `data_dir` (else $LATENTFLOW_DATA_DIR).

    Uses the same readers and checks as the TFDS builders, without preparing.
    """
    name = catalog.canonical_name(name)
    dirs = sources.search_dirs(data_dir)
    if catalog.DATASETS[name].kind == "music":
        splits, path = music.read_music(music.SPECS[name], dirs)
        rows = tuple(SplitStats.of_lengths(s, [len(p) for p in pieces]) for s, pieces in splits.items())
        return DatasetStats(name, str(path), rows)
    text = ptb.read_ptb(dirs)
    rows = tuple(SplitStats.of_lengths(s, [len(x) for x in t.sentences],
                                       dropped_too_long=t.dropped_too_long,
                                       dropped_empty=t.dropped_empty)
                 for s, t in text.items())
    vocab = ptb.Vocabulary.from_sentences(text["train"].sentences)
    where = str(sources.locate(ptb.FILES[0][1], dirs).parent)
    return DatasetStats(name, where, rows, vocab_size=vocab.size)


def format_stats(stats: DatasetStats) -> str:
    """A plain-text table, one row per split."""
    text = stats.vocab_size is not None
    head = ["split", "sequences", "time steps", "min len", "mean len", "max len"]
    if text:
        head += ["dropped >288", "dropped empty"]
    rows = [head]
    for s in stats.splits:
        row = [s.split, str(s.sequences), str(s.total_steps), str(s.min_length),
               f"{s.mean_length:.2f}", str(s.max_length)]
        if text:
            row += [str(s.dropped_too_long), str(s.dropped_empty)]
        rows.append(row)
    widths = [max(len(r[i]) for r in rows) for i in range(len(head))]
    lines = [f"{stats.name} (source: {stats.source})"]
    for r in rows:
        lines.append("  ".join([r[0].ljust(widths[0])] + [c.rjust(w) for c, w in zip(r[1:], widths[1:])]))
    if text:
        lines.append(f"vocabulary size: {stats.vocab_size} (including <pad> and <unk>; built from train)")
    return "\n".join(lines)
