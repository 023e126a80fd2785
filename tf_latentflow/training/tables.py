"""The paper's tables from the committed results: `python -m trainers.summary --table 3`.

Table 3 (polyphonic music, nats per time step): one row per dataset, one column per
model; a cell is our test NLL as mean ± sd (number of runs) over the
`results/<folder>/<model>-seed<k>.json` files (`summary.seed_rows`), the paper's value
and the difference, or "not run". Table 1 (PTB characters, bits per character) is our
reduced, matched scale (`plan.PTB_SMALL`): one row per model, the paper's
full-scale value beside it for orientation only, so no difference is printed.

A cell whose runs differ in a setting other than the seed (a different batching, say)
is marked with a dagger and the settings are named below the table: its mean is not a
seed mean.

The README and results/README.md hold these tables verbatim between the lines
`<!-- begin: python -m trainers.summary --table N -->` and `<!-- end: ... -->`
(`replace_block`; `--update FILE` rewrites them).
"""

from __future__ import annotations

import pathlib
import re

from tf_latentflow.training.plan import RESULT_FOLDERS, TABLE_DATASETS, TABLE_MODELS
from tf_latentflow.paper import PAPER_NLL
from tf_latentflow.training.summary import SeedRow, seed_rows

__all__ = ["table_markdown", "replace_block", "block_markers", "TABLES"]

TABLES = ("3", "1")
DATASET_TITLES = {"nottingham": "Nottingham", "piano_midi": "Piano-midi", "muse_data": "MuseData",
                  "jsb_chorales": "JSB Chorales", "ptb_char": "PTB characters"}
MODEL_TITLES = {"af-af": "AF/AF", "af-scf": "AF/SCF", "iaf-scf": "IAF/SCF", "lstm": "LSTM",
                "af-only": "AF only", "af-af-affine": "AF/AF, affine (- NLSq)",
                "af-af-af-hidden": "AF/AF, - AF hidden"}


def _ours(row: SeedRow) -> str:
    sd = "" if row.sd is None else f" ± {row.sd:.3f}"
    return f"{row.mean:.3f}{sd} ({len(row.seeds)})" + (" †" if row.differences else "")


def _rows(results_dir, dataset: str) -> dict[str, SeedRow]:
    folder = pathlib.Path(results_dir) / RESULT_FOLDERS[dataset]
    return {row.model: row for row in seed_rows(folder)} if folder.is_dir() else {}


def _notes(marked: list[tuple[str, SeedRow]]) -> list[str]:
    return [f"† {where}: the runs differ in {', '.join(row.differences)}" for where, row in marked]


def table_markdown(results_dir, table: str) -> str:
    """Table `table` ("3" or "1") of the committed results in `results_dir` as Markdown."""
    if table not in TABLES:
        raise ValueError(f"table must be one of {TABLES}, got {table!r}")
    marked: list[tuple[str, SeedRow]] = []
    if table == "3":
        models = TABLE_MODELS["3"]
        lines = ["| dataset | " + " | ".join(MODEL_TITLES[m] for m in models) + " |",
                 "|---" * (len(models) + 1) + "|"]
        for dataset in TABLE_DATASETS["3"]:
            rows, cells = _rows(results_dir, dataset), []
            for model in models:
                paper = PAPER_NLL[dataset][model]
                row = rows.get(model)
                if row is None:
                    cells.append(f"not run · {paper:.2f}")
                    continue
                cells.append(f"{_ours(row)} · {paper:.2f} · {row.mean - paper:+.2f}")
                if row.differences:
                    marked.append((f"{DATASET_TITLES[dataset]} {MODEL_TITLES[model]}", row))
            lines.append(f"| {DATASET_TITLES[dataset]} | " + " | ".join(cells) + " |")
        lines += ["", "Each cell: ours, mean ± sd (runs) · the paper · ours − paper; test NLL in nats per "
                      "time step, lower is better."]
    else:
        (dataset,) = TABLE_DATASETS["1"]
        rows = _rows(results_dir, dataset)
        lines = ["| model | ours, reduced scale | paper, full scale |", "|---|---|---|"]
        for model in TABLE_MODELS["1"]:
            paper = PAPER_NLL[dataset].get(model)
            row = rows.get(model)
            ours = "not run" if row is None else _ours(row)
            lines.append(f"| {MODEL_TITLES[model]} | {ours} | {'-' if paper is None else f'{paper:.2f}'} |")
            if row is not None and row.differences:
                marked.append((MODEL_TITLES[model], row))
        lines += ["", "Test NLL in bits per character, mean ± sd (runs). Ours: 1,500 training sentences, "
                      "12 epochs, sizes 256; the paper's column is its full-scale protocol, for orientation."]
    notes = _notes(marked)
    return "\n".join(lines + ([""] + notes if notes else [])) + "\n"


def block_markers(table: str) -> tuple[str, str]:
    command = f"python -m trainers.summary --table {table}"
    return f"<!-- begin: {command} -->", f"<!-- end: {command} -->"


def replace_block(text: str, table: str, content: str) -> str:
    """`text` with the lines between table `table`'s markers replaced by `content`
    (ValueError when the markers are missing)."""
    begin, end = block_markers(table)
    pattern = re.compile(re.escape(begin) + r"\n.*?" + re.escape(end), re.S)
    if not pattern.search(text):
        raise ValueError(f"no `{begin}` ... `{end}` block")
    return pattern.sub(lambda _: f"{begin}\n{content}{end}", text)
