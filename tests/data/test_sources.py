"""Locating raw files and the (mocked) sha256-checked download path."""

import hashlib
import io

import pytest

from tf_latentflow import data as D
from tf_latentflow.data import music, sources


def _source(payload):
    return sources.SourceFile("jsb_chorales", "jsb_chorales", "f.bin", "http://example.invalid/f.bin",
                              hashlib.sha256(payload).hexdigest())


def test_search_order_and_env(tmp_path):
    a, b, env = tmp_path / "a", tmp_path / "b", tmp_path / "env"
    environ = {sources.ENV_VAR: str(env)}
    assert sources.search_dirs(a, extra=[None, b], environ=environ) == (a, b)  # flag beats env
    dirs = sources.search_dirs(None, extra=[b], environ=environ)
    assert dirs == (b, env)
    src = sources.SourceFile("x", "sub", "f.txt")
    (env / "sub").mkdir(parents=True)
    (env / "sub" / "f.txt").write_text("1")
    (b / "f.txt").parent.mkdir(parents=True)
    (b / "f.txt").write_text("2")  # flat layout also accepted, and searched before env
    assert sources.locate(src, dirs) == b / "f.txt"


def test_download_checks_sha256(tmp_path):
    payload = b"music" * 1000
    src = _source(payload)
    calls = []

    def opener(url):
        calls.append(url)
        return io.BytesIO(payload)

    path = sources.download(src, tmp_path, opener=opener)
    assert path.read_bytes() == payload and calls == [src.url]
    assert sources.download(src, tmp_path, opener=opener) == path and len(calls) == 1  # reused


def test_tampered_download_leaves_nothing(tmp_path):
    src = _source(b"expected")
    with pytest.raises(D.DataError, match="sha256 .* expected .*refusing"):
        sources.download(src, tmp_path, opener=lambda url: io.BytesIO(b"tampered"))
    assert not any(p.is_file() for p in tmp_path.rglob("*"))


def test_network_failure_is_a_data_error(tmp_path):
    def opener(url):
        raise OSError("no route to host")
    with pytest.raises(D.DataError, match="could not download"):
        sources.download(_source(b"x"), tmp_path, opener=opener)


def test_datasets_without_url_cannot_download(tmp_path):
    with pytest.raises(D.DataError, match="no canonical download URL"):
        sources.download(music.NOTTINGHAM.json_source, tmp_path)
