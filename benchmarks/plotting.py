"""Drawing the paper's figures with matplotlib (the `plots` extra), imported on first use:
each `plot_*` takes what `figure_data` computed and writes one PNG."""

import math
import pathlib

import numpy as np

from figure_data import nlsq_curves, nlsq_stack_maps, stack_density_1d

DPI = 100


def _pyplot():
    try:
        import matplotlib
    except ImportError as error:
        raise ImportError('the figures need matplotlib: pip install -e ".[plots]"') from error
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _save(fig, path):
    path = pathlib.Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=DPI)
    _pyplot().close(fig)
    return path


def plot_figure5a(maps, x, path):
    plt = _pyplot()
    fig, (ax_f, ax_d) = plt.subplots(1, 2, figsize=(9, 3.6), constrained_layout=True)
    for label, params in maps:
        y, slope = nlsq_curves(params, x)
        (line,) = ax_f.plot(x, y, label=label)
        ax_d.plot(x, slope, color=line.get_color())
    ax_f.set(title="NLSq maps f(eps)", xlabel="eps", ylabel="f(eps)")
    ax_d.set(title="derivatives f'(eps) = exp(forward log-det)", xlabel="eps", ylabel="f'(eps)")
    ax_d.axhline(0.0, color="0.6", lw=0.8)
    ax_f.legend(fontsize=8, title="c in units of the bound (8 sqrt(3) / 9) b / d", title_fontsize=8)
    return _save(fig, path)


def plot_figure5b(layers, path, num_samples=20000, seed=0):
    plt = _pyplot()
    eps = np.linspace(-3.5, 3.5, 701)
    x = np.linspace(-4.0, 4.0, 801)
    maps = nlsq_stack_maps(layers, eps)
    density, samples = stack_density_1d(layers, x, num_samples=num_samples, seed=seed)
    fig, (ax_m, ax_p) = plt.subplots(1, 2, figsize=(9, 3.6), constrained_layout=True)
    ax_m.plot(eps, eps, color="0.6", lw=0.8, ls="--", label="identity")
    for k, values in enumerate(maps, start=1):
        ax_m.plot(eps, values, label=f"after layer {k}")
    ax_m.set(title=f"{len(layers)} NLSq layers composed", xlabel="eps", ylabel="x", ylim=(-4, 4))
    ax_m.legend(fontsize=8)
    ax_p.hist(samples, bins=np.linspace(-4, 4, 81), density=True, color="C0", alpha=0.35,
              label=f"{num_samples} samples")
    ax_p.plot(x, density, color="C0", label="exp(log_prob)")
    ax_p.plot(x, np.exp(-0.5 * x ** 2) / math.sqrt(2 * math.pi), color="0.5", ls="--",
              label="base N(0, 1)")
    ax_p.set(title="density of x = f3(f2(f1(eps))), eps ~ N(0, 1)", xlabel="x", ylabel="density")
    ax_p.legend(fontsize=8)
    return _save(fig, path)


def plot_figure5c(panels, extent, path, suptitle):
    """`panels`: list of (title, density n x n), the true density first; `extent`: (x0, x1, y0, y1).

    All panels share the colour scale of the first, so that a fit's spike cannot wash
    out the others (values above it saturate).
    """
    plt = _pyplot()
    fig, axes = plt.subplots(1, len(panels), figsize=(4 * len(panels), 4.2), constrained_layout=True)
    vmax = float(panels[0][1].max())
    for ax, (title, density) in zip(axes, panels):
        ax.imshow(density, origin="lower", extent=extent, cmap="viridis", vmin=0.0, vmax=vmax,
                  interpolation="nearest")
        ax.set_title(title, fontsize=10)
        ax.set_xticks([-3, 0, 3])
        ax.set_yticks([-3, 0, 3])
    fig.suptitle(suptitle, fontsize=10)
    return _save(fig, path)


MODEL_LABELS = {"iaf-scf": "IAF / SCF", "af-scf": "AF / SCF", "af-af": "AF / AF", "lstm": "LSTM"}


def plot_figure7(series, path, suptitle):
    """`series`: `generation_series(...)`; one log-log panel per batch size."""
    plt = _pyplot()
    fig, axes = plt.subplots(1, len(series), figsize=(5.5 * len(series), 4.6), squeeze=False,
                             constrained_layout=True)
    for ax, (batch_size, models) in zip(axes[0], series.items()):
        for k, (model, line) in enumerate(models.items()):
            label = MODEL_LABELS.get(model, model)
            if line["skipped"]:
                label += f" (skipped T = {', '.join(map(str, line['skipped']))})"
            ax.plot(line["lengths"], line["ms_per_sequence"], marker="o", color=f"C{k}", label=label)
        ax.set_xscale("log")
        ax.set_yscale("log")
        ticks = sorted({int(t) for line in models.values() for t in line["lengths"]})
        ax.set_xticks(ticks, [str(t) for t in ticks])
        ax.xaxis.set_minor_locator(plt.NullLocator())
        ax.set(title=f"batch size {batch_size}", xlabel="sequence length T",
               ylabel="ms per sequence")
        ax.grid(True, which="both", color="0.9", lw=0.6)
        ax.legend(fontsize=8)
    fig.suptitle(suptitle, fontsize=9)
    return _save(fig, path)


def plot_figure6(rows, path, suptitle):
    """`rows`: list of (label, z `[T, 2]`, panels from `figure6_panels`); one row per run, one
    panel per step t, each with its own colour scale and the sampled z_t marked."""
    plt = _pyplot()
    steps = max(len(panels) for _, _, panels in rows)
    fig, axes = plt.subplots(len(rows), steps, figsize=(2.8 * steps, 2.9 * len(rows) + 0.5),
                             squeeze=False, constrained_layout=True)
    for r, (label, z, panels) in enumerate(rows):
        for c, (t, xs, ys, density) in enumerate(panels):
            ax = axes[r, c]
            ax.imshow(density, origin="lower", extent=(xs[0], xs[-1], ys[0], ys[-1]), cmap="viridis",
                      interpolation="nearest")
            ax.plot(z[t, 0], z[t, 1], marker="x", color="red", ms=6, mew=1.5)
            ax.set_xlim(xs[0], xs[-1])
            ax.set_ylim(ys[0], ys[-1])
            ax.set_title(f"{label}\np(z_{t} | z_<{t}, T)" if c == 0 else f"p(z_{t} | z_<{t}, T)",
                         fontsize=9)
            ax.tick_params(labelsize=7)
        for c in range(len(panels), steps):
            axes[r, c].axis("off")
    fig.suptitle(suptitle, fontsize=9)
    return _save(fig, path)


def plot_samples(rows, path, suptitle):
    """`rows`: list of (label, [roll uint8 [T, 88], ...]); one row per source, time across,
    pitch up (the notes any roll uses, with a margin)."""
    plt = _pyplot()
    used = np.flatnonzero(np.any([roll.any(axis=0) for _, rolls in rows for roll in rolls], axis=0))
    low, high = (max(int(used[0]) - 2, 0), min(int(used[-1]) + 3, 88)) if len(used) else (0, 88)
    cols = max(len(rolls) for _, rolls in rows)
    fig, axes = plt.subplots(len(rows), cols, figsize=(3.2 * cols, 2.0 * len(rows) + 0.4),
                             squeeze=False, constrained_layout=True)
    for r, (label, rolls) in enumerate(rows):
        for c in range(cols):
            ax = axes[r, c]
            if c >= len(rolls):
                ax.axis("off")
                continue
            roll = rolls[c][:, low:high]
            ax.imshow(roll.T, origin="lower", aspect="auto", cmap="Greys", vmin=0, vmax=1,
                      interpolation="nearest", extent=(0, len(roll), low + 21 - 0.5, high + 21 - 0.5))
            ax.set_title(f"{label} #{c + 1}", fontsize=8)
            ax.tick_params(labelsize=7)
            if c == 0:
                ax.set_ylabel("MIDI note", fontsize=8)
            if r == len(rows) - 1:
                ax.set_xlabel("time step", fontsize=8)
    fig.suptitle(suptitle, fontsize=9)
    return _save(fig, path)
