"""Runs: what ties training, evaluation and export together, below both.

  registry    the datasets and the models by name (the one list of each)
  build       ModelSettings, build_model, the length model, model_from_config
  checkpoints what a checkpoint holds (every weight keyed by its path), checked restores
  directory   RunDirectory: config.json, checkpoints/, history.jsonl, results.json; load

`tf_latentflow.training` writes runs through this package, `export` reads them
through it and never imports the training code.
"""

from tf_latentflow.runs.build import ModelSettings, build_model, make_length_model, model_from_config
from tf_latentflow.runs.directory import CHECKPOINT_KINDS, RunDirectory, TrainedRun
from tf_latentflow.runs.registry import DATASETS, MODEL_NAMES, MODELS, dataset, model_entry

__all__ = ["CHECKPOINT_KINDS", "DATASETS", "MODELS", "MODEL_NAMES", "ModelSettings", "RunDirectory",
           "TrainedRun", "build_model", "dataset", "make_length_model", "model_entry", "model_from_config"]
