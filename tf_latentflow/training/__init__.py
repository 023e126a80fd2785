"""Training: configuration, schedules and the strategy-aware custom training loop.

  config        TrainConfig (frozen), per-dataset defaults, the trainers' flags
  schedules     KL annealing and the learning-rate plateau rule
  inputs        the dataset's splits and batches, p(T) from them
  distribution  the tf.distribute strategy, clipping across replicas, precision
  cluster       --strategy multiworker: TF_CONFIG, the chief, agreement between workers
  optimizers    FusedAdam: Keras's Adam with TensorFlow's fused update op
  state         what a run checkpoints; saving and restoring it
  resume        which settings a resumed run may change
  steps         the compiled training, validation and NLL steps
  epoch         a training pass's host side: accumulation groups, steps read back
  results       NLL records in the paper's units, the results table
  summary       seed tables of finished runs (mean, sd, min, paper, command)
  trainer       Trainer (the loop) and `run`

A run's files are a `tf_latentflow.runs.RunDirectory`; its model comes from
`tf_latentflow.runs.build_model`.
"""

from tf_latentflow.training.config import (MODEL_CHOICES, MUSIC_DATASETS, TEXT_DATASETS, TrainConfig,
                                           default_config)
from tf_latentflow.training.cluster import ClusterError
from tf_latentflow.training.resume import ConfigMismatch
from tf_latentflow.training.trainer import Interrupted, Trainer, TrainingDiverged, results_table, run

__all__ = ["ClusterError", "ConfigMismatch", "Interrupted", "MODEL_CHOICES", "MUSIC_DATASETS", "TEXT_DATASETS", "TrainConfig",
           "Trainer", "TrainingDiverged", "default_config", "results_table", "run"]
