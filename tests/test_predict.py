"""`microgpt predict`: next-token probabilities, the same on both engines, as a table and a chart."""

import math

import numpy as np
import pytest

from microgpt.backend import get_backend
from microgpt.checkpoint import load_checkpoint
from microgpt.generate import next_token_probs as probabilities
from microgpt.predict import NextToken, format_table, next_token_distribution
from microgpt.scalar_gpt import KVCache, ScalarGPT
from microgpt.viz.plots import prediction_figure
from tests.runhelpers import assert_clean_error, run_main, small_run

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
    """A tiny trained run: vocabulary 'abehilmoprsv' + BOS (13 tokens), block_size 10."""
    return small_run(tmp_path_factory.mktemp("predict"))


def predict(run_dir, *args):
    code, out, err = run_main("predict", run_dir, *args)
    assert code == 0, err
    return out


def table_rows(out):
    """[(rank, [(token, probability) per column])] from the printed table."""
    rows = []
    for line in out.splitlines():
        parts = line.split()
        if parts and parts[0].isdigit():
            cells = parts[1:]
            rows.append((int(parts[0]), [(cells[i], float(cells[i + 1])) for i in range(0, len(cells), 2)]))
    return rows


def test_probabilities_are_the_softmax_at_a_temperature():
    logits = np.array([1.0, 2.0, 4.0])
    expected = np.exp(logits) / np.exp(logits).sum()
    np.testing.assert_allclose(probabilities(logits), expected, rtol=1e-15)
    np.testing.assert_allclose(probabilities(logits, 2.0), np.exp(logits / 2) / np.exp(logits / 2).sum(), rtol=1e-15)
    assert probabilities([1000.0, 0.0]).tolist() == [1.0, math.exp(-1000.0)]  # no overflow


def test_first_distribution_is_the_softmax_of_the_models_logits(run_dir):
    checkpoint = load_checkpoint(run_dir)
    tokenizer, params = checkpoint.tokenizer, checkpoint.params
    [after_em] = next_token_distribution(get_backend("scalar"), params, tokenizer, "em")
    model, cache = ScalarGPT(params), KVCache(params.config.n_layer)
    for pos, token in enumerate([tokenizer.bos] + tokenizer.encode("em")):
        logits = np.array([l.data for l in model.forward_token(token, pos, cache)])
    expected = np.exp(logits - logits.max())
    np.testing.assert_allclose(after_em.probs, expected / expected.sum(), rtol=1e-14)
    assert after_em.context == "em" and after_em.sampled is None


def test_both_engines_give_the_same_numbers(run_dir):
    checkpoint = load_checkpoint(run_dir)
    found = {name: next_token_distribution(get_backend(name), checkpoint.params, checkpoint.tokenizer,
                                           "a", steps=4, seed=3)
             for name in ("scalar", "numba")}
    assert [p.context for p in found["scalar"]] == [p.context for p in found["numba"]]
    for s, n in zip(found["scalar"], found["numba"]):
        np.testing.assert_allclose(s.probs, n.probs, rtol=1e-12, atol=1e-15)
    assert predict(run_dir, "a", "--steps", 4, "--seed", 3, "--backend", "numba",
                   "--out", run_dir / "n.png").replace("numba", "X") == \
        predict(run_dir, "a", "--steps", 4, "--seed", 3, "--out", run_dir / "n.png").replace("scalar", "X")


def test_steps_feed_back_what_was_drawn(run_dir):
    checkpoint = load_checkpoint(run_dir)
    found = next_token_distribution(get_backend("scalar"), checkpoint.params, checkpoint.tokenizer,
                                    "", steps=9, seed=0)
    bos = checkpoint.tokenizer.bos
    for before, after in zip(found, found[1:]):   # each context is the last one plus the drawn token
        assert after.context == before.context + checkpoint.tokenizer.decode([before.sampled])
        assert before.sampled != bos
    # it stops because BOS was drawn, or after 9 draws
    assert found[-1].sampled == bos or len(found) == 10


def test_past_the_context_the_window_slides(run_dir):
    """block_size 10: BOS + 'isabellaisabella' is 17 tokens; the model reads the last 10 and goes on."""
    out = predict(run_dir, "isabellaisabella", "--steps", 5, "--seed", 3, "--out", run_dir / "full.png")
    assert "after 'isabellaisabella'" in out
    drew = next(line for line in out.splitlines() if line.startswith("drew "))
    assert "stopped after" not in drew or "the name ended (BOS)" in drew
    scalar = next_token_distribution(get_backend("scalar"), *load(run_dir), "isabellaisabella", steps=5, seed=3)
    numba = next_token_distribution(get_backend("numba"), *load(run_dir), "isabellaisabella", steps=5, seed=3)
    for a, b in zip(scalar, numba):
        np.testing.assert_allclose(b.probs, a.probs, rtol=1e-12, atol=1e-15)


def load(run_dir):
    checkpoint = load_checkpoint(run_dir)
    return checkpoint.params, checkpoint.tokenizer


def test_table_lists_every_token_sorted_and_summing_to_one(run_dir):
    out = predict(run_dir, "mi", "--out", run_dir / "p.png")
    rows = table_rows(out)
    assert [rank for rank, _ in rows] == list(range(1, 14))
    tokens = [cells[0][0] for _, cells in rows]
    assert sorted(tokens) == sorted(list("abehilmoprsv") + ["BOS"])
    probs = [cells[0][1] for _, cells in rows]
    assert probs == sorted(probs, reverse=True)
    assert sum(probs) == pytest.approx(1.0, abs=13 * 5e-5)
    assert (run_dir / "p.png").read_bytes().startswith(PNG_MAGIC)


def test_temperature_sharpens_the_distribution(run_dir):
    cold = table_rows(predict(run_dir, "mi", "--temperature", 0.25, "--out", run_dir / "t.png"))
    warm = table_rows(predict(run_dir, "mi", "--out", run_dir / "t.png"))
    assert cold[0][1][0][0] == warm[0][1][0][0]          # the same favourite, far more likely
    assert cold[0][1][0][1] > warm[0][1][0][1]


def test_chart_has_one_panel_per_step_with_the_drawn_token_marked():
    names = ["a", "b", "BOS"]
    predictions = [NextToken("", np.array([0.5, 0.3, 0.2]), sampled=1), NextToken("b", np.array([0.1, 0.1, 0.8]))]
    fig = prediction_figure(predictions, names)
    first, second = fig.axes
    assert [bar.get_height() for bar in first.patches] == [0.5, 0.3, 0.2]
    assert [bar.get_height() for bar in second.patches] == [0.1, 0.1, 0.8]
    orange = [i for i, bar in enumerate(first.patches) if bar.get_facecolor()[:3] != first.patches[0].get_facecolor()[:3]]
    assert orange == [1]
    assert first.get_title(loc="left") == "after '': drew 'b'" and second.get_title(loc="left") == "after 'b'"
    assert [t.get_text() for t in first.get_xticklabels()] == names


def test_format_table_columns_follow_the_steps():
    class Chars:  # the two things format_table needs from a tokenizer
        chars, bos = ["x", " "], 2
    predictions = [NextToken("", np.array([0.2, 0.5, 0.3]), 1), NextToken(" ", np.array([0.6, 0.1, 0.3]))]
    assert format_table(predictions, Chars()).splitlines() == [
        "rank  after ''      after ' '",
        "   1  ␣   0.5000    x   0.6000",
        "   2  BOS 0.3000    BOS 0.3000",
        "   3  x   0.2000    ␣   0.1000",
    ]


@pytest.mark.parametrize("args, message", [
    (["eMma"], "the prompt has 1 character(s) the model never saw: 'M'"),
    (["em", "--backend", "gpu"], "invalid choice: 'gpu'"),
    (["em", "--out", "p.svg"], "give a file name ending in .png"),
    (["em", "--steps", "-1"], "out of range"),
])
def test_bad_input_is_one_line(run_dir, args, message):
    code, out, err = run_main("predict", run_dir, *args)
    assert_clean_error(code, err, command="predict")
    assert message in err


def test_a_missing_run_is_one_line(tmp_path):
    code, out, err = run_main("predict", tmp_path / "nowhere", "em")
    assert_clean_error(code, err, command="predict", exit_code=1)
