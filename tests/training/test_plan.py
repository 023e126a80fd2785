"""The declared plan of `trainers.reproduce`: what table 3 and table 1 hold, selections,
plan files, and that every planned run is a valid trainer configuration."""

import json

import pytest

from tf_latentflow.training import plan
from tf_latentflow.training.config import default_config
from tf_latentflow.training.reproduce import trainer_command


def test_table3_has_every_cell_with_the_declared_seeds():
    runs = plan.select(plan.paper_plan(), table="3")
    cells = {(r.dataset, r.model) for r in runs}
    assert cells == {(d, m) for d in ("jsb_chorales", "nottingham", "piano_midi", "muse_data")
                     for m in ("af-af", "af-scf", "iaf-scf", "lstm")}
    seeds = {}
    for r in runs:
        seeds.setdefault((r.dataset, r.model), []).append(r.seed)
    assert seeds[("jsb_chorales", "af-af")] == [0, 1, 2, 3, 4]
    assert seeds[("jsb_chorales", "af-scf")] == [0, 1, 2]
    assert seeds[("piano_midi", "iaf-scf")] == [0]
    # Table runs are the files trainers.summary averages: results/<folder>/<model>-seed<k>.
    assert {r.key for r in runs if r.dataset == "muse_data"} == {
        "muse/af-af-seed0", "muse/af-scf-seed0", "muse/iaf-scf-seed0", "muse/lstm-seed0"}


def test_table1_is_the_reduced_ptb_scale_with_the_ablation_named_affine():
    runs = plan.select(plan.paper_plan(), table="1")
    assert {r.dataset for r in runs} == {"ptb_char"} and {r.folder for r in runs} == {"ptb-small"}
    affine = [r for r in runs if r.name == "af-af-affine-seed0"]
    assert len(affine) == 1 and affine[0].model == "af-af" and affine[0].settings["scalar_map"] == "affine"
    assert all(r.settings["train_subset"] == 1500 and r.settings["epochs"] == 12 for r in runs)


def test_every_planned_run_is_a_valid_configuration_with_a_flag_per_setting(tmp_path):
    for run in plan.paper_plan():
        config = default_config(run.dataset, run.model, str(tmp_path), seed=run.seed, jit_compile=True,
                                **dict(run.settings))
        for name, value in run.settings.items():
            assert getattr(config, name) == value, (run.key, name)
        argv = trainer_command(run, tmp_path / run.key, data_dir="/data")
        assert argv[argv.index("--seed") + 1] == str(run.seed)
        assert argv[argv.index("--output-dir") + 1] == str(tmp_path / run.key)


def test_experiment_groups_write_under_experiments_and_keys_are_unique():
    runs = plan.paper_plan()
    assert len({r.key for r in runs}) == len(runs)
    screens = plan.select(runs, groups=["piano-warmup"])
    assert [r.settings["grad_accum"] for r in screens] == [1, 2]
    assert all(r.folder == "experiments/piano" and r.settings["epochs"] == 20 for r in screens)
    (bundle,) = plan.select(runs, groups=["piano-reference"])
    assert bundle.settings["grad_accum"] == 8 and bundle.settings["kl_schedule"] == "reference"


def test_selection_by_dataset_alias_model_and_seed():
    runs = plan.select(plan.paper_plan(), table="3", datasets=["jsb"], models=["af-af"], seeds=[3, 4])
    assert [r.key for r in runs] == ["jsb/af-af-seed3", "jsb/af-af-seed4"]


def test_plan_file_round_trip_and_refusals(tmp_path):
    path = tmp_path / "plan.json"
    path.write_text(json.dumps([{"dataset": "jsb", "model": "lstm", "seed": 2, "settings": {"epochs": 3}}]))
    (run,) = plan.load_plan(path)
    assert (run.dataset, run.key, dict(run.settings)) == ("jsb_chorales", "jsb/lstm-seed2", {"epochs": 3})
    path.write_text(json.dumps([{"dataset": "jsb", "model": "lstm", "seed": 0, "colour": 1}]))
    with pytest.raises(ValueError, match="unknown keys"):
        plan.load_plan(path)
    path.write_text(json.dumps([{"dataset": "jsb", "model": "lstm", "seed": 0, "settings": {"seed": 1}}]))
    with pytest.raises(ValueError, match="may not set"):
        plan.load_plan(path)
    path.write_text(json.dumps([{"dataset": "jsb", "model": "lstm", "seed": 0}] * 2))
    with pytest.raises(ValueError, match="share a results name"):
        plan.load_plan(path)
