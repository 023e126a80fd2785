"""`python -m tf_latentflow.data info`: tables on real data, one-line errors on bad input."""

import os
import pathlib
import subprocess
import sys

from tf_latentflow.data import __main__ as cli

REPO = pathlib.Path(__file__).resolve().parents[2]


def test_info_prints_published_sizes(shared_data_dir, capsys, published):
    assert cli.main(["info", "--dataset", "jsb", "--data-dir", str(shared_data_dir)]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[0].startswith("jsb_chorales (source: ")
    rows = {line.split()[0]: line.split()[1:] for line in out[2:5]}
    for split, (n, steps) in published["jsb_chorales"].items():
        assert rows[split][:2] == [str(n), str(steps)]
    assert rows["train"][2:] == ["25", "60.29", "129"]


def test_info_text_shows_vocabulary_and_dropped(shared_data_dir, capsys):
    assert cli.main(["info", "--dataset", "ptb_char", "--data-dir", str(shared_data_dir)]) == 0
    out = capsys.readouterr().out
    assert "vocabulary size: 51" in out
    train = next(line for line in out.splitlines() if line.startswith("train"))
    assert train.split() == ["train", "41740", "4868454", "2", "116.64", "288", "328", "0"]


def test_missing_directory_is_one_line_and_nonzero(tmp_path, capsys):
    assert cli.main(["info", "--dataset", "nottingham", "--data-dir", str(tmp_path / "none")]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1
    assert "nottingham" in err[0] and "nottingham.json" in err[0] and str(tmp_path / "none") in err[0]


def test_unknown_dataset(capsys):
    assert cli.main(["info", "--dataset", "mnist", "--data-dir", "."]) == 1
    assert "unknown dataset 'mnist'" in capsys.readouterr().err


def test_subprocess_bad_file_has_no_traceback(tmp_path, write_music_json):
    write_music_json(tmp_path, splits={"train": [[[60]], [[61], [7]]], "valid": [], "test": []})
    env = {k: v for k, v in os.environ.items() if k != "LATENTFLOW_DATA_DIR"}
    env["TF_CPP_MIN_LOG_LEVEL"] = "2"
    proc = subprocess.run([sys.executable, "-m", "tf_latentflow.data", "info", "--dataset", "jsb_chorales",
                           "--data-dir", str(tmp_path)], capture_output=True, text=True, env=env, cwd=REPO,
                          timeout=120)
    assert proc.returncode == 1 and proc.stdout == ""
    assert "Traceback" not in proc.stderr
    errors = [line for line in proc.stderr.splitlines() if line.startswith("error: ")]
    assert errors == [f"error: jsb_chorales: {tmp_path / 'jsb_chorales' / 'jsb_chorales.json'}: "
                      "split 'train', sequence 1, step 1: note 7 outside 21..108"]
