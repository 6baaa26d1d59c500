"""Plots: the loss curve and the attention grid, checked on the figures and through the CLI."""

import math

import numpy as np
import pytest

from microgpt.checkpoint import Checkpoint, save_checkpoint
from microgpt.config import TrainConfig
from microgpt.data import Tokenizer
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


def test_loss_figure_has_raw_smoothed_baseline_and_lr(tmp_path):
    steps = list(range(1, 101))
    log = {"step": steps, "loss": [3.3 - 0.01 * s + 0.1 * math.sin(s) for s in steps],
           "lr": [0.01 * (1 - (s - 1) / 100) for s in steps]}
    fig = loss_figure(log, vocab_size=27)
    ax, lr_ax = fig.axes
    labels = {line.get_label(): line for line in ax.get_lines()}
    assert {"loss", "loss (smoothed)"} <= set(labels)
    baseline = next(line for line in ax.get_lines() if line.get_linestyle() == "--")
    np.testing.assert_allclose(baseline.get_ydata(), math.log(27), rtol=1e-12)
    np.testing.assert_allclose(lr_ax.get_lines()[0].get_ydata(), log["lr"], rtol=1e-12)
    assert save(fig, tmp_path / "loss.png").read_bytes().startswith(PNG_MAGIC)


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
    (["RUN", "xyz"], "character 'x' is not in the vocabulary"),
    (["RUN", "abc", "--out", "att.svg"], "ending in .png"),
])
def test_attention_command_errors_are_one_line(cli, run_dir, tmp_path, args, message):
    result = cli("attention", *[run_dir if a == "RUN" else a for a in args], cwd=tmp_path)
    assert result.returncode in (1, 2)
    assert message in result.stderr and "Traceback" not in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1
