"""Shared base of the TFDS builders: where the raw files come from.

Each builder takes two extra constructor arguments, passed through
`tfds.load(..., builder_kwargs=...)` or `tfds.builder(name, ...)`:

  source_dir      a directory laid out like `../shared/data/` (or holding the
                  dataset's files directly). Searched first.
  allow_download  when True and a file is found nowhere, download it from its
                  canonical URL into the TFDS download directory, verified by
                  sha256. Default False: offline first.

After `source_dir`, the TFDS manual directory
(`download_and_prepare_kwargs={"download_config":
tfds.download.DownloadConfig(manual_dir=DIR)}`) is searched, and, only when
no `source_dir` was given, `$LATENTFLOW_DATA_DIR`.

Subclasses read and validate *all* input in `_split_generators` before any
example is yielded, so bad input fails before TFDS writes a record; TFDS
prepares into a temporary directory that it renames only on success, so no
half-written dataset is ever left for a later run to reuse.
"""

from __future__ import annotations

import inspect
import os
import pathlib

import tensorflow_datasets as tfds
from etils import epath

from tf_latentflow.data import sources

MANUAL_INSTRUCTIONS = (
    "Place the benchmark files in a directory laid out like ../shared/data "
    "(see its README.md and PROVENANCE.md files) and pass it as `source_dir`, "
    "as `DownloadConfig(manual_dir=...)`, or via $LATENTFLOW_DATA_DIR."
)


class LocalSourceBuilder(tfds.core.GeneratorBasedBuilder, skip_registration=True):
    """GeneratorBasedBuilder that reads its raw files from a local data directory."""

    MANUAL_DOWNLOAD_INSTRUCTIONS = MANUAL_INSTRUCTIONS

    @tfds.core.utils.classproperty
    @classmethod
    def code_path(cls) -> epath.Path:
        # TFDS's default resolves this through `importlib_resources`, an optional
        # dependency (etils[epath]) absent from our requirements; the module file
        # is the same answer for a builder defined in an installed package.
        return epath.Path(inspect.getfile(cls))

    def __init__(self, *, source_dir: os.PathLike | str | None = None,
                 allow_download: bool = False, **kwargs):
        self._source_dir = os.fspath(source_dir) if source_dir else None
        self._allow_download = bool(allow_download)
        super().__init__(**kwargs)
        # Keep the extra arguments when TFDS pickles and rebuilds the builder.
        self._original_state.update(source_dir=self._source_dir,
                                    allow_download=self._allow_download)

    def _search_dirs(self, dl_manager) -> tuple[pathlib.Path, ...]:
        try:
            manual = dl_manager.manual_dir  # raises when absent or empty
        except (AssertionError, ValueError):
            manual = None
        return sources.search_dirs(self._source_dir, extra=[manual])

    def _find(self, source: sources.SourceFile, dl_manager) -> pathlib.Path:
        """Locate `source` locally; download it only when allowed and missing."""
        dirs = self._search_dirs(dl_manager)
        try:
            return sources.locate(source, dirs)
        except sources.MissingDataError:
            if not (self._allow_download and source.url):
                raise
        return sources.download(source, pathlib.Path(dl_manager.download_dir) / "latentflow")
