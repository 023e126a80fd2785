"""export: SavedModel samplers and scorers of trained runs, for TF Serving.

  python -m export --run-dir RUN --output MODEL_BASE [--version N]   write MODEL_BASE/<N>/
  python -m export.sample --model MODEL_BASE/<N> --out DIR            MIDI files or a .txt

Modules: `run` (rebuild a trained model from a run directory), `signatures`
(the graph functions `sample` and `log_prob`), `savedmodel` (write the
SavedModel in TF Serving's layout), `midi` (a minimal standard MIDI file
writer and reader), `sample` (the sampling CLI).
"""
