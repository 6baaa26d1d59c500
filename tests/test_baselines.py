"""The yardsticks: uniform, unigram and bigram losses, checked against values worked out by hand."""

import math

import numpy as np
import pytest

from microgpt.baselines import baseline_losses, fit_counts
from microgpt.data import documents_from_strings, load_data


def test_counts_of_documents_include_the_start_and_end_pairs():
    docs = documents_from_strings(["ab", "b"], 8)                 # a=0, b=1, BOS=2
    unigram, bigram = fit_counts(docs)
    # [BOS a b BOS] and [BOS b BOS]: targets a, b, BOS, b, BOS
    assert unigram.tolist() == [1, 2, 2]
    assert bigram[2].tolist() == [1, 1, 0] and bigram[0].tolist() == [0, 1, 0] and bigram[1].tolist() == [0, 0, 2]


def test_losses_with_add_one_smoothing_by_hand(tmp_path):
    path = tmp_path / "t.txt"
    path.write_text("abab\n\nab" * 30)
    text = load_data(path, 4, mode="text", val_fraction=0.0)
    sample = [np.array([1, 2, 1])]                                 # "ab" as ids: \n=0, a=1, b=2; targets b, a
    unigram, bigram = fit_counts(text)
    V = 3
    p_b = (unigram[2] + 1) / (unigram.sum() + V)
    p_a = (unigram[1] + 1) / (unigram.sum() + V)
    p_b_after_a = (bigram[1, 2] + 1) / (bigram[1].sum() + V)
    p_a_after_b = (bigram[2, 1] + 1) / (bigram[2].sum() + V)
    losses = baseline_losses(text, sample)
    assert losses["uniform"] == pytest.approx(math.log(3), rel=1e-15)
    assert losses["unigram"] == pytest.approx(-(math.log(p_b) + math.log(p_a)) / 2, rel=1e-13)
    assert losses["bigram"] == pytest.approx(-(math.log(p_b_after_a) + math.log(p_a_after_b)) / 2, rel=1e-13)


def test_only_the_training_split_is_counted():
    docs = documents_from_strings([f"a{i % 3}" for i in range(100)], 8, val_fraction=0.1)
    unigram, _ = fit_counts(docs)
    assert unigram.sum() == docs.lengths[docs.train_docs].sum() + docs.train_docs.size


def test_on_names_the_yardsticks_fall_in_order():
    from tests.conftest import REPO_ROOT
    docs = load_data(f"{REPO_ROOT}/data/names.txt", 16)
    losses = baseline_losses(docs, docs.eval_sample("val", 4096))
    assert losses["uniform"] > losses["unigram"] > losses["bigram"]
    assert losses["uniform"] == pytest.approx(math.log(27), rel=1e-15)
