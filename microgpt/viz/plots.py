"""Plots with matplotlib (Agg backend, files only): the loss curve of a run, attention maps."""

import math

import numpy as np


def _pyplot():
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    return plt


def smooth(values, alpha=0.05):
    """Exponential moving average, bias-corrected so the first values are not pulled to 0."""
    out, avg = [], 0.0
    for i, v in enumerate(values, start=1):
        avg = (1 - alpha) * avg + alpha * v
        out.append(avg / (1 - (1 - alpha) ** i))
    return out


def save(fig, path):
    """Write `fig` to `path` and free it (pyplot keeps every open figure alive)."""
    fig.savefig(path, bbox_inches="tight")
    _pyplot().close(fig)
    return path


def plot_run(run_dir, vocab_size, path):
    """Write the loss figure of the run in `run_dir` (its log.csv, eval.csv and baselines.json) to `path`."""
    import os

    from microgpt.run import read_baselines
    from microgpt.runlog import read_log

    log = read_log(os.path.join(run_dir, "log.csv"))
    if not log or not log["step"].size:
        raise ValueError(f"{run_dir}/log.csv has no rows to plot")
    evals = read_log(os.path.join(run_dir, "eval.csv")) or None
    return save(loss_figure(log, vocab_size, evals, read_baselines(run_dir)), path)


BASELINE_STYLES = {"uniform": ("gray", "--"), "unigram": ("tab:brown", ":"), "bigram": ("tab:purple", "-.")}


def loss_figure(log, vocab_size, evals=None, baselines=None):
    """Loss per step (raw and smoothed) with the learning rate, the evaluations, and the yardsticks.

    `log` and `evals` are `runlog.read_log` tables of log.csv and eval.csv. A model
    that learned nothing predicts every token with probability 1/V, a loss of
    -ln(1/V) = ln V; the unigram and bigram lines (when the run measured them) show
    what counting characters, or pairs of them, achieves on the validation data.
    The gap between the training and validation curves is what the model memorised.
    """
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(8, 4.5), dpi=100)
    steps, loss = log["step"], log["loss"]
    ax.plot(steps, loss, color="tab:blue", alpha=0.3, linewidth=0.8, label="training loss (each batch)")
    ax.plot(steps, smooth(loss), color="tab:blue", linewidth=2, label="training loss (smoothed)")
    if evals is not None and evals.get("step", np.zeros(0)).size:
        ax.plot(evals["step"], evals["train_loss"], "o-", color="tab:green", markersize=3, linewidth=1.2,
                label="training sample")
        ax.plot(evals["step"], evals["val_loss"], "o-", color="tab:red", markersize=3, linewidth=1.5,
                label="validation")
    lines = dict(baselines or {})
    lines.setdefault("uniform", math.log(vocab_size))
    for name, value in lines.items():
        color, style = BASELINE_STYLES.get(name, ("gray", ":"))
        label = f"uniform guess: ln {vocab_size} = {value:.2f}" if name == "uniform" else f"{name}: {value:.2f}"
        ax.axhline(value, color=color, linestyle=style, linewidth=1, label=label)
    ax.set_xlabel("step")
    ax.set_ylabel("cross-entropy loss (nats)")
    ax.grid(alpha=0.3)
    lr_ax = ax.twinx()
    lr_ax.plot(steps, log["lr"], color="tab:orange", linewidth=1, label="learning rate")
    lr_ax.set_ylabel("learning rate", color="tab:orange")
    lr_ax.set_ylim(bottom=0)
    handles, labels = ax.get_legend_handles_labels()
    lr_handles, lr_labels = lr_ax.get_legend_handles_labels()
    ax.legend(handles + lr_handles, labels + lr_labels, loc="upper right", fontsize=8)
    ax.set_title("loss")
    fig.tight_layout()
    return fig


def plot_attention(capture, labels, path, title=""):
    """Write `attention_figure` to `path`."""
    return save(attention_figure(capture, labels, title), path)


def attention_figure(capture, labels, title=""):
    """Every layer's and head's attention weights as a grid of heatmaps (rows layers, columns heads).

    In each heatmap, row t is the query at position t and column s the key at
    position s ≤ t; each row sums to 1. Cells above the diagonal are the future,
    which a causal model cannot see: left blank. `labels` names the positions
    (the input characters, "BOS" first).
    """
    plt = _pyplot()
    n_layer, n_head = capture.config.n_layer, capture.config.n_head
    T = len(labels)
    cell = max(0.28 * T, 1.8)
    fig, axes = plt.subplots(n_layer, n_head, figsize=(cell * n_head + 1.2, cell * n_layer + 0.9),
                             squeeze=False, dpi=100)
    cmap = plt.get_cmap("viridis").with_extremes(bad="white")  # NaN: a position it cannot look at
    for layer in range(n_layer):
        for head in range(n_head):
            ax = axes[layer][head]
            weights = capture.attention(layer, head)
            image = ax.imshow(weights, cmap=cmap, vmin=0.0, vmax=1.0)
            ax.set_xticks(range(T), labels, fontsize=8, rotation=90 if T > 8 else 0)
            ax.set_yticks(range(T), labels, fontsize=8)
            ax.set_title(f"layer {layer}, head {head}", fontsize=9)
            if T <= 8:  # few enough cells to print the weights themselves
                for (t, s), w in np.ndenumerate(weights):
                    if s <= t:
                        ax.text(s, t, f"{w:.2f}", ha="center", va="center", fontsize=6,
                                color="black" if w > 0.6 else "white")
        axes[layer][0].set_ylabel("query (predicting after)", fontsize=8)
    for ax in axes[-1]:
        ax.set_xlabel("key (looked at)", fontsize=8)
    fig.colorbar(image, ax=axes, shrink=0.8, label="attention weight")
    fig.suptitle(title or "attention weights", fontsize=10)
    return fig

