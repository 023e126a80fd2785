"""Music builders: published splits, piano-roll encoding, and every kind of bad input."""

import json
import os
import pickle
import threading
import time

import numpy as np
import pytest
import tensorflow_datasets as tfds

from tf_latentflow import data as D
from tf_latentflow.data import catalog, music, sources


MUSIC = ("jsb_chorales", "muse_data", "nottingham", "piano_midi")


@pytest.mark.parametrize("name", MUSIC)
def test_published_split_sizes_and_time_steps(prepared, published, name):
    builder = prepared(name)
    for split, (n, steps) in published[name].items():
        assert builder.info.splits[split].num_examples == n
        lengths = D.split_lengths(builder.as_dataset(split=split))
        assert len(lengths) == n and lengths.sum() == steps


def test_prepared_piano_rolls_equal_the_json_notes(prepared, shared_data_dir):
    raw = json.loads((shared_data_dir / "jsb_chorales" / "jsb_chorales.json").read_text())
    ds = prepared("jsb_chorales").as_dataset(split="validation")
    for i, ex in enumerate(ds.as_numpy_iterator()):
        assert ex["index"] == i  # published order kept
        assert ex["piano_roll"].shape == (ex["length"], 88) and ex["piano_roll"].dtype == np.uint8
        assert music.notes_of(ex["piano_roll"]) == raw["valid"][i]


def test_tfds_load_with_manual_dir(tmp_path, write_music_json):
    src = tmp_path / "src"
    write_music_json(src)
    ds = tfds.load("jsb_chorales", data_dir=tmp_path / "tfds", download_and_prepare_kwargs={
        "download_config": tfds.download.DownloadConfig(manual_dir=str(src), try_download_gcs=False)})
    assert {k: len(v) for k, v in ds.items()} == {"train": 2, "validation": 1, "test": 1}
    roll = next(iter(ds["train"]))["piano_roll"].numpy()
    assert roll.shape == (3, 88)
    assert np.flatnonzero(roll[0]).tolist() == [60 - 21, 64 - 21] and not roll[1].any()


def test_piano_roll_columns_are_midi_minus_21():
    roll = music.piano_roll([[21, 108], [], [60]])
    assert roll[0, 0] == 1 and roll[0, 87] == 1 and roll.sum() == 3 and roll[2, 39] == 1
    assert music.notes_of(roll) == [[21, 108], [], [60]]


def test_restricted_unpickler_reads_numpy_int_scalars(tmp_path):
    data = {"train": [[(np.int64(60), np.int64(64)), ()]], "valid": [[(np.int64(21),)]],
            "test": [[(np.int32(108),)]]}
    path = tmp_path / "x.pickle"
    path.write_bytes(pickle.dumps(data, protocol=2))
    loaded = sources.load_plain_pickle(path, "jsb_chorales")
    assert loaded == {"train": [[(60, 64), ()]], "valid": [[(21,)]], "test": [[(108,)]]}
    assert type(loaded["train"][0][0][0]) is int


def test_builder_falls_back_to_the_bl_pickle(tmp_path):
    data = {"train": [[(np.int64(64), np.int64(60)), ()]] * 2, "valid": [[(np.int64(21),)]],
            "test": [[(np.int64(108),)]]}
    path = tmp_path / "src" / "jsb_chorales" / "JSB_Chorales.pickle"
    path.parent.mkdir(parents=True)
    path.write_bytes(pickle.dumps(data, protocol=2))
    builder = D.prepare("jsb_chorales", data_dir=tmp_path / "tfds", source_dir=tmp_path / "src")
    assert builder.info.metadata["source_file"] == "JSB_Chorales.pickle"
    ex = next(builder.as_dataset(split="train").as_numpy_iterator())
    assert music.notes_of(ex["piano_roll"]) == [[60, 64], []]


def test_real_jsb_pickle_equals_json(shared_data_dir):
    pk = shared_data_dir / "jsb_chorales" / "JSB_Chorales.pickle"
    if not pk.exists():
        pytest.skip("JSB_Chorales.pickle not in the data directory")
    from_pickle = music.validate_splits(sources.load_plain_pickle(pk, "jsb_chorales"), pk, "jsb")
    js = shared_data_dir / "jsb_chorales" / "jsb_chorales.json"
    from_json = music.validate_splits(music.read_json(js, "jsb"), js, "jsb")
    assert {k: [[sorted(s) for s in p] for p in v] for k, v in from_pickle.items()} == from_json


class _Boom:
    def __reduce__(self):
        return (os.system, ("touch PWNED_BY_PICKLE",))


def test_malicious_pickle_is_refused_without_running(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    path = tmp_path / "jsb_chorales" / "JSB_Chorales.pickle"
    path.parent.mkdir()
    path.write_bytes(pickle.dumps({"train": [_Boom()]}, protocol=2))
    with pytest.raises(D.DataError, match=r"JSB_Chorales\.pickle.*refused global (posix|os|nt)\.system"):
        music.read_music(music.JSB_CHORALES, [tmp_path])  # JSON absent -> pickle fallback
    assert not (tmp_path / "PWNED_BY_PICKLE").exists()


def test_pickle_with_a_float_or_class_is_refused(tmp_path):
    path = tmp_path / "x.pickle"
    path.write_bytes(pickle.dumps({"train": [[(np.float64(1.5),)]]}, protocol=2))
    with pytest.raises(D.DataError, match="x.pickle"):
        sources.load_plain_pickle(path, "jsb_chorales")
    path.write_bytes(pickle.dumps({"train": {1, 2}}, protocol=2))  # a set needs a global
    with pytest.raises(D.DataError, match="refused global"):
        sources.load_plain_pickle(path, "jsb_chorales")


def test_truncated_pickle(tmp_path):
    path = tmp_path / "x.pickle"
    path.write_bytes(pickle.dumps({"train": [[(1, 2)]] * 50}, protocol=2)[:-20])
    with pytest.raises(D.DataError, match=r"x\.pickle: truncated or corrupt pickle"):
        sources.load_plain_pickle(path, "jsb_chorales")


def test_missing_directory_names_dataset_file_and_place(tmp_path):
    where = tmp_path / "nowhere"
    with pytest.raises(D.MissingDataError) as err:
        music.read_music(music.NOTTINGHAM, sources.search_dirs(where, environ={}))
    msg = str(err.value)
    assert "\n" not in msg
    assert msg.startswith("nottingham:") and "nottingham.json" in msg and str(where) in msg
    assert "does not exist" in msg


def test_no_directory_at_all(monkeypatch):
    monkeypatch.delenv(sources.ENV_VAR, raising=False)
    with pytest.raises(D.MissingDataError, match="muse_data: expected file 'musedata.json'.*--data-dir"):
        music.read_music(music.MUSE_DATA, sources.search_dirs(None))


def test_missing_file_in_existing_directory(tmp_path):
    (tmp_path / "piano_midi").mkdir()
    with pytest.raises(D.MissingDataError, match=r"piano_midi: expected file 'piano_midi\.json'"):
        music.read_music(music.PIANO_MIDI, [tmp_path])


@pytest.mark.parametrize("splits, match", [
    ({"train": [[[60], [109]]], "valid": [], "test": []}, r"split 'train', sequence 0, step 1: note 109 outside 21\.\.108"),
    ({"train": [[[60]]], "valid": [[[60]], [[20]]], "test": []}, r"split 'valid', sequence 1, step 0: note 20 outside"),
    ({"train": [[[60]], []], "valid": [], "test": []}, r"split 'train', sequence 1: empty sequence"),
    ({"train": [[[60.0]]], "valid": [], "test": []}, r"note 60\.0 is not an integer"),
    ({"train": [[[60, 60]]], "valid": [], "test": []}, r"note repeated"),
    ({"train": [], "valid": []}, r"split 'test' missing"),
])
def test_bad_records_are_named(tmp_path, write_music_json, splits, match):
    path = write_music_json(tmp_path, splits=splits)
    with pytest.raises(D.DataError, match=match) as err:
        music.read_music(music.JSB_CHORALES, [tmp_path])
    assert str(path) in str(err.value)


def test_truncated_json(tmp_path, write_music_json):
    good = json.dumps({"train": [[[60]]] * 10, "valid": [], "test": []}).encode()
    write_music_json(tmp_path, raw=good[: len(good) // 2])
    with pytest.raises(D.DataError, match=r"jsb_chorales\.json is truncated or not valid JSON.*line 1"):
        music.read_music(music.JSB_CHORALES, [tmp_path])


def test_non_utf8_json(tmp_path, write_music_json):
    write_music_json(tmp_path, raw=b'{"train": [],\n "valid": [], "test": "\xff"}')
    with pytest.raises(D.DataError, match=r"is not UTF-8: line 2"):
        music.read_music(music.JSB_CHORALES, [tmp_path])


def _prepare(src, out):
    return D.prepare("jsb_chorales", data_dir=out, source_dir=src)


def test_failed_prepare_leaves_nothing_and_fails_again(tmp_path, write_music_json):
    src, out = tmp_path / "src", tmp_path / "tfds"
    good = {"train": [[[60]]] * 3, "valid": [[[61]]], "test": [[[62]]]}
    bad = {"train": [[[60]]] * 3, "valid": [[[61]]], "test": [[[62]], [[200]]]}  # last record bad
    write_music_json(src, splits=bad)
    for _ in range(2):  # the second run must not find a half-written dataset
        with pytest.raises(D.DataError, match=r"split 'test', sequence 1, step 0: note 200"):
            _prepare(src, out)
        version_dirs = [p for p in (out / "jsb_chorales").glob("*") if p.is_dir()] if (out / "jsb_chorales").exists() else []
        assert not [p for p in version_dirs if (p / "dataset_info.json").exists()]
    write_music_json(src, splits=good)  # once fixed, it prepares from the new file
    builder = _prepare(src, out)
    assert builder.info.splits["train"].num_examples == 3 and builder.info.splits["test"].num_examples == 1


def test_concurrent_prepares_wait_for_each_other(tmp_path, write_music_json):
    # Two trainers started at once on a fresh machine both prepared JSB and the second
    # crashed renaming TFDS's incomplete folder; prepare now holds a lock.
    src, out = tmp_path / "src", tmp_path / "tfds"
    write_music_json(src, splits={"train": [[[60]]] * 3, "valid": [[[61]]], "test": [[[62]]]})
    builders, errors = [], []

    def run():
        try:
            builders.append(_prepare(src, out))
        except Exception as error:  # noqa: BLE001 - collected and asserted below
            errors.append(error)

    threads = [threading.Thread(target=run) for _ in range(2)]
    with catalog.preparation_lock("jsb", out):
        for thread in threads:
            thread.start()
        time.sleep(1.0)
        assert not builders and not errors  # both wait while someone else prepares
    for thread in threads:
        thread.join(timeout=300)
    assert not errors, errors
    assert [b.info.splits["train"].num_examples for b in builders] == [3, 3]
    assert not list((out / "jsb_chorales").glob("incomplete*"))
