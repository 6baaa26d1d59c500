"""Plots: the loss curve and the attention grid, checked on the figures and through the CLI."""

import math

import numpy as np
import pytest

from microgpt.checkpoint import Checkpoint, save_checkpoint
from microgpt.config import TrainConfig
from microgpt.tokenizer import Tokenizer
from microgpt.viz.capture import capture_forward
from microgpt.viz.plots import attention_figure, loss_figure, plot_attention, save, smooth

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


@pytest.fixture
def run_dir(tmp_path, tiny_params):
    """A run directory holding the tiny model, vocabulary 'abcdef' + BOS (7 tokens)."""
    path = tmp_path / "run"
    save_checkpoint(str(path), Checkpoint(tiny_params, Tokenizer("abcdef"), TrainConfig()))
    return path


def test_smooth_follows_a_constant_from_the_first_step():
    np.testing.assert_allclose(smooth([2.0] * 50), [2.0] * 50, rtol=1e-12)


def test_loss_figure_has_curves_evaluations_yardsticks_and_lr(tmp_path):
    steps = np.arange(1, 101)
    log = {"step": steps, "loss": 3.3 - 0.01 * steps + 0.1 * np.sin(steps), "lr": 0.01 * (1 - (steps - 1) / 100)}
    evals = {"step": np.array([0, 50, 100]), "train_loss": np.array([3.3, 2.6, 2.3]),
             "val_loss": np.array([3.31, 2.7, 2.5])}
    baselines = {"uniform": math.log(27), "unigram": 2.85, "bigram": 2.45}
    fig = loss_figure(log, 27, evals, baselines)
    ax, lr_ax = fig.axes
    lines = {line.get_label(): line for line in ax.get_lines()}
    np.testing.assert_allclose(lines["training loss (each batch)"].get_ydata(), log["loss"], rtol=1e-12)
    np.testing.assert_allclose(lines["training loss (smoothed)"].get_ydata(), smooth(log["loss"]), rtol=1e-12)
    np.testing.assert_allclose(lines["validation"].get_ydata(), evals["val_loss"], rtol=1e-12)
    np.testing.assert_allclose(lines["training sample"].get_xdata(), evals["step"], rtol=1e-12)
    for label, value in (("uniform guess: ln 27 = 3.30", math.log(27)), ("unigram: 2.85", 2.85),
                         ("bigram: 2.45", 2.45)):
        np.testing.assert_allclose(lines[label].get_ydata(), value, rtol=1e-12)
    np.testing.assert_allclose(lr_ax.get_lines()[0].get_ydata(), log["lr"], rtol=1e-12)
    assert save(fig, tmp_path / "loss.png").read_bytes().startswith(PNG_MAGIC)


def test_loss_figure_without_evaluations_still_shows_the_uniform_guess():
    log = {"step": np.arange(1, 4), "loss": np.array([3.0, 2.9, 2.8]), "lr": np.array([0.01, 0.005, 0.0])}
    ax = loss_figure(log, 7).axes[0]
    assert {line.get_label() for line in ax.get_lines()} == {
        "training loss (each batch)", "training loss (smoothed)", "uniform guess: ln 7 = 1.95"}


def test_attention_figure_is_a_layer_by_head_grid_labelled_with_characters(tmp_path, tiny_params, tiny_config):
    tokens = [6, 0, 1, 2]
    labels = ["BOS", "a", "b", "c"]
    capture = capture_forward(tiny_params, tokens)
    fig = attention_figure(capture, labels)
    heatmaps = [ax for ax in fig.axes if ax.images and ax.get_title()]
    assert len(heatmaps) == tiny_config.n_layer * tiny_config.n_head
    for ax in heatmaps:
        layer, head = (int(word.strip(",")) for word in ax.get_title().split()[1::2])
        assert [t.get_text() for t in ax.get_xticklabels()] == labels
        assert [t.get_text() for t in ax.get_yticklabels()] == labels
        np.testing.assert_array_equal(np.asarray(ax.images[0].get_array().filled(np.nan)),
                                      capture.attention(layer, head))
    save(fig, tmp_path / "grid.png")


def test_plot_attention_writes_a_png(tmp_path, tiny_params):
    path = plot_attention(capture_forward(tiny_params, [6, 0]), ["BOS", "a"], tmp_path / "a.png")
    assert path.read_bytes().startswith(PNG_MAGIC)


def test_attention_command(cli, run_dir, tmp_path):
    out = tmp_path / "att.png"
    result = cli("attention", run_dir, "bad", "--out", out)
    assert result.returncode == 0, result.stderr
    assert out.read_bytes().startswith(PNG_MAGIC)
    assert "2 layer(s) × 2 heads over 4 positions" in result.stdout
    assert "layer1.mlp:" in result.stdout and "ReLUs off at every position" in result.stdout


@pytest.mark.parametrize("args, message", [
    (["nowhere", "abc"], "not a run directory"),
    (["RUN", "xyz"], "not in the vocabulary: 'x', 'y', 'z'"),
    (["RUN", "abc", "--out", "att.svg"], "ending in .png"),
])
def test_attention_command_errors_are_one_line(cli, run_dir, tmp_path, args, message):
    result = cli("attention", *[run_dir if a == "RUN" else a for a in args], cwd=tmp_path)
    assert result.returncode in (1, 2)
    assert message in result.stderr and "Traceback" not in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1
