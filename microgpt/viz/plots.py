"""Plots with matplotlib (Agg backend, files only): the loss curve of a run."""

import math


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


def plot_loss(log, vocab_size, path):
    """Loss per step (raw and smoothed) with the learning rate, and the uniform baseline ln V.

    `log` is `train.read_log(run_dir)`. A model that learned nothing predicts every
    token with probability 1/V, a loss of -ln(1/V) = ln V: the dashed line.
    """
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(8, 4.5), dpi=100)
    steps, loss = log["step"], log["loss"]
    ax.plot(steps, loss, color="tab:blue", alpha=0.3, linewidth=0.8, label="loss")
    ax.plot(steps, smooth(loss), color="tab:blue", linewidth=2, label="loss (smoothed)")
    baseline = math.log(vocab_size)
    ax.axhline(baseline, color="gray", linestyle="--", linewidth=1,
               label=f"uniform guess: ln {vocab_size} = {baseline:.2f}")
    ax.set_xlabel("step")
    ax.set_ylabel("cross-entropy loss (nats)")
    ax.grid(alpha=0.3)
    lr_ax = ax.twinx()
    lr_ax.plot(steps, log["lr"], color="tab:orange", linewidth=1, label="learning rate")
    lr_ax.set_ylabel("learning rate", color="tab:orange")
    lr_ax.set_ylim(bottom=0)
    lines = ax.get_legend_handles_labels()
    lr_lines = lr_ax.get_legend_handles_labels()
    ax.legend(lines[0] + lr_lines[0], lines[1] + lr_lines[1], loc="upper right", fontsize=8)
    ax.set_title("training loss")
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
    return path
