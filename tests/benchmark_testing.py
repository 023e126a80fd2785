"""Test helper: load a script of benchmarks/ as a module (it imports its neighbour timing.py)."""

import importlib.util
import pathlib

BENCHMARKS = pathlib.Path(__file__).resolve().parents[1] / "benchmarks"


def load_benchmark(monkeypatch, name, module_name=None):
    """benchmarks/<name>.py as a fresh module (`module_name`, default `name`), with benchmarks/
    on sys.path for the duration of the test (`monkeypatch`)."""
    monkeypatch.syspath_prepend(str(BENCHMARKS))
    spec = importlib.util.spec_from_file_location(module_name or name, BENCHMARKS / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module
