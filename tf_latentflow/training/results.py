"""Evaluating a run: the importance-sampled NLL of a split in the paper's units, and
results.json (written through the run directory) with its text table."""

from __future__ import annotations

from tf_latentflow.evaluation import in_paper_units
from tf_latentflow.runs import registry

__all__ = ["nll_record", "results_table"]


def nll_record(sums, *, dataset: str, num_samples: int, exact: bool) -> dict:
    """A split's NLL record from `TrainSteps.nll_sums` (nll, reconstruction, kl, steps,
    sequences), per step T + 1 in the paper's unit (nats per step for music, bits per
    character for text). num_samples is reported as 1 for an exact likelihood."""
    entry = registry.dataset(dataset)
    scale = in_paper_units(1.0 / sums[3], is_text=entry.is_text)
    return {"nll": sums[0] * scale, "reconstruction": sums[1] * scale, "kl": sums[2] * scale,
            "unit": entry.unit, "sequences": int(sums[4]), "num_samples": 1 if exact else num_samples}


def results_table(results: dict) -> str:
    """The evaluation of results.json as a small text table (printed at the end of a run)."""
    unit = results["test"]["unit"]
    best = results.get("best_epoch", results["epochs_trained"])
    lines = [f"{results['dataset']} / {results['model']}: {results['checkpoint']} "
             f"(best after {best} of {results['epochs_trained']} epochs, "
             f"{results['wall_seconds'] / 60:.1f} min training)",
             f"{'split':<12}{'NLL':>9}{'recon.':>9}{'KL':>9}  ({unit}, {results['test']['num_samples']} "
             f"importance samples)"]
    for split in ("validation", "test"):
        r = results[split]
        lines.append(f"{split:<12}{r['nll']:>9.3f}{r['reconstruction']:>9.3f}{r['kl']:>9.3f}")
    return "\n".join(lines)
