"""Write a model's `sample` and `log_prob` functions as a SavedModel in TF Serving's layout."""

from __future__ import annotations

import json
import pathlib

import keras

from export import signatures
from tf_latentflow import paper
from export.run import ExportError, load_run

__all__ = ["next_version", "export_model", "export_run"]

METADATA_FILE = "assets.extra/latentflow.json"  # TF Serving ignores assets.extra


def next_version(model_base) -> int:
    """1 + the largest integer version directory under model_base (1 when there is none)."""
    base = pathlib.Path(model_base)
    versions = [int(p.name) for p in base.iterdir() if p.is_dir() and p.name.isdigit()] if base.is_dir() else []
    return max(versions, default=0) + 1


def export_model(model, path, *, vocabulary=None, nll_samples: int = 50, nll_seed=(0, 0),
                 nll_chunk_size: int | None = 10, jit_compile: bool | None = None, buckets=None,
                 max_samples: int = signatures.DEFAULT_MAX_SAMPLES,
                 metadata: dict | None = None) -> pathlib.Path:
    """Write `model` (LatentFlowVAE or LSTMBaseline) as a SavedModel at `path`.

    Signatures: `serving_default` (sample) and `log_prob`; see `export.signatures`.
    A JSON description (model kind, maximum length, units, vocabulary, ...) is
    written to assets.extra/latentflow.json beside the graph.
    """
    path = pathlib.Path(path)
    if int(max_samples) < 1:
        raise ExportError(f"max_samples must be >= 1, got {max_samples}")
    if path.exists() and any(path.iterdir()):
        raise FileExistsError(f"{path} exists and is not empty")
    sample = signatures.make_sample_fn(model, vocabulary, jit_compile=jit_compile, buckets=buckets,
                                       max_samples=max_samples)
    log_prob = signatures.make_log_prob_fn(model, num_samples=max(int(nll_samples), 1), seed=nll_seed,
                                           chunk_size=nll_chunk_size)
    archive = keras.export.ExportArchive()
    archive.track(model)
    archive.add_endpoint("serving_default", sample)
    archive.add_endpoint("log_prob", log_prob)
    archive.write_out(str(path), verbose=False)
    info = {"kind": "text" if model.is_text else "music", "max_length": int(model.max_length),
            "num_notes": None if model.is_text else int(model.num_notes),
            "vocabulary": list(vocabulary) if vocabulary is not None else None,
            "nll_samples": 0 if model.exact_likelihood else int(nll_samples),
            "nll_seed": list(nll_seed), "nll_chunk_size": nll_chunk_size,
            "nll_scoring": "exact" if model.exact_likelihood else "each sequence alone, at its length",
            "nll_per_step_unit": paper.unit("text" if model.is_text else "music"),
            "jit_compile": signatures.resolve_jit_compile(model, jit_compile),
            "max_samples": int(max_samples), **(metadata or {})}
    (path / METADATA_FILE).parent.mkdir(parents=True, exist_ok=True)
    (path / METADATA_FILE).write_text(json.dumps(info, indent=2) + "\n")
    return path


def export_run(run_dir, model_base, *, version: int | None = None, checkpoint: str = "best",
               **options) -> pathlib.Path:
    """Restore a training run and export it to model_base/<version>/ (default: the next version)."""
    trained = load_run(run_dir, checkpoint)
    version = next_version(model_base) if version is None else int(version)
    if version < 1:
        raise ExportError(f"version must be a positive integer, got {version}")
    options.setdefault("nll_samples", trained.nll_samples)
    metadata = {"model": trained.config.get("model"), "dataset": trained.config.get("dataset"),
                "run_dir": str(pathlib.Path(run_dir).resolve()), "checkpoint": trained.checkpoint}
    return export_model(trained.model, pathlib.Path(model_base) / str(version),
                        vocabulary=trained.vocabulary, metadata=metadata, **options)
