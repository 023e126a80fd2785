"""TrainConfig: reference defaults per dataset and model, flags, JSON round trip."""

import argparse

import pytest

from tf_latentflow.training.config import (MUSIC_DATASETS, TrainConfig, add_arguments,
                                           config_from_args, default_config)


def parse(argv):
    parser = argparse.ArgumentParser()
    add_arguments(parser, MUSIC_DATASETS, "jsb_chorales")
    return config_from_args(parser.parse_args(argv))


def test_jsb_flow_defaults_follow_the_reference_command():
    config = parse(["--dataset", "jsb", "--model", "af-scf"])
    assert (config.dataset, config.batch_size, config.elbo_samples, config.kl_zero_epochs,
            config.kl_ramp_epochs, config.patience, config.learning_rate, config.clip_norm,
            config.optimizer, config.nll_samples) == (
        "jsb_chorales", 5, 1, 20, 15, 2, 1e-3, 0.25, "adam", 50)
    assert config.output_dir == "runs/jsb_chorales/af-scf"
    assert config.reset_optimizer_on_decay is False  # the one known difference (config docstring)
    assert parse(["--reset-optimizer-on-decay"]).reset_optimizer_on_decay is True


def test_baseline_and_text_defaults_and_overrides():
    lstm = default_config("jsb", "lstm", "out")
    assert (lstm.optimizer, lstm.learning_rate, lstm.patience, lstm.baseline_dropout) == (
        "adam", 1e-3, 4, 0.1)
    text_lstm = default_config("ptb", "lstm", "out")
    assert (text_lstm.optimizer, text_lstm.learning_rate) == ("sgd", 20.0)
    text = default_config("ptb", "iaf-scf", "out")
    assert (text.elbo_samples, text.kl_zero_epochs, text.kl_ramp_epochs, text.prior_dropout) == (
        10, 4, 10, 0.0)
    config = parse(["--model", "af-af", "--batch-size", "7", "--scalar-map", "affine",
                    "--flow-hidden-units", "64", "64"])
    assert config.batch_size == 7 and config.prior_name == "af-af-nlsq"
    assert config.flow_hidden_units == (64, 64)


def test_json_round_trip_and_validation():
    config = default_config("nottingham", "iaf-scf", "out", epochs=3)
    assert TrainConfig.from_json(config.to_json()) == config
    with pytest.raises(ValueError, match="unknown model"):
        default_config("jsb", "maf", "out")
    with pytest.raises(ValueError, match="epochs"):
        default_config("jsb", "af-af", "out", epochs=0)
