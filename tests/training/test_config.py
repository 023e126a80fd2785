"""TrainConfig: reference defaults per dataset and model, flags, JSON round trip."""

import argparse
import dataclasses
import json
import pathlib

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
    # not the reference's SGD at lr 20, which stays at the unigram level on PTB here
    assert (text_lstm.optimizer, text_lstm.learning_rate) == ("adam", 1e-3)
    assert default_config("ptb", "lstm", "out", optimizer="sgd", learning_rate=20.0).optimizer == "sgd"
    text = default_config("ptb", "iaf-scf", "out")
    assert (text.elbo_samples, text.kl_zero_epochs, text.kl_ramp_epochs, text.prior_dropout) == (
        10, 4, 10, 0.0)
    config = parse(["--model", "af-af", "--batch-size", "7", "--scalar-map", "affine",
                    "--flow-hidden-units", "64", "64"])
    assert config.batch_size == 7 and config.prior_name == "af-af-affine"
    assert config.flow_hidden_units == (64, 64)
    # bucket padding: on for text (both kinds of model), off for music, a flag either way
    assert text.pad_to_bucket and text_lstm.pad_to_bucket and not lstm.pad_to_bucket
    assert (text.num_buckets, text_lstm.num_buckets, lstm.num_buckets) == (8, 8, 4)
    assert not parse(["--model", "af-af"]).pad_to_bucket
    assert parse(["--model", "af-af", "--pad-to-bucket", "--num-buckets", "8"]).pad_to_bucket
    assert parse(["--model", "af-af", "--num-buckets", "8"]).num_buckets == 8


def test_json_round_trip_and_validation():
    config = default_config("nottingham", "iaf-scf", "out", epochs=3)
    assert TrainConfig.from_json(config.to_json()) == config
    with pytest.raises(ValueError, match="unknown model"):
        default_config("jsb", "maf", "out")
    with pytest.raises(ValueError, match="epochs"):
        default_config("jsb", "af-af", "out", epochs=0)


def test_reference_schedule_and_adam_settings_parse_and_validate():
    config = parse(["--model", "af-scf", "--kl-start-weight", "1e-5", "--kl-schedule", "reference",
                    "--adam-epsilon", "1e-8"])
    assert (config.kl_start_weight, config.kl_schedule, config.adam_epsilon) == (
        1e-5, "reference", 1e-8)
    assert config.kl_schedule_spec.at(0, 0, 10) == 1e-5
    assert config.kl_schedule_spec.done(36) and not config.kl_schedule_spec.done(35)
    with pytest.raises(ValueError, match="kl_schedule"):
        default_config("jsb", "af-af", "out", kl_schedule="cosine")
    with pytest.raises(ValueError, match="kl_start_weight"):
        default_config("jsb", "af-af", "out", kl_start_weight=-1.0)
    with pytest.raises(ValueError, match="adam_epsilon"):
        default_config("jsb", "af-af", "out", adam_epsilon=0.0)


def test_a_config_json_without_a_later_setting_reads_as_the_code_of_its_time():
    """A run saved before kl_start_weight existed trained with weight 0 and the early ramp."""
    import json

    from tf_latentflow.training.config import LEGACY_VALUES, saved_value

    config = default_config("jsb", "af-scf", "out", kl_start_weight=1e-5, kl_schedule="reference",
                            adam_epsilon=1e-8)
    old = json.loads(config.to_json())
    for name in LEGACY_VALUES:
        del old[name]
    restored = TrainConfig.from_json(json.dumps(old))
    assert (restored.kl_start_weight, restored.kl_schedule, restored.adam_epsilon) == (
        0.0, "early", 1e-7)
    assert saved_value(old, "kl_schedule") == "early"
    assert saved_value(old, "patience") == config.patience
    assert saved_value({}, "reset_optimizer_on_decay") is False  # no legacy value: the default


def test_conditioner_options_parse_validate_and_reach_the_prior():
    from tf_latentflow.runs.build import prior_options

    config = parse(["--model", "af-af", "--nlsq-damping", "--flow-context", "first",
                    "--flow-init", "reference"])
    assert prior_options(config.model_settings) == dict(lstm_dropout=0.2, nlsq_damping=True,
                                         flow_context_layers="first", flow_init="reference")
    # defaults add nothing, so an older run's model_config reads the same
    assert prior_options(parse(["--model", "af-only"]).model_settings) == {}
    with pytest.raises(ValueError, match="nlsq_damping applies to NLSq flows only"):
        default_config("jsb", "af-af", "out", nlsq_damping=True, scalar_map="affine")
    with pytest.raises(ValueError, match="nlsq_damping"):
        default_config("jsb", "lstm", "out", nlsq_damping=True)
    with pytest.raises(ValueError, match="flow priors only"):
        default_config("jsb", "lstm", "out", flow_context="first")
    with pytest.raises(ValueError, match="flow_context"):
        default_config("jsb", "af-af", "out", flow_context="last")


def test_regularisation_flags_parse_and_reach_the_model_settings():
    config = parse(["--model", "af-scf", "--inference-dropout", "0.2", "--emission-dropout", "0.3",
                    "--weight-decay", "1e-4"])
    assert (config.model_settings.inference_dropout, config.model_settings.emission_dropout,
            config.weight_decay) == (0.2, 0.3, 1e-4)
    # JSB flows default to dropout 0.2 in both BiLSTMs (measured, results/README.md); other datasets 0
    plain = parse(["--model", "af-scf"])
    assert (plain.inference_dropout, plain.emission_dropout, plain.weight_decay) == (0.2, 0.2, 0.0)
    assert parse(["--model", "af-scf", "--inference-dropout", "0", "--emission-dropout", "0"]
                 ).model_settings.inference_dropout == 0.0
    for dataset in ("nottingham", "piano", "muse", "ptb"):
        other = default_config(dataset, "af-scf", "out")
        assert (other.inference_dropout, other.emission_dropout) == (0.0, 0.0)
    assert default_config("jsb", "lstm", "out").inference_dropout == 0.0
    assert TrainConfig.from_json(config.to_json()) == config


@pytest.mark.parametrize("overrides, message", [
    (dict(weight_decay=-1e-4), "weight_decay must be >= 0"),
    (dict(inference_dropout=-0.1), "inference_dropout must be in"),
    (dict(lr_decay=1.0), "lr_decay must be > 1"),
    (dict(patience=0), "patience must be >= 1"),
    (dict(latent_size=128), "latent_size 128 is larger than the MADE width 100"),
    (dict(learning_rate=0.0), "learning_rate must be > 0"),
    (dict(prior_dropout=1.0), "prior_dropout must be in"),
    (dict(max_steps_per_epoch=0), "max_steps_per_epoch must be >= 1"),
    (dict(train_subset=0), "train_subset must be >= 1"),
    (dict(min_learning_rate=-1e-6), "min_learning_rate must be >= 0"),
])
def test_settings_that_cannot_work_are_refused(overrides, message):
    with pytest.raises(ValueError, match=message):
        default_config("jsb", "af-af", "out", **overrides)


def test_wide_latents_are_fine_where_no_made_is_used():
    assert default_config("jsb", "af-scf", "out", latent_size=128).latent_size == 128


def test_gradient_accumulation_setting_and_the_long_piece_defaults():
    """Piano-midi and MuseData flows: the reference's batch 1, validation batch 1 and 4 NLL
    samples; MuseData accumulates the reference's 8 steps, Piano-midi 2 (its warm-up
    screens); the other datasets and the baseline do not accumulate; PTB IAF/SCF has 3
    within-step flow layers and no dropout."""
    for dataset, accumulated in (("piano", 2), ("muse", 8)):
        for model in ("af-af", "af-scf", "iaf-scf"):
            config = default_config(dataset, model, "out")
            assert (config.batch_size, config.grad_accum, config.eval_batch_size,
                    config.nll_samples) == (1, accumulated, 1, 4)
    assert default_config("piano", "lstm", "out").grad_accum == 1
    assert default_config("jsb", "af-scf", "out").grad_accum == 1
    assert default_config("nottingham", "iaf-scf", "out").grad_accum == 1
    assert default_config("piano", "af-scf", "out", grad_accum=8).grad_accum == 8
    ptb = default_config("ptb", "iaf-scf", "out")
    assert ptb.num_flow_layers == 3 and ptb.prior_dropout == 0.0
    assert default_config("ptb", "af-scf", "out").num_flow_layers == 5
    with pytest.raises(ValueError, match="grad_accum must be >= 1"):
        default_config("jsb", "af-af", "out", grad_accum=0)
    parser = argparse.ArgumentParser()
    add_arguments(parser, MUSIC_DATASETS, "jsb_chorales")
    assert config_from_args(parser.parse_args(["--grad-accum", "3"])).grad_accum == 3


# -- the trainers' command line ------------------------------------------------------------

def print_config(capsys, trainer, argv):
    from tf_latentflow.training.config import TEXT_DATASETS
    from trainers.cli import main

    datasets, default = (MUSIC_DATASETS, "jsb_chorales") if trainer == "music" else (TEXT_DATASETS, "ptb_char")
    code = main(argv + ["--print-config"], prog=f"trainers.{trainer}", datasets=datasets,
                default_dataset=default, description="test")
    assert code == 0
    return json.loads(capsys.readouterr().out)


def test_print_config_shows_the_per_dataset_defaults_and_the_given_flags(capsys, tmp_path):
    # never reads the data nor creates the run directory
    untouched = ["--data-dir", str(tmp_path / "no-data"), "--output-dir", str(tmp_path / "run")]
    piano = print_config(capsys, "music", ["--dataset", "piano", "--model", "af-scf"] + untouched)
    assert (piano["dataset"], piano["batch_size"], piano["grad_accum"], piano["eval_batch_size"],
            piano["nll_samples"]) == ("piano_midi", 1, 2, 1, 4)
    jsb = print_config(capsys, "music", ["--dataset", "jsb"] + untouched)
    assert (jsb["model"], jsb["inference_dropout"], jsb["emission_dropout"], jsb["batch_size"]) == (
        "af-af", 0.2, 0.2, 5)
    flagged = print_config(capsys, "music", ["--dataset", "piano", "--grad-accum", "2",
                                             "--inference-dropout", "0.1"] + untouched)
    assert (flagged["grad_accum"], flagged["batch_size"], flagged["inference_dropout"]) == (2, 1, 0.1)
    ptb = print_config(capsys, "text", ["--model", "iaf-scf"] + untouched)
    assert (ptb["dataset"], ptb["elbo_samples"], ptb["num_flow_layers"], ptb["prior_dropout"]) == (
        "ptb_char", 10, 3, 0.0)
    assert ptb["output_dir"] == str(tmp_path / "run") and not (tmp_path / "run").exists()
    assert not (tmp_path / "no-data").exists()
    # what it prints is the config a run would save
    assert TrainConfig.from_json(json.dumps(ptb)) == default_config(
        "ptb", "iaf-scf", str(tmp_path / "run"), data_dir=str(tmp_path / "no-data"))


def test_print_config_refuses_settings_that_cannot_work(capsys):
    from trainers.cli import main

    code = main(["--patience", "0", "--print-config"], prog="trainers.music", datasets=MUSIC_DATASETS,
                default_dataset="jsb_chorales", description="test")
    assert code == 2 and "patience must be >= 1" in capsys.readouterr().err


@pytest.mark.parametrize("trainer", ["music", "text"])
def test_every_flag_has_help_and_sits_in_a_named_group(trainer):
    from tf_latentflow.training.config import FLAG_GROUPS, TEXT_DATASETS
    from trainers.cli import build_parser

    datasets, default = (MUSIC_DATASETS, "jsb_chorales") if trainer == "music" else (TEXT_DATASETS, "ptb_char")
    parser = build_parser(prog=trainer, datasets=datasets, default_dataset=default, description="test")
    titles = {title for title, _ in FLAG_GROUPS.values()}
    grouped = {}
    for group in parser._action_groups:
        for action in group._group_actions:
            grouped[action.dest] = group.title
    flags = [a for a in parser._actions if a.option_strings and a.dest != "help"]
    assert len(flags) > 50
    for action in flags:
        assert action.help and len(action.help) > 10, action.option_strings
        assert grouped.get(action.dest) in titles, (action.option_strings, grouped.get(action.dest))
    # every setting that has a flag is documented with its default, or where it is found
    for action in flags:
        if action.dest in {f.name for f in dataclasses.fields(TrainConfig)}:
            assert "default" in action.help, action.option_strings
    text = parser.format_help()
    assert "reference compatibility:" in text and "--print-config" in text
    # per-dataset defaults are pointed at, fixed ones stated
    help_of = {a.dest: a.help for a in flags}
    if trainer == "music":
        assert "per dataset and model, see --print-config" in help_of["grad_accum"]
    assert help_of["clip_norm"].endswith("(default: 0.25)")


def test_every_saved_results_config_still_loads_with_its_values():
    """config.json's keys and meaning stay: every committed results file's config reads back
    into a TrainConfig that writes the same values."""
    root = pathlib.Path(__file__).resolve().parents[2] / "results"
    records = [json.loads(p.read_text()) for p in sorted(root.rglob("*.json"))]
    configs = [r["config"] for r in records if isinstance(r, dict) and "config" in r]
    assert len(configs) >= 40
    for saved in configs:
        config = TrainConfig.from_json(json.dumps({"output_dir": "", **saved}))
        written = json.loads(config.to_json())
        assert {k: written[k] for k in saved if k in written} == {k: v for k, v in saved.items() if k in written}
        assert set(saved) <= set(written), set(saved) - set(written)
