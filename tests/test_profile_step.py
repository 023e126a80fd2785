"""benchmarks/profile_step.py on tiny models: every part timed, shares consistent, JSON complete."""

import json
import math
import os

import pytest
from benchmark_testing import load_benchmark


@pytest.fixture
def profile_step(monkeypatch):
    return load_benchmark(monkeypatch, "profile_step")


@pytest.mark.slow  # the default suite's 10-minute budget
def test_profile_step_small_models(profile_step, tmp_path):
    out = tmp_path / "profile.json"
    rows = profile_step.main(["--small", "--batch", "2", "--steps", "8", "--repeats", "1",
                              "--models", "af-scf", "iaf-scf", "lstm", "--no-jit-compile", "--out", str(out)])
    result = json.loads(out.read_text())
    assert result["benchmark"] == "profile_step"
    assert result["config"]["batch"] == 2 and result["config"]["steps"] == 8
    assert result["config"]["jit_compile"] is False
    assert {"platform", "cpus", "tensorflow"} <= set(result["machine"])
    assert set(result["threads"]) == {"TF_NUM_INTRAOP_THREADS", "TF_NUM_INTEROP_THREADS"}
    assert set(result["models"]) == {"af-scf", "iaf-scf", "lstm"}
    assert result["models"] == json.loads(json.dumps(rows))  # what main returns is what it wrote
    expected = {"af-scf": ["encoder", "prior_lstm", "flows", "emission", "optimizer"],
                "iaf-scf": ["encoder", "prior_lstm", "flows", "emission", "optimizer"],
                "lstm": ["lstm", "output", "optimizer"]}
    for name, parts in expected.items():
        row = result["models"][name]
        assert list(row["parts"]) == parts
        assert profile_step.expected_parts(name) == tuple(parts)
        full = row["full_step_ms"]
        assert math.isfinite(full) and full > 0
        for part in parts:
            ms, share = row["parts"][part]["ms"], row["parts"][part]["share"]
            assert math.isfinite(ms) and ms > 0, (name, part, ms)
            assert share == pytest.approx(ms / full)
            # CPU time over wall time: positive, and at most the machine's cores (with slack)
            assert 0 < row["parts"][part]["cores"] <= os.cpu_count() * 1.1, (name, part)
            assert part in row["descriptions"]
        assert 0 < row["full_step_cores"] <= os.cpu_count() * 1.1
        overhead = row["overhead"]
        assert overhead["ms"] == pytest.approx(full - sum(row["parts"][p]["ms"] for p in parts))
        assert overhead["share"] == pytest.approx(overhead["ms"] / full)
        # the cut recomposes the model's own computation, and covers every weight
        assert row["checks"]["weights_in_no_part"] == []
        diffs = [v for k, v in row["checks"].items() if k.endswith("diff")]
        assert diffs and max(diffs) < 1e-2
