"""Shared pytest configuration: quiet TensorFlow logs, locate and prepare the benchmark data."""

import os
import pathlib

import pytest

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

REPO_ROOT = pathlib.Path(__file__).resolve().parents[1]


@pytest.fixture(scope="session")
def shared_data_dir():
    """The benchmark data directory, or skip with a reason when it is absent.

    Looks at LATENTFLOW_DATA_DIR first, then at ../shared/data beside the checkout.
    """
    candidates = [os.environ.get("LATENTFLOW_DATA_DIR"), REPO_ROOT.parent / "shared" / "data"]
    for cand in candidates:
        if cand and pathlib.Path(cand).is_dir():
            return pathlib.Path(cand)
    pytest.skip("benchmark data not found: set LATENTFLOW_DATA_DIR or place it in ../shared/data")


@pytest.fixture(scope="session")
def prepared(shared_data_dir, tmp_path_factory):
    """prepared(name) -> the TFDS builder of `name`, prepared at most once per session."""
    from tf_latentflow import data as D

    root = tmp_path_factory.mktemp("tfds")
    cache = {}

    def get(name):
        if name not in cache:
            cache[name] = D.prepare(name, data_dir=root, source_dir=shared_data_dir)
        return cache[name]

    return get
