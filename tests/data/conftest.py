"""Fixtures of the data tests: published split sizes, small bad-input files (`prepared`
is in tests/conftest.py)."""

import json

import pytest


# From ../shared/data/*/PROVENANCE.md: (sequences, total time steps) per split.
PUBLISHED = {
    "jsb_chorales": {"train": (229, 13807), "validation": (76, 4602), "test": (77, 4725)},
    "nottingham": {"train": (694, 176561), "validation": (173, 45513), "test": (170, 44463)},
    "piano_midi": {"train": (87, 75911), "validation": (12, 8540), "test": (25, 19036)},
    "muse_data": {"train": (524, 245202), "validation": (135, 82755), "test": (124, 64339)},
}


@pytest.fixture(scope="session")
def published():
    """Published (sequences, total time steps) per split of each music dataset."""
    return PUBLISHED


@pytest.fixture(scope="session")
def write_music_json():
    """write_music_json(root, splits=..., raw=...) -> path of a small JSB-like JSON under root."""
    return _write_music_json


def _write_music_json(root, subdir="jsb_chorales", filename="jsb_chorales.json",
                      splits=None, raw=None):
    """Write a small music JSON in a ../shared/data-like layout under `root`; return its path."""
    if splits is None:
        splits = {"train": [[[60, 64], [], [67]], [[21, 108]]],
                  "valid": [[[55]]],
                  "test": [[[40, 41, 42], [43]]]}
    path = root / subdir / filename
    path.parent.mkdir(parents=True, exist_ok=True)
    if raw is not None:
        path.write_bytes(raw)
    else:
        path.write_text(json.dumps(splits))
    return path
