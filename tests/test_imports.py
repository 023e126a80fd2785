"""The layering: data -> model stack -> runs -> training / export, no import pointing up.

Each case imports one package in a fresh interpreter and lists which of the heavier or
higher packages came with it."""

import json
import subprocess
import sys

import pytest

WATCHED = ("tensorflow_datasets", "tf_latentflow.training", "export", "tf_latentflow.model",
           "tf_latentflow.runs", "tf_latentflow.data")


def loaded_with(module: str) -> dict:
    code = (f"import json, sys; import {module}; "
            f"print(json.dumps({{w: any(m == w or m.startswith(w + '.') for m in sys.modules) "
            f"for w in {WATCHED!r}}}))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                         env={"TF_CPP_MIN_LOG_LEVEL": "3", "PATH": "", "PYTHONPATH": ":".join(sys.path)})
    return json.loads(out.stdout.strip().splitlines()[-1])


@pytest.mark.parametrize("module", ["tf_latentflow.bijectors", "tf_latentflow.layers"])
def test_the_flow_toolkit_imports_alone(module):
    loaded = loaded_with(module)
    assert not any(loaded[w] for w in ("tensorflow_datasets", "tf_latentflow.training", "export",
                                       "tf_latentflow.model", "tf_latentflow.runs", "tf_latentflow.data"))


def test_the_models_do_not_import_the_data_layer_or_above():
    loaded = loaded_with("tf_latentflow.model")
    assert not any(loaded[w] for w in ("tensorflow_datasets", "tf_latentflow.data", "tf_latentflow.runs",
                                       "tf_latentflow.training", "export"))


def test_the_exporter_does_not_import_the_training_code():
    loaded = loaded_with("export.savedmodel")
    assert loaded["tf_latentflow.runs"]
    assert not loaded["tf_latentflow.training"] and not loaded["tensorflow_datasets"]
