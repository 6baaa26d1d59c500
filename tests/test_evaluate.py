"""Evaluation: the loss over many sequences is the mean over all their predictions."""

import math

import numpy as np
import pytest

from microgpt.evaluate import EVAL_BATCH, bits_per_token, evaluate, perplexity
from microgpt.gradcheck import random_batch
from microgpt.scalar_gpt import ScalarBackend


def test_evaluate_is_the_prediction_weighted_mean_over_batches(tiny_params, tiny_config):
    sequences = random_batch(tiny_config, np.random.default_rng(0), EVAL_BATCH + 5)
    backend = ScalarBackend()
    per_sequence = [(backend.loss(tiny_params, [s]), len(s) - 1) for s in sequences]
    expected = sum(loss * n for loss, n in per_sequence) / sum(n for _, n in per_sequence)
    assert evaluate(backend, tiny_params, sequences) == pytest.approx(expected, rel=1e-13)


def test_forward_only_loss_equals_the_training_loss(tiny_params, tiny_config):
    batch = random_batch(tiny_config, np.random.default_rng(1), 3)
    backend = ScalarBackend()
    assert backend.loss(tiny_params, batch) == backend.loss_and_grads(tiny_params, batch)[0]


def test_perplexity_and_bits():
    assert perplexity(math.log(27)) == pytest.approx(27, rel=1e-14)
    assert bits_per_token(math.log(2) * 1.5) == pytest.approx(1.5, rel=1e-15)
    assert perplexity(1e4) == math.inf
