"""Padded over real time steps of each benchmark split, for the two batchings.

    python benchmarks/padding.py --data-dir ../shared/data   # writes benchmarks/results/padding.json

For every music dataset (and PTB characters), training split at the trainer's batch size
and evaluation splits at its evaluation batch size: the steps a training or evaluation
pass computes (rows x padded length, filler rows included for training batches) over the
real steps, averaged over 3 epochs, with

  bucketed  length buckets (`num_buckets`) padded to `data.padded_length`'s grid of
            multiples of 16, or to the bucket's ceiling for text (`pad_to_bucket`): the
            batching of the runs trained before pooling
  pooled    the reference iterator's length pools padded to the split's
            `data.length_grid` (`length_grid_size` points; the default batching)

and the number of padded lengths (XLA programs) each meets. `pooled_without_grid` pads
every batch to its own longest sequence: the floor that the spread of lengths inside a
batch leaves (for the evaluation batches of a 76-sequence split, most of the padding). The bucketed figures come from
the tf.data pipeline itself; the pooled ones from `data.pooling.epoch_batches`, which the
pipeline follows batch for batch (tests/data/test_pooling.py).
"""

import argparse
import json
import os
import pathlib
import platform
import tempfile

import numpy as np

from tf_latentflow import data as D
from tf_latentflow.training.config import MUSIC_DATASETS, default_config
from tf_latentflow.training.inputs import POOL_BATCHES, XLA_TIME_MULTIPLE

EPOCHS = 3


def bucketed_ratio(examples, lengths, train_lengths, batch_size, training, num_buckets, pad_to_bucket):
    boundaries = D.quantile_boundaries(train_lengths, num_buckets) if num_buckets > 1 else ()
    ratios, shapes = [], set()
    for epoch in range(EPOCHS if training else 1):
        config = D.BatchConfig(batch_size=batch_size, shuffle=training, seed=epoch if training else None,
                               bucket_boundaries=boundaries, pad_to_multiple=XLA_TIME_MULTIPLE,
                               fill_batches=training, pad_to_bucket=pad_to_bucket,
                               longest=int(lengths.max()) if pad_to_bucket else None)
        computed = 0
        for batch in D.make_batches(examples, config):
            rows, steps = batch["x"].shape[:2]
            computed += rows * steps
            shapes.add(int(steps))
        ratios.append(computed / lengths.sum())
    return float(np.mean(ratios)), len(shapes)


def pooled_ratio(lengths, batch_size, training, grid_size):
    """(padded / real with the split's length grid, without a grid, shapes met)."""
    grid = D.length_grid(lengths, grid_size)
    ratios, exact, shapes = [], [], set()
    for epoch in range(EPOCHS if training else 1):
        batches = D.epoch_batches(lengths, batch_size, seed=epoch if training else None, pool_batches=POOL_BATCHES)
        ratios.append(D.padding_ratio(lengths, batches, batch_size, grid, filled=training))
        exact.append(D.padding_ratio(lengths, batches, batch_size, (), filled=training))
        shapes |= {grid[int(np.searchsorted(grid, lengths[b].max()))] for b in batches}
    return float(np.mean(ratios)), float(np.mean(exact)), len(shapes)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-dir", default=os.environ.get("LATENTFLOW_DATA_DIR", "../shared/data"))
    parser.add_argument("--output", default=str(pathlib.Path(__file__).parent / "results" / "padding.json"))
    args = parser.parse_args(argv)
    rows = []
    with tempfile.TemporaryDirectory() as prepared:
        for dataset in list(MUSIC_DATASETS) + ["ptb_char"]:
            builder = D.prepare(dataset, data_dir=prepared, source_dir=args.data_dir)
            model = "af-af"
            config = default_config(dataset, model, "", jit_compile=True)
            for split in ("train", "validation", "test"):
                examples = builder.as_dataset(split=split)
                lengths = D.split_lengths(examples)
                training = split == "train"
                batch_size = config.batch_size if training else config.eval_batch_size
                if training:
                    train_lengths = lengths
                old, old_shapes = bucketed_ratio(examples, lengths, train_lengths, batch_size, training,
                                                 config.num_buckets, config.pad_to_bucket)
                new, exact, new_shapes = pooled_ratio(lengths, batch_size, training, config.length_grid_size)
                row = dict(dataset=dataset, split=split, batch_size=batch_size, sequences=int(lengths.size),
                           real_steps=int(lengths.sum()), bucketed=round(old, 4), bucketed_shapes=old_shapes,
                           pooled=round(new, 4), pooled_without_grid=round(exact, 4), pooled_shapes=new_shapes,
                           length_grid_size=config.length_grid_size)
                print(json.dumps(row))
                rows.append(row)
    result = {"benchmark": "padding", "epochs_averaged": EPOCHS, "pool_batches": POOL_BATCHES,
              "machine": platform.machine(), "rows": rows}
    pathlib.Path(args.output).write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    main()
