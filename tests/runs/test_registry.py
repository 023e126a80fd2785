"""The registry of datasets and models: one list each, consistent with the rest of the package."""

import pytest

from tf_latentflow.data import DataError
from tf_latentflow.priors import parse_prior_name
from tf_latentflow.runs import registry
from tf_latentflow.training import config as config_lib


def test_the_trainers_choices_are_the_registry():
    assert config_lib.MODEL_CHOICES == registry.MODEL_NAMES
    assert set(config_lib.MUSIC_DATASETS) | set(config_lib.TEXT_DATASETS) == set(registry.DATASETS)
    assert config_lib.TEXT_DATASETS == ("ptb_char",)
    assert config_lib.MUSIC_DATASETS == ("jsb_chorales", "nottingham", "piano_midi", "muse_data")


@pytest.mark.parametrize("alias, name", [("jsb", "jsb_chorales"), ("JSB", "jsb_chorales"),
                                         ("piano", "piano_midi"), ("musedata", "muse_data"),
                                         ("ptb", "ptb_char"), ("piano-midi", "piano_midi")])
def test_aliases_resolve(alias, name):
    assert registry.dataset(alias).name == name


def test_unknown_names_are_refused_with_the_choices():
    with pytest.raises(DataError, match="choose one of jsb_chorales"):
        registry.dataset("mnist")
    with pytest.raises(ValueError, match=r"unknown model 'gru'; choose from \('af-af'"):
        registry.model_entry("gru")


def test_dataset_facts():
    for name in config_lib.MUSIC_DATASETS:
        entry = registry.dataset(name)
        assert (entry.kind, entry.num_notes, entry.unit) == ("music", 88, "nats per time step")
        assert entry.builder_class().name == name  # the TFDS builder has the same name
    ptb = registry.dataset("ptb")
    assert (ptb.is_text, ptb.num_notes, ptb.unit) == (True, None, "bits per character")
    assert ptb.builder_class().name == "ptb_char"


def test_every_latent_model_names_a_prior_the_prior_registry_parses():
    for name, entry in registry.MODELS.items():
        if not entry.is_latent:
            assert entry.prior is None and entry.prior_name() is None and not entry.flows
            continue
        spec = parse_prior_name(entry.prior_name())
        assert spec.hidden != "none" if entry.flows else spec.hidden == "none"
        assert (spec.time == "af" or spec.time == "iaf") == entry.time_lstm
        if entry.flows:  # the "- NLSq" ablation of every flow
            assert parse_prior_name(entry.prior_name("affine")).scalar_map == "affine"


def test_reading_the_registry_does_not_load_tensorflow_datasets():
    import subprocess
    import sys

    code = ("import sys; import tf_latentflow.runs.registry as r; r.dataset('jsb'); "
            "print('tensorflow_datasets' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.split()[-1] == "False"
