"""ptb_char: sentences as characters, the 288 filter, the vocabulary, bad text files."""

import numpy as np
import pytest

from tf_latentflow import data as D
from tf_latentflow.data import ptb


def test_sentences_are_stripped_lines_and_long_ones_dropped():
    text = " a <unk> b \n\n" + " " + "x" * 288 + " \n" + "y" * 289 + "\n last \n"
    split = ptb.split_sentences(text)
    assert split.sentences == ("a <unk> b", "x" * 288, "last")
    assert split.line_numbers == (0, 2, 4)
    assert (split.lines_read, split.dropped_too_long, split.dropped_empty) == (5, 1, 1)


def test_vocabulary_order_and_unknowns():
    vocab = ptb.Vocabulary.from_sentences(["aab", "b a", "c"])
    # pad, unk, then by decreasing frequency (a:3, b:2), ties by code point (' ' < 'c')
    assert vocab.tokens == ("<pad>", "<unk>", "a", "b", " ", "c")
    ids = vocab.encode("ab z")
    assert ids.tolist() == [2, 3, 4, ptb.UNK_ID] and ids.dtype == np.int32
    assert vocab.decode([2, 3, 4, 1, 0, 0]) == "ab <unk>"


def _write_ptb(root, train=" a b \n c \n", valid=" a \n", test=" b \n", raw=None):
    d = root / "ptb"
    d.mkdir(parents=True, exist_ok=True)
    for name, text in (("train", train), ("valid", valid), ("test", test)):
        (d / f"ptb.{name}.txt").write_bytes(text.encode() if isinstance(text, str) else text)
    return d


def test_non_utf8_file_names_file_and_line(tmp_path):
    _write_ptb(tmp_path, valid=b" fine \n also fine \n bad \xe9 byte \n")
    with pytest.raises(D.DataError, match=r"ptb_char: .*ptb\.valid\.txt is not UTF-8: line 3"):
        ptb.read_ptb([tmp_path])


def test_missing_file_names_it(tmp_path):
    d = _write_ptb(tmp_path)
    (d / "ptb.test.txt").unlink()
    with pytest.raises(D.MissingDataError, match=r"ptb_char: expected file 'ptb\.test\.txt'") as err:
        ptb.read_ptb([tmp_path])
    assert str(d) in str(err.value) and "\n" not in str(err.value)


def test_binary_file_is_refused(tmp_path):
    _write_ptb(tmp_path, test=b" ok \n\x00\x00\x00")
    with pytest.raises(D.DataError, match=r"ptb\.test\.txt: NUL character on line 2"):
        ptb.read_ptb([tmp_path])


def test_small_prepared_dataset_and_metadata(tmp_path):
    _write_ptb(tmp_path / "src", train=" ab \n" + "z" * 300 + "\n ba a \n", valid=" ab q \n", test="\n b \n")
    builder = D.prepare("ptb_char", data_dir=tmp_path / "tfds", source_dir=tmp_path / "src")
    meta = builder.info.metadata
    assert meta["vocab"] == ["<pad>", "<unk>", "a", "b", " "] and meta["vocab_size"] == 5
    assert meta["splits"]["train"] == {"lines_read": 3, "kept": 2, "dropped_too_long": 1, "dropped_empty": 0}
    assert meta["splits"]["test"]["dropped_empty"] == 1
    ex = next(builder.as_dataset(split="validation").as_numpy_iterator())
    vocab = ptb.Vocabulary.from_metadata(meta)
    assert vocab.decode(ex["tokens"]) == "ab <unk>" and ex["length"] == 4


def test_real_ptb_char(prepared):
    builder = prepared("ptb_char")
    meta = builder.info.metadata
    assert meta["vocab_size"] == 51  # 49 characters + <pad> + <unk>
    # PROVENANCE.md: 42068 / 3370 / 3761 lines; the reference drops > 288 characters.
    for split, lines in (("train", 42068), ("validation", 3370), ("test", 3761)):
        s = meta["splits"][split]
        assert s["lines_read"] == lines
        assert s["kept"] + s["dropped_too_long"] + s["dropped_empty"] == lines
        assert builder.info.splits[split].num_examples == s["kept"]
    assert [meta["splits"][s]["dropped_too_long"] for s in ("train", "validation", "test")] == [328, 14, 26]
    ex = next(builder.as_dataset(split="train").as_numpy_iterator())
    text = ptb.Vocabulary.from_metadata(meta).decode(ex["tokens"])
    assert text == "aer banknote berlitz calloway centrust cluett fromstein gitano guterman hydro-quebec ipo kia memotec mlx nahb punts rake regatta rubens sim snack-food ssangyong swapo wachter"
