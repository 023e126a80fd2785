"""Training configuration: one frozen dataclass, per-dataset defaults, and the CLI flags.

Defaults reproduce the reference commands (harvardnlp/TextFlow README and
config.py): music flow models train with Adam 1e-3, gradient clipping 0.25,
1 ELBO sample, KL weight 0 for 20 epochs then a linear ramp over 15, batch 5
(JSB, Nottingham) or batch 1 with 8-step gradient accumulation (Piano-midi,
MuseData), patience 2, and dropout 0.2 inside the prior LSTM. The LSTM baseline
uses dropout 0.1 and patience 4, and the flow models' Adam 1e-3 instead of the
reference's SGD at learning rate 20, which does not train here, on music or on text:
it stays at or returns to the level of independent notes (music) or of the unigram
entropy of the characters (PTB), where Adam learns. Text (PTB characters) uses
10 ELBO samples, KL 0 for 4 epochs then a ramp over 10. After the ramp, the learning
rate is divided by 4 whenever the validation loss has not improved for `patience`
epochs. 100 epochs, 50 importance samples for the reported NLL.

One known difference: at each decay the reference makes a new Adam (moments and
bias correction start over); here the moments carry over unless
`reset_optimizer_on_decay`. Two choices beyond the reference: the JSB flow models
default to dropout 0.2 in the encoder's and the emission's BiLSTMs
(`inference_dropout`, `emission_dropout`), which lowers their test NLL there (every
other dataset keeps the reference's 0); and Piano-midi's flows accumulate 2 steps,
not 8, which ends their KL-free warm-up trained instead of half-way.

The flags are grouped as `FLAG_GROUPS` says; `--print-config` shows the resolved
settings of a dataset and model.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os

from tf_latentflow.layers.context_mlp import CONTEXT_LAYERS, INITS
from tf_latentflow.runs import registry
from tf_latentflow.runs.build import ModelSettings
from tf_latentflow.training.schedules import KL_SHAPES, KLSchedule

__all__ = ["TrainConfig", "LEGACY_VALUES", "saved_value", "MUSIC_DATASETS", "TEXT_DATASETS", "MODEL_CHOICES",
           "default_config", "FLAG_GROUPS", "DEFAULTS_NOTE", "add_arguments", "config_from_args"]

# The registry's names (tf_latentflow.runs.registry), as the trainers' choices.
MUSIC_DATASETS = registry.dataset_names("music")
TEXT_DATASETS = registry.dataset_names("text")
MODEL_CHOICES = registry.MODEL_NAMES
BATCHINGS = ("pooled", "bucketed")
DATASET_ALIASES = registry.ALIASES


@dataclasses.dataclass(frozen=True, kw_only=True)
class TrainConfig(ModelSettings):
    """Everything a run depends on; saved as config.json beside the checkpoints.

    The model's settings (`model`, `dataset`, the sizes, dropouts and flow options) are
    `runs.build.ModelSettings`'s fields, defined there once; the fields below are the
    run's: data, optimisation, KL schedule, evaluation, performance and debugging.
    config.json holds all of them as one flat object."""

    output_dir: str
    data_dir: str | None = None
    prepared_dir: str = os.path.join("~", "tensorflow_datasets")
    epochs: int = 100
    batch_size: int = 5
    grad_accum: int = 1
    eval_batch_size: int = 16
    elbo_samples: int = 1
    nll_samples: int = 50
    # > 0: after the KL ramp, each epoch's importance-sampled validation NLL with this many
    # samples selects a second checkpoint (`best_nll`), evaluated beside `best` (by -ELBO).
    validation_nll_samples: int = 0
    # The importance samples of the NLL are evaluated in chunks of at most 10 and at most
    # this many (samples x sequences x padded steps) at once (`training.steps.nll_chunk`).
    # A chunk is never below one sample, so a batch longer than the budget alone
    # (sequences x padded steps) exceeds it.
    nll_chunk_budget: int = 65536
    optimizer: str = "adam"
    learning_rate: float = 1e-3
    lr_decay: float = 4.0
    clip_norm: float = 0.25
    seed: int = 0
    kl_zero_epochs: int = 20
    kl_ramp_epochs: int = 15
    kl_start_weight: float = 0.0
    kl_schedule: str = "early"
    adam_epsilon: float = 1e-7
    patience: int = 2
    min_learning_rate: float = 0.0
    reset_optimizer_on_decay: bool = False
    mixed_precision: str = "off"
    strategy: str = "auto"
    jit_compile: bool = True
    max_steps_per_epoch: int | None = None
    train_subset: int | None = None
    validation_subset: int | None = None
    max_eval_batches: int | None = None
    # "pooled": the reference iterator's length-pooled batches, padded to a grid of
    # `length_grid_size` lengths chosen for each split (`data.pooling`); "bucketed": the
    # earlier length buckets (`num_buckets`, `pad_to_bucket`) and the XLA_TIME_MULTIPLE grid.
    batching: str = "pooled"
    length_grid_size: int = 24
    num_buckets: int = 4
    pad_to_bucket: bool = False
    weight_decay: float = 0.0
    evaluate_only: bool = False

    def __post_init__(self):
        if self.kl_schedule not in KL_SHAPES:
            raise ValueError(f"kl_schedule must be one of {KL_SHAPES}, got {self.kl_schedule!r}")
        if not 0.0 <= self.kl_start_weight <= 1.0:
            raise ValueError(f"kl_start_weight must be in [0, 1], got {self.kl_start_weight}")
        if not self.adam_epsilon > 0.0:
            raise ValueError(f"adam_epsilon must be > 0, got {self.adam_epsilon}")
        if self.dataset not in registry.DATASETS:
            raise ValueError(f"unknown dataset {self.dataset!r}")
        if self.mixed_precision not in ("off", "auto", "on"):
            raise ValueError(f"mixed_precision must be off, auto or on, got {self.mixed_precision!r}")
        if self.strategy not in ("auto", "default", "mirrored", "multiworker"):
            raise ValueError(f"unknown strategy {self.strategy!r}")
        if self.batching not in BATCHINGS:
            raise ValueError(f"batching must be one of {BATCHINGS}, got {self.batching!r}")
        if self.optimizer not in ("adam", "sgd"):
            raise ValueError(f"optimizer must be adam or sgd, got {self.optimizer!r}")
        for name in ("epochs", "batch_size", "grad_accum", "eval_batch_size", "elbo_samples", "nll_samples",
                     "nll_chunk_budget", "length_grid_size",
                     "patience", "num_buckets", "latent_size", "embedding_size", "hidden_units",
                     "prior_lstm_units", "num_flow_layers"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")
        for name in ("max_steps_per_epoch", "max_eval_batches", "train_subset", "validation_subset"):
            if getattr(self, name) is not None and getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1 when given, got {getattr(self, name)}")
        if not self.flow_hidden_units or min(self.flow_hidden_units) < 1:
            raise ValueError(f"flow_hidden_units must be positive widths, got {self.flow_hidden_units}")
        if self.validation_nll_samples < 0:
            raise ValueError(f"validation_nll_samples must be >= 0, got {self.validation_nll_samples}")
        if not self.learning_rate > 0:
            raise ValueError(f"learning_rate must be > 0, got {self.learning_rate}")
        if not self.lr_decay > 1:
            raise ValueError(f"lr_decay must be > 1 (the learning rate is divided by it), "
                             f"got {self.lr_decay}")
        if self.min_learning_rate < 0:
            raise ValueError(f"min_learning_rate must be >= 0 (0: never stop early), got {self.min_learning_rate}")
        if self.clip_norm < 0:
            raise ValueError(f"clip_norm must be >= 0 (0: no clipping), got {self.clip_norm}")
        if self.weight_decay < 0:
            raise ValueError(f"weight_decay must be >= 0, got {self.weight_decay}")
        if self.kl_zero_epochs < 0 or self.kl_ramp_epochs < 0:
            raise ValueError("kl_zero_epochs and kl_ramp_epochs must be >= 0")
        super().__post_init__()  # the model's own settings (runs.build.ModelSettings)

    @property
    def is_text(self) -> bool:
        return registry.dataset(self.dataset).is_text

    @property
    def model_settings(self) -> ModelSettings:
        """What fixes this run's model architecture (`runs.build_model` builds it)."""
        return ModelSettings(**{f.name: getattr(self, f.name) for f in dataclasses.fields(ModelSettings)})

    @property
    def kl_schedule_spec(self) -> KLSchedule:
        """The KL annealing schedule of this run (training.schedules)."""
        return KLSchedule(self.kl_zero_epochs, self.kl_ramp_epochs, start=self.kl_start_weight,
                          shape=self.kl_schedule)

    def to_json(self) -> str:
        return json.dumps(dataclasses.asdict(self), indent=2, sort_keys=True)

    @classmethod
    def from_json(cls, text: str) -> "TrainConfig":
        fields = {**LEGACY_VALUES, **json.loads(text)}
        fields["flow_hidden_units"] = tuple(fields["flow_hidden_units"])
        names = {f.name for f in dataclasses.fields(cls)}
        return cls(**{k: v for k, v in fields.items() if k in names})


# The value a setting had in the code before it became a setting: a config.json that does
# not name it was written by a run that trained with this value (not with today's default).
LEGACY_VALUES = {"kl_start_weight": 0.0, "kl_schedule": "early", "adam_epsilon": 1e-7, "batching": "bucketed"}


def saved_value(saved: dict, name: str):
    """Setting `name` of a saved config.json, with the legacy or default value when absent."""
    if name in saved:
        return saved[name]
    if name in LEGACY_VALUES:
        return LEGACY_VALUES[name]
    field = {f.name: f for f in dataclasses.fields(TrainConfig)}[name]
    return None if field.default is dataclasses.MISSING else json.loads(json.dumps(field.default))


def _dataset_defaults(dataset: str, model: str) -> dict:
    if not registry.model_entry(model).is_latent:
        # The reference baseline: dropout 0.1, patience 4, no KL schedule; Adam 1e-3, as
        # the reference's SGD lr 20 diverges here on music and text (module docstring).
        text = dataset in TEXT_DATASETS
        return dict(optimizer="adam", learning_rate=1e-3,
                    patience=4, kl_zero_epochs=0, kl_ramp_epochs=0, elbo_samples=1,
                    batch_size=32 if text else 5, pad_to_bucket=text, num_buckets=8 if text else 4)
    if dataset in TEXT_DATASETS:
        # The reference's PTB IAF/SCF: 3 within-step flow layers and no dropout.
        iaf = model == "iaf-scf"
        return dict(batch_size=15, elbo_samples=10, kl_zero_epochs=4, kl_ramp_epochs=10, patience=1,
                    pad_to_bucket=True, num_buckets=8,
                    nll_samples=50, prior_dropout=0.0 if iaf else 0.2, **(dict(num_flow_layers=3) if iaf else {}))
    # Evaluation batches of 8 sorted sequences: they pad less than batches of 16, and the
    # 50-sample NLL pass is faster (docs/performance.md, "Against the reference").
    if dataset == "jsb_chorales":
        # Beyond the reference: dropout 0.2 in the encoder's and the emission's BiLSTMs.
        return dict(batch_size=5, eval_batch_size=8, elbo_samples=1, kl_zero_epochs=20, kl_ramp_epochs=15,
                    patience=2, inference_dropout=0.2, emission_dropout=0.2)
    if dataset == "nottingham":
        return dict(batch_size=5, eval_batch_size=8, elbo_samples=1, kl_zero_epochs=20, kl_ramp_epochs=15,
                    patience=2)
    # Piano-midi and MuseData (long pieces): the reference's batch 1 with 8-step gradient
    # accumulation, validation batch 1 and 4 importance samples for the NLL. Beyond the
    # reference: Piano-midi accumulates 2 steps, as 87 pieces make only 11 updates per
    # epoch at 8, too few for its KL-free warm-up (results/README.md, "Piano-midi").
    return dict(batch_size=1, grad_accum=2 if dataset == "piano_midi" else 8, eval_batch_size=1,
                nll_samples=4, elbo_samples=1, kl_zero_epochs=20, kl_ramp_epochs=15, patience=2,
                length_grid_size=32)


def default_config(dataset: str, model: str, output_dir: str, **overrides) -> TrainConfig:
    """The reference defaults for `dataset` and `model`, then `overrides`."""
    dataset = DATASET_ALIASES.get(dataset, dataset)
    fields = dict(dataset=dataset, model=model, output_dir=output_dir)
    fields.update(_dataset_defaults(dataset, model))
    if overrides.get("jit_compile") is None:
        fields["jit_compile"] = default_jit_compile()
    fields.update({k: v for k, v in overrides.items() if v is not None})
    return TrainConfig(**fields)


def default_jit_compile() -> bool:
    """XLA by default on CPUs, where it is the fastest; off when a GPU is visible, so that
    the LSTMs run cuDNN (`layers.FastLSTM`, recurrence "auto"), which XLA cannot compile."""
    import tensorflow as tf  # here, not at import: the config module stays light

    return not tf.config.list_physical_devices("GPU")


# The flag groups of the trainers' --help, in order; `add_arguments` returns them by key.
FLAG_GROUPS = {
    "run": ("run and output", "where the run lives, and what the command does"),
    "data": ("data", "the dataset, its files, and the batches"),
    "model": ("model", "the architecture (runs.build.ModelSettings)"),
    "optimisation": ("optimisation", "the optimizer, its learning-rate schedule, and clipping"),
    "kl": ("KL schedule", "the annealing of the KL term's weight"),
    "evaluation": ("evaluation", "the importance-sampled NLL of validation and test"),
    "performance": ("performance", "compilation, precision and devices; they leave the results "
                                   "unchanged up to rounding"),
    "reference": ("reference compatibility", "switches that make a run compute as the reference "
                                             "code (harvardnlp/TextFlow) does where this project "
                                             "chose differently"),
    "debugging": ("debugging", "shortened runs for tests and quick checks"),
}
DEFAULTS_NOTE = ("A flag left unset takes the dataset's and model's default (shown per flag); "
                 "--print-config prints every setting resolved for the given --dataset, --model "
                 "and flags.")


def _default_text(name: str, datasets) -> str:
    """The default of setting `name` for --help: its value when every dataset of `datasets`
    and every model share it, else "per dataset and model"."""
    if name == "jit_compile":
        return "on without a GPU, off with one"
    fields = {f.name: f for f in dataclasses.fields(TrainConfig)}
    values = {json.dumps(_dataset_defaults(d, m).get(name, fields[name].default))
              for d in datasets for m in MODEL_CHOICES}
    if len(values) > 1:
        return "per dataset and model, see --print-config"
    value = json.loads(values.pop())
    if isinstance(value, bool):
        return "on" if value else "off"
    if isinstance(value, list):
        return " ".join(map(str, value))
    return "none" if value is None else str(value)


def add_arguments(parser: argparse.ArgumentParser, datasets, default_dataset: str) -> dict:
    """The trainers' flags, in named groups (`FLAG_GROUPS`); returns the groups by key.

    Every flag but --dataset and --model defaults to None: unset flags keep the dataset's
    and model's defaults (`default_config`)."""
    groups = {key: parser.add_argument_group(title, description)
              for key, (title, description) in FLAG_GROUPS.items()}

    def flag(group: str, name: str, help: str, **options):
        dest = name[2:].replace("-", "_")
        help = f"{help} (default: {_default_text(dest, datasets)})"
        if options.get("action") == "store_true":
            options["default"] = None
        groups[group].add_argument(name, help=help.replace("%", "%%"), **options)

    boolean = dict(action=argparse.BooleanOptionalAction, default=None)
    run, data = groups["run"], groups["data"]
    choices = list(datasets) + [a for a, d in DATASET_ALIASES.items() if d in datasets]
    run.add_argument("--output-dir", help="the run directory: re-running with the same one resumes "
                                          "(default: runs/<dataset>/<model>)")
    flag("run", "--seed", "seed of the initial weights, the batches' order and every random draw", type=int)
    flag("run", "--evaluate-only", "evaluate the best checkpoint of --output-dir and write results.json",
         action="store_true")

    data.add_argument("--dataset", choices=choices, default=default_dataset,
                      help=f"the benchmark (default: {default_dataset})")
    data.add_argument("--data-dir", help="the raw benchmark files (default: $LATENTFLOW_DATA_DIR)")
    data.add_argument("--prepared-dir", help="where TensorFlow Datasets keeps the prepared datasets "
                                             "(default: ~/tensorflow_datasets)")
    flag("data", "--batch-size", "training sequences per batch", type=int)
    flag("data", "--batching", "'pooled': shuffle, sort pools of about 100 batches by length, batch, "
                               "shuffle the batches (the reference's iterator), padded to a grid of "
                               "--length-grid-size lengths chosen for each split; 'bucketed': length "
                               "buckets (--num-buckets) padded to multiples of 16, the runs trained "
                               "before pooling (a run directory resumes with its own)", choices=BATCHINGS)
    flag("data", "--length-grid-size", "with pooled batching and XLA: the number of padded lengths "
                                       "(compiled shapes) per split, placed to minimise its padding",
         type=int)
    flag("data", "--num-buckets", "bucketed batching: length buckets, quantiles of the training lengths",
         type=int)
    flag("data", "--pad-to-bucket", "with XLA, pad each batch to its length bucket's longest possible "
                                    "sequence rather than its own longest: one compiled shape per "
                                    "bucket instead of one per grid length", **boolean)

    model = groups["model"]
    model.add_argument("--model", choices=MODEL_CHOICES, default="af-af",
                       help="the sequence model: a latent flow VAE with the named prior (paper "
                            "section 4.3), the standard-normal VAE, or the LSTM baseline (default: af-af)")
    flag("model", "--latent-size", "H, the latent size per time step", type=int)
    flag("model", "--embedding-size", "the input embedding size of the inference network and the "
                                      "LSTM baseline", type=int)
    flag("model", "--hidden-units", "units of the inference and emission BiLSTMs (the baseline's LSTM)",
         type=int)
    flag("model", "--prior-lstm-units", "units of the prior's LSTM across time", type=int)
    flag("model", "--num-flow-layers", "L, the flow layers within a time step", type=int)
    flag("model", "--flow-hidden-units", "widths of the MADE and coupling networks", type=int, nargs="+")
    flag("model", "--scalar-map", "the scalar map of every flow layer: 'nlsq', or 'affine' (the "
                                  "paper's \"- NLSq\" ablation)", choices=("nlsq", "affine"))
    flag("model", "--prior-dropout", "dropout on the prior LSTM's outputs in training", type=float)
    flag("model", "--baseline-dropout", "dropout of the LSTM baseline", type=float)
    flag("model", "--inference-dropout", "dropout in the inference network: on E(x), between its "
                                         "BiLSTM layers and on their output (the reference's "
                                         "locations 'embedding', 'rnn_x')", type=float)
    flag("model", "--emission-dropout", "dropout in the emission: on z, between and after its BiLSTM "
                                        "layers and after the output projection (the reference's "
                                        "'z_before_outp', 'rnn_outp', 'outp_ff')", type=float)

    flag("optimisation", "--epochs", "training epochs (fewer when --min-learning-rate stops the run)",
         type=int)
    flag("optimisation", "--optimizer", "the optimizer", choices=("adam", "sgd"))
    flag("optimisation", "--learning-rate", "the initial learning rate; divided by 4 whenever the "
                                            "validation loss has not improved for --patience epochs "
                                            "after the KL ramp", type=float)
    flag("optimisation", "--patience", "epochs without improvement before the learning rate is "
                                       "divided", type=int)
    flag("optimisation", "--min-learning-rate", "stop training once the plateau rule has lowered the "
                                                "learning rate below this (e.g. 1e-6: after five "
                                                "divisions by 4 from 1e-3), then evaluate; 0: train "
                                                "all --epochs, as the reference does", type=float)
    flag("optimisation", "--clip-norm", "clip the gradient to this global norm (0: no clipping)",
         type=float)
    flag("optimisation", "--grad-accum", "update after this many batches with the mean of their "
                                         "gradients, clipped after accumulating", type=int)
    flag("optimisation", "--elbo-samples", "samples of z per sequence in the training ELBO", type=int)
    flag("optimisation", "--weight-decay", "decoupled weight decay (AdamW-style, Keras's optimizer "
                                           "weight_decay): each step multiplies every weight but "
                                           "biases by 1 - lr * weight_decay", type=float)

    flag("kl", "--kl-zero-epochs", "epochs at the start KL weight (--kl-start-weight)", type=int)
    flag("kl", "--kl-ramp-epochs", "epochs of the linear ramp of the KL weight up to 1", type=int)
    flag("kl", "--kl-start-weight", "KL weight during the first --kl-zero-epochs (reference: 1e-5)",
         type=float)
    flag("kl", "--kl-schedule", "shape of the KL ramp: 'reference' (TextFlow's get_kl_weight: the "
                                "ramp starts at epoch kl_zero_epochs and the plateau rule after "
                                "epoch kl_zero_epochs + kl_ramp_epochs) or 'early' (one epoch "
                                "earlier, plateau rule from the first epoch at weight 1)",
         choices=KL_SHAPES)

    flag("evaluation", "--nll-samples", "importance samples of the final validation and test NLL",
         type=int)
    flag("evaluation", "--eval-batch-size", "sequences per validation and test batch", type=int)
    flag("evaluation", "--validation-nll-samples",
         "importance samples for a per-epoch validation NLL, measured once the KL ramp is over; the "
         "lowest selects a second checkpoint, checkpoints/best_nll, whose test NLL results.json "
         "reports beside the -ELBO-selected one's as 'selected_by_validation_nll' (0: none)", type=int)
    flag("evaluation", "--nll-chunk-budget",
         "evaluate the NLL's importance samples in chunks of at most this many samples x sequences "
         "x padded time steps (and at most 10 samples, at least 1): bounds the evaluation's memory",
         type=int)

    flag("performance", "--jit-compile", "compile the training and evaluation steps with XLA "
                                         "(batches padded to a grid of lengths, every training shape "
                                         "compiled before the first step); --no-jit-compile: plain "
                                         "graph execution", **boolean)
    flag("performance", "--mixed-precision", "mixed_float16 compute: 'auto' when a GPU is visible, "
                                             "'on' always (slow on CPUs; for tests), 'off' never",
         choices=("off", "auto", "on"))
    flag("performance", "--strategy", "the tf.distribute strategy: 'auto' (mirrored over several "
                                      "GPUs, else one device), 'default' (one device), 'mirrored', "
                                      "'multiworker'", choices=("auto", "default", "mirrored", "multiworker"))

    flag("reference", "--adam-epsilon", "Adam's epsilon (reference: 1e-8)", type=float)
    flag("reference", "--reset-optimizer-on-decay", "start the optimizer's moments and step count "
                                                    "afresh at each learning-rate decay, as the "
                                                    "reference trainer does (it makes a new Adam)",
         **boolean)
    flag("reference", "--nlsq-damping", "the reference code's NLSq parameterisation: raw log b, c, "
                                        "log d damped by 0.4, 0.3, 0.4", **boolean)
    flag("reference", "--flow-context", "where the prior's time context enters the within-step MADE / "
                                        "coupling networks: 'all' layers or the 'first' only (the "
                                        "reference code's)", choices=CONTEXT_LAYERS)
    flag("reference", "--flow-init", "initialisation of the MADE / coupling networks: 'glorot' or the "
                                     "reference code's ('reference')", choices=INITS)

    flag("debugging", "--max-steps-per-epoch", "end every training pass after this many steps",
         type=int)
    flag("debugging", "--max-eval-batches", "evaluate at most this many batches per split", type=int)
    flag("debugging", "--train-subset", "train on a fixed subset of this many training sequences, the "
                                        "same for every model and --seed (`data.fixed_subset`); "
                                        "validation and test stay whole", type=int)
    flag("debugging", "--validation-subset", "the per-epoch validation pass (plateau rule, best "
                                             "checkpoint, --validation-nll-samples) reads a fixed "
                                             "subset of this many validation sequences; the final "
                                             "NLL is still on the whole validation and test splits",
         type=int)
    return groups


def config_from_args(args: argparse.Namespace) -> TrainConfig:
    """Resolve parsed flags against the dataset defaults."""
    dataset = DATASET_ALIASES.get(args.dataset, args.dataset)
    output_dir = args.output_dir or os.path.join("runs", dataset, args.model)
    overrides = {k: v for k, v in vars(args).items()
                 if k not in ("dataset", "model", "output_dir") and v is not None}
    if "flow_hidden_units" in overrides:
        overrides["flow_hidden_units"] = tuple(overrides["flow_hidden_units"])
    return default_config(dataset, args.model, output_dir, **overrides)
