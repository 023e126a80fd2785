"""benchmarks/generation.py on tiny exported models: every (model, batch, length) timed or
reported skipped, sequences of the requested length, and the JSON that figure 7 reads.

The exports are tiny (TINY sizes, lengths up to 24) and use the plain-graph sampler
(XLA compiles one program per bucket and batch size, which would dominate); the XLA
path is the slow test at the end.
"""

import importlib.util
import json
import math
import pathlib

import numpy as np
import pytest

from training_testing import TINY
from benchmark_testing import load_benchmark

BENCHMARKS = pathlib.Path(__file__).resolve().parents[1] / "benchmarks"
MAX_LENGTH = 24
MODELS = ("iaf-scf", "lstm")
LENGTHS = (4, 9, 24)
BATCH_SIZES = (1, 3)


@pytest.fixture
def generation(monkeypatch):
    return load_benchmark(monkeypatch, "generation")


@pytest.fixture
def figure_data(monkeypatch):
    return load_benchmark(monkeypatch, "figure_data")


@pytest.fixture(scope="module")
def workdir(tmp_path_factory):
    """Tiny graph-sampler exports where `generation.main --no-xla --max-length 24` looks."""
    spec = importlib.util.spec_from_file_location("generation_export", BENCHMARKS / "generation.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    root = tmp_path_factory.mktemp("generation")
    for name in MODELS:
        module.build_and_export(name, module.export_path(root, name, MAX_LENGTH, False), MAX_LENGTH,
                                TINY, jit_compile=False)
    return root


@pytest.mark.slow  # the default suite's 10-minute budget
def test_main_times_every_model_batch_and_length_and_writes_what_figure7_reads(
        generation, figure_data, workdir, tmp_path, capsys):
    out = tmp_path / "generation.json"
    result = generation.main(["--models", *MODELS, "--lengths", *map(str, LENGTHS), "--batch-sizes",
                              *map(str, BATCH_SIZES), "--repeats", "2", "--max-length", str(MAX_LENGTH),
                              "--no-xla", "--workdir", str(workdir), "--out", str(out)])
    assert result == json.loads(out.read_text())
    assert result["benchmark"] == "generation"
    config = result["config"]
    assert config["lengths"] == list(LENGTHS) and config["batch_sizes"] == list(BATCH_SIZES)
    assert config["xla_sampler"] is False and config["buckets"] is None and config["repeats"] == 2
    assert {"platform", "cpus", "usable_cpus", "tensorflow", "threads"} <= set(result["machine"])
    assert set(result["machine"]["threads"]) == {"TF_NUM_INTRAOP_THREADS", "TF_NUM_INTEROP_THREADS"}
    assert list(result["models"]) == list(MODELS)
    for name, row in result["models"].items():
        assert row["export_s"] is None  # the fixture's export was reused, not rebuilt at paper size
        assert row["project_modules_loaded"] == []  # the timing process ran TensorFlow only
        assert set(row["by_batch"]) == {str(b) for b in BATCH_SIZES}
        for batch_size in BATCH_SIZES:
            entries = row["by_batch"][str(batch_size)]
            assert set(entries) == {str(t) for t in LENGTHS}
            for length in LENGTHS:
                entry = entries[str(length)]
                assert entry["status"] == "measured", (name, batch_size, length, entry)
                assert entry["output_shape"] == [batch_size, length, 88]
                assert len(entry["times_ms"]) == 2
                assert math.isfinite(entry["median_ms"]) and entry["median_ms"] > 0
                assert 0 < entry["min_ms"] <= entry["median_ms"]
                assert entry["first_call_ms"] > 0
                assert entry["median_ms_per_sequence"] == pytest.approx(entry["median_ms"] / batch_size)
    for batch_size in BATCH_SIZES:  # the IAF/SCF against LSTM summary covers every length
        versus = result["iaf_scf_vs_lstm"][str(batch_size)]
        assert set(versus) == {str(t) for t in LENGTHS}
        for row in versus.values():
            assert row["ratio"] == pytest.approx(row["lstm_ms"] / row["iaf-scf_ms"])
            assert row["faster"] == (row["iaf-scf_ms"] < row["lstm_ms"])
    printed = capsys.readouterr().out
    assert "iaf-scf faster than lstm?" in printed and all(f"\n{t:>6}" in printed for t in LENGTHS)

    # figure 7's data: one series per batch size and model, lengths increasing
    series = figure_data.generation_series(figure_data.load_generation(out))
    assert list(series) == list(BATCH_SIZES)
    for batch_size in BATCH_SIZES:
        assert list(series[batch_size]) == list(MODELS)
        for name, line in series[batch_size].items():
            entries = result["models"][name]["by_batch"][str(batch_size)]
            np.testing.assert_array_equal(line["lengths"], LENGTHS)
            np.testing.assert_allclose(line["ms_per_sequence"],
                                       [entries[str(t)]["median_ms_per_sequence"] for t in LENGTHS])
            np.testing.assert_allclose(line["min_ms_per_sequence"],
                                       [entries[str(t)]["min_ms_per_sequence"] for t in LENGTHS])
            assert line["skipped"] == []
    title = figure_data.generation_title(result)
    assert "untrained paper-size music models" in title and f"{result['machine']['cpus']} CPUs" in title


def test_budget_skips_longer_lengths_and_reports_them(generation, figure_data, workdir, tmp_path):
    path = generation.export_path(workdir, "lstm", MAX_LENGTH, False)
    row = generation.time_sampler(path, [24, 4, 9], BATCH_SIZES, repeats=1, budget_s=0.0)
    for batch_size in BATCH_SIZES:
        entries = row["by_batch"][str(batch_size)]
        assert list(entries) == ["4", "9", "24"]  # shortest first, whatever the order asked
        assert entries["4"]["status"] == "measured"  # the shortest length is always measured
        assert entries["4"]["output_shape"] == [batch_size, 4, 88]
        for length in ("9", "24"):
            assert entries[length]["status"] == "skipped"
            assert "budget 0 s" in entries[length]["reason"]
            assert "median_ms" not in entries[length]
    # figure 7 draws what was measured and lists what was skipped
    result = {"benchmark": "generation", "config": {"batch_sizes": list(BATCH_SIZES)},
              "models": {"lstm": row}}
    series = figure_data.generation_series(result)
    for batch_size in BATCH_SIZES:
        line = series[batch_size]["lstm"]
        np.testing.assert_array_equal(line["lengths"], [4])
        assert line["skipped"] == [9, 24]


def test_projection_is_linear_in_length(generation):
    previous = {"length": 10, "median_ms": 50.0, "first_call_ms": 2050.0}  # a 2 s compile
    assert generation.projected_seconds(None, 100, 5) == 0.0
    assert generation.projected_seconds(previous, 100, 5) == pytest.approx(2.0 + 6 * 0.5)


def test_reused_export_must_have_the_requested_buckets(generation, workdir):
    path = generation.export_path(workdir, "lstm", MAX_LENGTH, False)
    assert generation.reusable(path, None)
    with pytest.raises(FileExistsError, match="buckets"):
        generation.reusable(path, [4, 9])
    assert not generation.reusable(workdir / "nothing" / "1", [4, 9])


@pytest.mark.slow  # XLA compiles one program per bucket and batch size
def test_xla_buckets_at_the_requested_lengths(generation, tmp_path):
    path = generation.build_and_export("iaf-scf", tmp_path / "iaf-scf" / "1", MAX_LENGTH, TINY,
                                       jit_compile=True, buckets=[5, 12])
    info = json.loads((path / "assets.extra" / "latentflow.json").read_text())
    assert info["jit_compile"] is True and info["buckets"] == [5, 12, MAX_LENGTH]
    row = generation.time_in_subprocess(path, [5, 7, 12], [1, 2], repeats=1)
    assert row["project_modules_loaded"] == []
    for batch_size in (1, 2):
        for length in (5, 7, 12):  # 7 runs the 12 bucket, cut to 7
            entry = row["by_batch"][str(batch_size)][str(length)]
            assert entry["status"] == "measured" and entry["output_shape"] == [batch_size, length, 88]
