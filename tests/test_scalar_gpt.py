"""The GPT on Values: finite differences, fused vs atomic builds, causality, golden losses."""

import math

import numpy as np
import pytest

from microgpt.config import GPTConfig, TrainConfig
from microgpt.data import load_data
from microgpt.optim import Adam
from microgpt.params import Params
from microgpt.scalar_gpt import ScalarBackend, ScalarGPT, param_labels
from microgpt.train import train_steps

from tests.conftest import REPO_ROOT

BATCH = [[6, 0, 3, 3, 1, 6], [6, 2, 5, 6], [6, 4, 4, 4, 4, 4, 4]]  # tiny vocab 7, BOS = 6


def loss_of(params, batch, atomic=False):
    return ScalarGPT(params, atomic=atomic).loss(batch).data


def test_gradients_match_finite_differences(tiny_params):
    """Eight random entries of every parameter tensor against central differences (h = 1e-5).

    (The Numba tests check every entry of both engines against each other at 1e-9.)
    """
    batch = BATCH[:2]
    _, grads = ScalarBackend().loss_and_grads(tiny_params, batch)
    h = 1e-5
    rng = np.random.default_rng(1)
    indices = [tiny_params.offsets[name] + i for name in tiny_params
               for i in rng.choice(tiny_params[name].size, size=8, replace=False)]
    for i in indices:
        original = tiny_params.flat[i]
        tiny_params.flat[i] = original + h
        up = loss_of(tiny_params, batch)
        tiny_params.flat[i] = original - h
        down = loss_of(tiny_params, batch)
        tiny_params.flat[i] = original
        numeric = (up - down) / (2 * h)
        assert grads[i] == pytest.approx(numeric, rel=1e-5, abs=1e-8), param_labels(tiny_params.config)[i]


def test_every_parameter_tensor_gets_a_gradient(tiny_params):
    """A dropped path (say, to attn_wk or wpe) shows up as a tensor with zero gradient."""
    _, grads = ScalarBackend().loss_and_grads(tiny_params, BATCH)
    for name in tiny_params:
        assert np.abs(tiny_params.view_of(grads, name)).max() > 1e-6, name


def test_fused_and_atomic_builds_agree(tiny_params):
    loss_f, grads_f = ScalarBackend(atomic=False).loss_and_grads(tiny_params, BATCH)
    loss_a, grads_a = ScalarBackend(atomic=True).loss_and_grads(tiny_params, BATCH)
    assert abs(loss_f - loss_a) <= 1e-12
    np.testing.assert_allclose(grads_f, grads_a, rtol=1e-12, atol=1e-14)


def test_fused_build_has_far_fewer_nodes(tiny_params):
    fused = ScalarGPT(tiny_params).loss(BATCH[:1]).topological_order()
    atomic = ScalarGPT(tiny_params, atomic=True).loss(BATCH[:1]).topological_order()
    assert len(fused) * 3 < len(atomic)


def test_batch_loss_is_mean_over_all_target_tokens(tiny_params):
    """Pooling documents weights each by its number of targets."""
    model = ScalarGPT(tiny_params)
    per_doc = [model.document_losses(doc) for doc in BATCH]
    flat = [l.data for losses in per_doc for l in losses]
    assert loss_of(tiny_params, BATCH) == pytest.approx(sum(flat) / len(flat), rel=1e-13)
    assert len(flat) == sum(len(doc) - 1 for doc in BATCH)


def test_initial_loss_is_near_uniform(tiny_config):
    """Small init: predictions are nearly uniform, so the loss is close to ln V."""
    params = Params.init(tiny_config, np.random.default_rng(0), std=0.01)
    assert loss_of(params, BATCH) == pytest.approx(math.log(tiny_config.vocab_size), abs=0.05)


def test_earlier_logits_do_not_see_later_tokens(tiny_params):
    """Causality: changing the token at position 3 leaves the logits at positions 0..2 alone."""
    def logits(tokens):
        decoder = ScalarBackend().decoder(tiny_params)
        return [decoder.step(t) for t in tokens]

    a = logits([6, 0, 3, 3, 1])
    b = logits([6, 0, 3, 5, 2])
    for pos in range(3):
        np.testing.assert_allclose(a[pos], b[pos], rtol=1e-15)
    assert np.abs(a[3] - b[3]).max() > 1e-6


def test_decoder_logits_give_the_training_loss(tiny_params):
    """Cross-entropy of the decoder's logits equals the loss the training path computes."""
    doc = BATCH[0]
    decoder = ScalarBackend().decoder(tiny_params)
    total = 0.0
    for pos in range(len(doc) - 1):
        logits = decoder.step(doc[pos])
        log_probs = logits - logits.max() - np.log(np.exp(logits - logits.max()).sum())
        total -= log_probs[doc[pos + 1]]
    assert total / (len(doc) - 1) == pytest.approx(loss_of(tiny_params, [doc]), rel=1e-13)


def test_decoder_refuses_to_run_past_the_block(tiny_params):
    decoder = ScalarBackend().decoder(tiny_params)
    for _ in range(tiny_params.config.block_size):
        decoder.step(0)
    with pytest.raises(IndexError, match="block_size"):
        decoder.step(0)


def test_one_token_document_and_zero_vector_rmsnorm(tiny_config):
    """T = 1 (just BOS -> BOS) works, and all-zero weights give a finite loss (rmsnorm's eps)."""
    params = Params(tiny_config)  # all zeros: every rmsnorm sees a zero vector
    loss, grads = ScalarBackend().loss_and_grads(params, [[6, 6]])
    assert loss == pytest.approx(math.log(tiny_config.vocab_size), rel=1e-12)
    assert np.isfinite(grads).all()


def test_deep_wide_model_backpropagates():
    """4 layers × n_embd 64: a deep graph, no RecursionError, finite gradients."""
    config = GPTConfig(vocab_size=27, n_embd=64, n_head=4, n_layer=4, block_size=16)
    params = Params.init(config, np.random.default_rng(0))
    loss, grads = ScalarBackend().loss_and_grads(params, [[26, 0, 1, 2, 3, 26]])
    assert math.isfinite(loss) and np.isfinite(grads).all()
    assert np.abs(grads).max() > 0


def test_golden_losses_of_the_default_run():
    """The first five losses of `microgpt train` with every default, pinned to 1e-12.

    These move only if the architecture, initialisation, data order or optimizer
    changes; if you changed one on purpose, update them and say why.
    """
    data = load_data(f"{REPO_ROOT}/microgpt/assets/names.txt", block_size=16, mode="lines", val_fraction=0.0)
    config, train_config = GPTConfig(data.tokenizer.vocab_size), TrainConfig()
    params = Params.init(config, np.random.default_rng(train_config.seed), train_config.init_std)
    optimizer = Adam(params.size, train_config.beta1, train_config.beta2, train_config.eps)
    steps = train_steps(ScalarBackend(), params, optimizer, data, train_config)
    losses = [next(steps).loss for _ in range(5)]
    golden = [3.4986614358328283, 3.38793311517646, 3.2359204741279948,
              3.2452242294869853, 3.204119541210442]
    np.testing.assert_allclose(losses, golden, rtol=1e-12)
    assert float(params.flat.sum()) == pytest.approx(-2.4129067359923564, rel=1e-12)
