"""`python -m trainers.summary --table N`: the paper's tables from results files, and the
README's and results/README.md's copies of them."""

import json
import pathlib

import pytest

from tf_latentflow.training import tables
from tf_latentflow.training.config import default_config
from trainers import summary as summary_cli

ROOT = pathlib.Path(__file__).resolve().parents[2]


def write_run(results, folder, name, nll, dataset, **settings):
    """A results file as the trainer writes it (config: the dataset's defaults and `settings`)."""
    path = results / folder / f"{name}.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    model, seed = name.rsplit("-seed", 1)
    config = json.loads(default_config(dataset, model, "x", seed=int(seed), jit_compile=True, **settings).to_json())
    path.write_text(json.dumps({"dataset": dataset, "model": model, "config": config,
                                "test": {"nll": nll, "unit": "nats per time step"}, "wall_seconds": 60.0}))


def test_table3_cells_mean_sd_runs_paper_difference_and_not_run(tmp_path):
    write_run(tmp_path, "jsb", "af-af-seed0", 6.5, dataset="jsb_chorales")
    write_run(tmp_path, "jsb", "af-af-seed1", 6.7, dataset="jsb_chorales")
    write_run(tmp_path, "nottingham", "lstm-seed0", 3.0, dataset="nottingham")
    text = tables.table_markdown(tmp_path, "3")
    rows = {line.split(" | ")[0].strip("| "): line.split(" | ")[1:] for line in text.splitlines()
            if line.startswith("| ") and not line.startswith("| dataset")}
    # sd of (6.5, 6.7) with n - 1: 0.1414; paper JSB AF/AF 6.53
    assert rows["JSB Chorales"][0] == "6.600 ± 0.141 (2) · 6.53 · +0.07"
    assert rows["JSB Chorales"][1] == "not run · 6.64"
    assert rows["Nottingham"][3].rstrip(" |") == "3.000 (1) · 3.43 · -0.43"
    assert list(rows) == ["Nottingham", "Piano-midi", "MuseData", "JSB Chorales"]
    assert "†" not in text


def test_runs_that_differ_beyond_the_seed_are_marked(tmp_path):
    write_run(tmp_path, "jsb", "af-scf-seed0", 6.5, dataset="jsb_chorales")
    write_run(tmp_path, "jsb", "af-scf-seed1", 6.6, dataset="jsb_chorales", batch_size=3)
    text = tables.table_markdown(tmp_path, "3")
    assert "6.550 ± 0.071 (2) † · 6.64" in text
    assert "† JSB Chorales AF/SCF: the runs differ in batch_size" in text


def test_table1_is_labelled_reduced_and_prints_no_difference(tmp_path):
    write_run(tmp_path, "ptb-small", "lstm-seed0", 2.25, dataset="ptb_char")
    text = tables.table_markdown(tmp_path, "1")
    assert "| LSTM | 2.250 (1) | 1.41 |" in text and "| AF/SCF | not run | 1.46 |" in text
    assert "reduced scale" in text and "full scale" in text


@pytest.mark.parametrize("document", ["README.md", "results/README.md"])
@pytest.mark.parametrize("table", tables.TABLES)
def test_the_documents_hold_the_tables_of_the_committed_results(document, table):
    text = (ROOT / document).read_text()
    begin, end = tables.block_markers(table)
    block = text.split(begin + "\n", 1)[1].split(end, 1)[0]
    assert block == tables.table_markdown(ROOT / "results", table), (
        f"{document} is stale: python -m trainers.summary --table {table} --update {document}")


def test_update_rewrites_only_the_block(tmp_path, capsys):
    write_run(tmp_path / "results", "jsb", "lstm-seed0", 8.0, dataset="jsb_chorales")
    begin, end = tables.block_markers("3")
    doc = tmp_path / "doc.md"
    doc.write_text(f"intro\n{begin}\nold\n{end}\noutro\n")
    assert summary_cli.main(["--table", "3", "--results-dir", str(tmp_path / "results"),
                             "--update", str(doc)]) == 0
    printed = capsys.readouterr().out
    assert doc.read_text() == f"intro\n{begin}\n{printed}{end}\noutro\n"
    assert "8.000 (1) · 8.17 · -0.17" in printed
    with pytest.raises(ValueError, match="no `"):
        tables.replace_block("no markers", "1", "x")


def test_every_committed_result_describes_the_run_that_trained():
    """A results file's "config" is the training's; an evaluating call's own settings sit apart."""
    for path in (ROOT / "results").rglob("*.json"):
        record = json.loads(path.read_text())
        if "config" in record and "test" in record:
            assert record["config"]["evaluate_only"] is False, path
            assert record.get("evaluation_config", {}).get("evaluate_only", True) is True, path
