"""The picture `microgpt compare` draws: several runs' loss curves on one axis, with their yardsticks.

Top panel: each run in its own colour, its training loss smoothed as the single-run
plot smooths it (solid) and its validation loss at each evaluation (dashed, with
dots). The yardsticks (uniform, unigram, bigram) are horizontal lines, drawn once
for runs measured on the same data. Bottom panel: each run's learning rate, so a
difference in schedule is seen beside the difference it made.
"""

from microgpt.viz.plots import BASELINE_STYLES, _pyplot, smooth

FIGSIZE = (10.0, 6.0)       # inches; with DPI, a PNG of exactly 1000 × 600 pixels
DPI = 100


def plot_comparison(curves, groups, path):
    """Write `comparison_figure` to `path` at its fixed size (FIGSIZE × DPI pixels)."""
    fig = comparison_figure(curves, groups)
    fig.savefig(path, dpi=DPI)
    _pyplot().close(fig)
    return path


def comparison_figure(curves, groups):
    """The figure of `curves`, [(label, log, evals)] (runlog tables of log.csv and eval.csv),
    and `groups`, [(yardsticks {name: loss}, [labels of the runs measured on them])]."""
    plt = _pyplot()
    fig, (loss_ax, lr_ax) = plt.subplots(2, 1, sharex=True, figsize=FIGSIZE, dpi=DPI,
                                         gridspec_kw={"height_ratios": [3, 1]})
    colors = plt.get_cmap("tab10").colors
    for (label, log, evals), color in zip(curves, colors):
        if log and log["step"].size:
            loss_ax.plot(log["step"], smooth(log["loss"]), color=color, linewidth=1.8,
                         label=f"{label}: training (smoothed)")
            lr_ax.plot(log["step"], log["lr"], color=color, linewidth=1.2, label=label)
        if evals and evals["step"].size:
            loss_ax.plot(evals["step"], evals["val_loss"], "o--", color=color, markersize=3, linewidth=1.2,
                         label=f"{label}: validation")
    for lines, labels in groups:
        whose = f" ({', '.join(labels)})" if len(groups) > 1 else ""
        for name, value in lines.items():
            color, style = BASELINE_STYLES.get(name, ("gray", ":"))
            loss_ax.axhline(value, color=color, linestyle=style, linewidth=1, label=f"{name}{whose}: {value:.3f}")
    loss_ax.set_ylabel("cross-entropy loss (nats)")
    loss_ax.set_title("training and validation loss, with the yardsticks")
    loss_ax.grid(alpha=0.3)
    loss_ax.legend(loc="upper right", fontsize=7)
    lr_ax.set_xlabel("step")
    lr_ax.set_ylabel("learning rate")
    lr_ax.set_ylim(bottom=0)
    lr_ax.grid(alpha=0.3)
    fig.tight_layout()
    return fig
