"""Finding, downloading and safely reading the raw benchmark files.

Offline first: a dataset's files are looked for in an explicit source directory
(the `--data-dir` flag of every CLI) and the TFDS manual directory; without an
explicit directory, in the TFDS manual directory and then in the directory
named by the environment variable `LATENTFLOW_DATA_DIR`. Each
directory may be laid out like `../shared/data/` (one sub-folder per dataset,
e.g. `jsb_chorales/jsb_chorales.json`) or hold the file directly.

With internet, a file that has a canonical URL can instead be downloaded; the
download is accepted only if its sha256 equals the one recorded in the data's
PROVENANCE.md.

Pickles are never loaded with `pickle.load`: `load_plain_pickle` admits only
plain containers, strings and integers (numpy integer scalars are rebuilt as
Python ints without importing numpy), and refuses every other global, so a
data file cannot run code.
"""

from __future__ import annotations

import dataclasses
import hashlib
import io
import os
import pathlib
import pickle
import tempfile
import urllib.request
from typing import Callable, Iterable, Sequence

from tf_latentflow.data.errors import DataError, MissingDataError

ENV_VAR = "LATENTFLOW_DATA_DIR"


@dataclasses.dataclass(frozen=True)
class SourceFile:
    """One raw input file of a dataset.

    Attributes:
      dataset: builder name, used in error messages (e.g. "jsb_chorales").
      subdir: the dataset's folder in a `../shared/data`-like layout.
      filename: the file's name inside that folder.
      url: canonical download URL, or None when the file cannot be downloaded.
      sha256: hex digest the downloaded bytes must have (PROVENANCE.md).
    """

    dataset: str
    subdir: str
    filename: str
    url: str | None = None
    sha256: str | None = None


def search_dirs(source_dir: os.PathLike | str | None = None,
                extra: Iterable[os.PathLike | str | None] = (),
                environ: dict | None = None) -> tuple[pathlib.Path, ...]:
    """The directories to search, in order: `source_dir` (if given), `extra`, else `$LATENTFLOW_DATA_DIR`.

    An explicit `source_dir` (the `--data-dir` flag) overrides the environment
    variable rather than falling back to it.
    """
    env = os.environ if environ is None else environ
    fallback = None if source_dir else env.get(ENV_VAR)
    out = []
    for d in (source_dir, *extra, fallback):
        if d:
            p = pathlib.Path(d).expanduser()
            if p not in out:
                out.append(p)
    return tuple(out)


def candidates(source: SourceFile, dirs: Sequence[pathlib.Path]) -> tuple[pathlib.Path, ...]:
    """Every path at which `source` may be found under `dirs`, in search order."""
    out = []
    for d in dirs:
        out += [d / source.subdir / source.filename, d / source.filename]
    return tuple(out)


def locate(source: SourceFile, dirs: Sequence[pathlib.Path]) -> pathlib.Path:
    """The first existing file for `source` under `dirs`, else a one-line MissingDataError."""
    paths = candidates(source, dirs)
    for p in paths:
        if p.is_file():
            return p
    raise MissingDataError(missing_message(source, dirs))


def missing_message(source: SourceFile, dirs: Sequence[pathlib.Path]) -> str:
    """One line: the dataset, the file expected, and where it was looked for."""
    if not dirs:
        where = (f"nowhere: no data directory given (pass --data-dir DIR or set {ENV_VAR})")
    else:
        looked = []
        for d in dirs:
            state = "" if d.is_dir() else " (directory does not exist)"
            looked.append(f"{d / source.subdir} and {d}{state}")
        where = "; ".join(looked)
    return (f"{source.dataset}: expected file {source.filename!r}, looked for it in {where}")


def sha256_of(path: os.PathLike | str) -> str:
    """Hex sha256 digest of a file's bytes."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def download(source: SourceFile, dest_dir: os.PathLike | str,
             opener: Callable[[str], io.RawIOBase] = urllib.request.urlopen) -> pathlib.Path:
    """Download `source.url` into `dest_dir/source.subdir/source.filename`, checking sha256.

    The bytes are written to a temporary file beside the destination and renamed
    into place only when their digest matches, so a failed or tampered download
    never leaves a file that a later run would trust. An existing destination
    with the right digest is reused.
    """
    if not source.url or not source.sha256:
        raise DataError(f"{source.dataset}: {source.filename!r} has no canonical download URL; "
                        f"place it in a data directory (--data-dir or {ENV_VAR})")
    dest = pathlib.Path(dest_dir) / source.subdir / source.filename
    if dest.is_file() and sha256_of(dest) == source.sha256:
        return dest
    dest.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=dest.parent, prefix=f".{source.filename}.", suffix=".part")
    try:
        h = hashlib.sha256()
        with os.fdopen(fd, "wb") as out, opener(source.url) as resp:
            for chunk in iter(lambda: resp.read(1 << 20), b""):
                h.update(chunk)
                out.write(chunk)
        if h.hexdigest() != source.sha256:
            raise DataError(f"{source.dataset}: download of {source.url} has sha256 {h.hexdigest()}, "
                            f"expected {source.sha256}; refusing it")
        os.replace(tmp, dest)
    except DataError:
        raise
    except OSError as e:  # network or disk failure
        raise DataError(f"{source.dataset}: could not download {source.url}: {e}") from None
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)
    return dest


def read_bytes_or_fail(path: pathlib.Path, dataset: str) -> bytes:
    """The file's bytes, or a DataError naming it."""
    try:
        return path.read_bytes()
    except OSError as e:
        raise DataError(f"{dataset}: cannot read {path}: {e.strerror or e}") from None


def decode_utf8(raw: bytes, path: pathlib.Path, dataset: str) -> str:
    """Decode UTF-8, or raise a DataError giving the line and byte of the first bad byte."""
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError as e:
        line = raw.count(b"\n", 0, e.start) + 1
        raise DataError(f"{dataset}: {path} is not UTF-8: line {line}, byte offset {e.start} "
                        f"(byte 0x{raw[e.start]:02x})") from None


# ---------------------------------------------------------------- safe pickles

class _Refused(pickle.UnpicklingError):
    """A pickle asked for something other than plain data."""


_NUMPY_SCALAR = {("numpy.core.multiarray", "scalar"), ("numpy._core.multiarray", "scalar")}
_NUMPY_DTYPE = {("numpy", "dtype")}
_INT_CODES = {"i1": (1, True), "i2": (2, True), "i4": (4, True), "i8": (8, True),
              "u1": (1, False), "u2": (2, False), "u4": (4, False), "u8": (8, False)}


class _IntDType:
    """Stand-in for a pickled `numpy.dtype` of an integer type; nothing else is accepted."""

    def __init__(self, code, align=False, copy=True):
        del align, copy
        if code not in _INT_CODES:
            raise _Refused(f"refused numpy dtype {code!r} (only integer dtypes)")
        self.itemsize, self.signed = _INT_CODES[code]
        self.byteorder = "little"

    def __setstate__(self, state):
        # numpy pickles dtypes with state (version, byteorder, ...); only the byte order matters.
        if not isinstance(state, tuple) or len(state) < 2 or state[1] not in ("<", ">", "|", "="):
            raise _Refused(f"refused numpy dtype state {state!r}")
        self.byteorder = "big" if state[1] == ">" else "little"


def _int_scalar(dtype, data=None):
    """Stand-in for `numpy.core.multiarray.scalar`: rebuild an integer as a Python int."""
    if not isinstance(dtype, _IntDType):
        raise _Refused("refused numpy scalar of a non-integer dtype")
    if isinstance(data, str):  # Python 2 str read with encoding="latin1"
        data = data.encode("latin1")
    if not isinstance(data, bytes) or len(data) != dtype.itemsize:
        raise _Refused("refused malformed numpy integer scalar")
    return int.from_bytes(data, dtype.byteorder, signed=dtype.signed)


def _latin1_bytes(text, encoding="latin1"):
    """Stand-in for `_codecs.encode`, which Python 3 protocol-2 pickles use to spell bytes."""
    if not isinstance(text, str) or encoding not in ("latin1", "latin-1"):
        raise _Refused("refused _codecs.encode call other than str -> latin1 bytes")
    return text.encode("latin1")


class _PlainDataUnpickler(pickle.Unpickler):
    """Unpickler that resolves no global except stand-ins for integer scalars and bytes."""

    def find_class(self, module, name):
        if (module, name) == ("_codecs", "encode"):
            return _latin1_bytes
        if (module, name) in _NUMPY_SCALAR:
            return _int_scalar
        if (module, name) in _NUMPY_DTYPE:
            return _IntDType
        raise _Refused(f"refused global {module}.{name}: only plain data is allowed")

    def persistent_load(self, pid):
        raise _Refused("refused persistent id: only plain data is allowed")


def load_plain_pickle(path: pathlib.Path, dataset: str):
    """Load a pickle holding only dicts, lists, tuples, strings and integers.

    Integer numpy scalars (as in the BL2012 music pickles) become Python ints.
    Any other global (a class, a function such as `os.system`) is refused before
    it is called, with a DataError naming the file and the byte offset.
    """
    raw = read_bytes_or_fail(path, dataset)
    buf = io.BytesIO(raw)
    try:
        return _PlainDataUnpickler(buf, encoding="latin1").load()
    except _Refused as e:
        raise DataError(f"{dataset}: {path}: unsafe pickle, near byte {buf.tell()}: {e}") from None
    except (pickle.UnpicklingError, EOFError, ValueError, TypeError, KeyError, IndexError, AttributeError,
            OverflowError, MemoryError, RecursionError) as e:
        raise DataError(f"{dataset}: {path}: truncated or corrupt pickle near byte {buf.tell()}: "
                        f"{type(e).__name__}: {e}") from None
