"""`python -m export.sample --model MODEL_BASE/<version> --num-samples 4 --length 64 --out DIR`.

Calls the exported `serving_default` signature (no project code, TFP or Keras
needed to run the graph) and writes music samples as standard MIDI files
DIR/sample_<i>.mid (one quarter note per frame at --tempo, default 120 per
minute) and text samples as DIR/samples.txt, one sequence per line.
"""

from __future__ import annotations

import argparse
import pathlib
import sys

import numpy as np

from export import midi

__all__ = ["draw", "write_samples", "main"]


def draw(model_dir, num_samples: int, length: int, seed: int) -> dict:
    """The serving_default outputs of the SavedModel at model_dir as NumPy arrays."""
    import tensorflow as tf

    loaded = tf.saved_model.load(str(model_dir))
    out = loaded.signatures["serving_default"](
        num_samples=tf.constant(num_samples, tf.int32), length=tf.constant(length, tf.int32),
        seed=tf.constant(seed, tf.int64))
    return {name: value.numpy() for name, value in out.items()}


def write_samples(outputs: dict, out_dir, tempo_bpm: float = midi.DEFAULT_TEMPO_BPM) -> list[pathlib.Path]:
    """Write MIDI files (music: `sequences` [N, T, 88]) or samples.txt (text); returns the paths."""
    out_dir = pathlib.Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    lengths = np.asarray(outputs["lengths"])
    if "text" in outputs:
        path = out_dir / "samples.txt"
        lines = [t.decode("utf-8") if isinstance(t, bytes) else str(t) for t in outputs["text"]]
        path.write_text("".join(line.replace("\n", " ") + "\n" for line in lines), encoding="utf-8")
        return [path]
    paths = []
    for i, (roll, length) in enumerate(zip(np.asarray(outputs["sequences"]), lengths)):
        paths.append(midi.write_midi(out_dir / f"sample_{i}.mid", roll[:int(length)], tempo_bpm))
    return paths


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m export.sample", description=__doc__.splitlines()[0])
    parser.add_argument("--model", required=True, help="an exported SavedModel (MODEL_BASE/<version>)")
    parser.add_argument("--num-samples", type=int, default=4)
    parser.add_argument("--length", type=int, default=0, help="time steps per sample (0: drawn from p(T))")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", required=True, help="output directory")
    parser.add_argument("--tempo", type=float, default=midi.DEFAULT_TEMPO_BPM,
                        help="quarter-note frames per minute of the MIDI files (default 120)")
    args = parser.parse_args(sys.argv[1:] if argv is None else argv)
    if not pathlib.Path(args.model, "saved_model.pb").is_file():
        print(f"error: no SavedModel at {args.model} (expected MODEL_BASE/<version>)", file=sys.stderr)
        return 1
    import tensorflow as tf

    try:
        outputs = draw(args.model, args.num_samples, args.length, args.seed)
    except tf.errors.InvalidArgumentError as error:
        print(f"error: {error.message.splitlines()[0]}", file=sys.stderr)
        return 1
    for path in write_samples(outputs, args.out, args.tempo):
        print(path)
    return 0


if __name__ == "__main__":
    sys.exit(main())
