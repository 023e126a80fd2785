"""Training: configuration, schedules and the strategy-aware custom training loop."""

from tf_latentflow.training.config import (MODEL_CHOICES, MUSIC_DATASETS, TEXT_DATASETS, TrainConfig,
                                           default_config)
from tf_latentflow.training.trainer import (ConfigMismatch, Interrupted, Trainer, TrainingDiverged,
                                            results_table, run)

__all__ = ["ConfigMismatch", "Interrupted", "MODEL_CHOICES", "MUSIC_DATASETS", "TEXT_DATASETS", "TrainConfig",
           "Trainer", "TrainingDiverged", "default_config", "results_table", "run"]
