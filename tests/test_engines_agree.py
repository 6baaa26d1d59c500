"""Every architecture on both engines: the scalar GPT and the Numba backend compute the same model.

For any combination of components (norm, its weights and places, MLP, positions,
window, biases, tying, dropout, init) the loss and every gradient agree between the
engines to relative 1e-9, and each agrees with central finite differences; decoding
through the KV cache equals the full forward; and whole training runs give the same
losses on both engines, for each preset and each single swap from microgpt.
"""

from dataclasses import replace

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from microgpt.config import PRESETS, SWAPS, GPTConfig, TrainConfig
from microgpt.data import documents_from_strings
from microgpt.dropout import draw_masks
from microgpt.gradcheck import ENGINE_RTOL, gradcheck, random_batch, relative_difference
from microgpt.numba_gpt import NumbaBackend
from microgpt.optim import Adam
from microgpt.params import Params
from microgpt.scalar_gpt import ScalarBackend
from microgpt.train import train_steps
from tests.component_cases import component_configs, perturbed_params
from tests.conftest import NAMES

ARCHITECTURES = {"preset microgpt": PRESETS["microgpt"], "preset gpt2": PRESETS["gpt2"], **SWAPS}


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(component_configs(), st.integers(0, 2**32 - 1), st.integers(1, 3))
def test_both_engines_and_finite_differences_agree_for_every_component(config, seed, batch_size):
    """Loss and every gradient tensor: engines to relative 1e-9, each engine to central differences
    (ReLU kinks retried at smaller h, as `gradcheck` does); dropout with the masks the training loop draws."""
    params = perturbed_params(config, seed)
    rng = np.random.default_rng(seed + 1)
    batch = random_batch(config, rng, batch_size)
    masks = draw_masks(rng, [len(tokens) - 1 for tokens in batch], config)
    report = gradcheck(params, batch, fd_per_tensor=6, masks=masks)
    assert report.loss_ok, (report.loss_scalar, report.loss_numba)
    for t in report.tensors:
        assert t.engines_rel <= ENGINE_RTOL, t
        assert t.fd_violation <= 1.0, t


def test_the_key_bias_gradient_is_zero_and_the_engines_still_agree():
    """q·b_k shifts every score of a query alike, which softmax ignores: the key bias's exact
    gradient is 0, and both engines give only rounding noise there, well below the rest."""
    config = GPTConfig(vocab_size=6, n_embd=8, n_head=2, n_layer=1, block_size=5, bias=True)
    params = perturbed_params(config, 3)
    batch = random_batch(config, np.random.default_rng(4), 3)
    _, grads = NumbaBackend().loss_and_grads(params, batch)
    key_bias = params.view_of(grads, "layer0.attn_bk")
    assert np.abs(key_bias).max() <= 1e-14 * np.abs(grads).max()
    assert np.abs(params.view_of(grads, "layer0.attn_bq")).max() >= 1e-4 * np.abs(grads).max()
    assert gradcheck(params, batch, fd_per_tensor=4).ok


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(component_configs(), st.integers(0, 2**32 - 1))
def test_decoding_through_the_kv_cache_equals_the_full_forward(config, seed):
    """Every position's logits from the Numba decoder (window included) equal the batched forward's,
    and the scalar decoder's; a model with dropout decodes without it."""
    params = perturbed_params(config, seed)
    tokens = np.random.default_rng(seed).integers(0, config.vocab_size, size=config.block_size + 1).tolist()
    backend = NumbaBackend()
    backend.loss(params, [tokens])
    full = backend.model(params).workspace().logits[:config.block_size]
    numba, scalar = NumbaBackend().decoder(params), ScalarBackend().decoder(params)
    for pos, token in enumerate(tokens[:-1]):
        logits = numba.step(token)
        assert relative_difference(logits, full[pos]) <= 1e-13, pos
        assert relative_difference(logits, scalar.step(token)) <= ENGINE_RTOL, pos


def test_the_window_reaches_the_decoder():
    """With attn_window 2 the logits at position 3 do not depend on the token at position 0
    (in the decoder as in the batch), and with full attention they do."""
    for window, depends in ((2, False), (0, True)):
        config = GPTConfig(vocab_size=6, n_embd=8, n_head=2, n_layer=1, block_size=6, attn_window=window)
        params = perturbed_params(config, 5)
        last = []
        for first in (0, 4):
            decoder = NumbaBackend().decoder(params)
            last.append([decoder.step(token) for token in (first, 1, 2, 3)][-1])
        assert np.array_equal(last[0], last[1]) is not depends


def names_run(backend, config, steps=30, seed=7):
    """The losses of `steps` training steps at batch 1 on the names, and the final weights."""
    data = documents_from_strings(NAMES, config.block_size)
    config = replace(config, vocab_size=data.tokenizer.vocab_size)
    params = Params.init(config, np.random.default_rng(seed))
    train_config = TrainConfig(steps=steps, batch_size=1, seed=seed)
    losses = [r.loss for r in train_steps(backend, params, Adam(params.size), data, train_config)]
    return np.array(losses), params.flat


@pytest.mark.parametrize("name", ARCHITECTURES)
def test_thirty_steps_give_the_same_losses_on_both_engines(name):
    """Whole runs, with every step's dropout masks drawn by the loop: the same losses to 1e-9."""
    config = GPTConfig(vocab_size=1, n_embd=8, n_head=2, n_layer=1, block_size=8, **ARCHITECTURES[name])
    scalar_losses, scalar_flat = names_run(ScalarBackend(), config)
    numba_losses, numba_flat = names_run(NumbaBackend(), config)
    assert np.abs(scalar_losses - numba_losses).max() <= 1e-9
    assert relative_difference(numba_flat, scalar_flat) <= 1e-9
    assert scalar_losses[-10:].mean() < scalar_losses[:5].mean()      # the run learned something


@pytest.mark.parametrize("name", ARCHITECTURES)
def test_float32_gradients_match_float64_for_each_architecture(name):
    """float32 loss and every gradient tensor within 2e-5 of float64, relative (the bound of
    tests/test_numba_gpt.py), dropout masks included. The key bias's exact gradient is 0
    (see above): there both hold rounding noise, float32's 2e-5 below the largest gradient."""
    config = GPTConfig(vocab_size=7, n_embd=8, n_head=2, n_layer=2, block_size=6, **ARCHITECTURES[name])
    params = perturbed_params(config, 2)
    rng = np.random.default_rng(3)
    batch = random_batch(config, rng, 4)
    masks = draw_masks(rng, [len(tokens) - 1 for tokens in batch], config)
    loss64, grads64 = NumbaBackend("float64").loss_and_grads(params, batch, masks)
    loss32, grads32 = NumbaBackend("float32").loss_and_grads(params, batch, masks)
    assert abs(loss32 - loss64) <= 2e-5 * abs(loss64)
    for tensor in params:
        g32, g64 = params.view_of(grads32, tensor), params.view_of(grads64, tensor)
        if tensor.endswith("attn_bk"):
            assert np.abs(g32).max() <= 2e-5 * np.abs(grads64).max()
        else:
            assert relative_difference(g32, g64) <= 2e-5, tensor


def ignore(*arrays):
    """A backward that adds nothing: the bug of a gradient left out."""


@pytest.mark.parametrize("components, name, broken", [
    (dict(bias=True), "bias_backward", ignore),
    (dict(dropout=0.25), "dropout_backward", ignore),
    (dict(norm="layernorm", norm_weights=True), "layernorm_backward",
     lambda dx, dout, x, mean, rstd, g=None, dg=None, db=None: None),
])
def test_the_comparison_catches_a_gradient_the_numba_glue_leaves_out(monkeypatch, components, name, broken):
    """With one backward of the Numba model broken, the engines disagree and finite differences say so."""
    from microgpt import numba_gpt
    config = GPTConfig(vocab_size=6, n_embd=8, n_head=2, n_layer=1, block_size=5, **components)
    params = perturbed_params(config, 1)
    rng = np.random.default_rng(2)
    batch = random_batch(config, rng, 2)
    masks = draw_masks(rng, [len(tokens) - 1 for tokens in batch], config)
    assert gradcheck(params, batch, fd_per_tensor=4, masks=masks).ok
    monkeypatch.setattr(numba_gpt, name, broken)
    report = gradcheck(params, batch, fd_per_tensor=4, masks=masks)
    assert not report.ok
    assert max(t.engines_rel for t in report.tensors) > 1e-3


def test_the_ablation_script_prints_a_row_per_architecture(capsys):
    """benchmarks/ablation.py on a tiny budget: each asked architecture's parameter count, its mean
    validation loss, and the difference from microgpt's mean."""
    from benchmarks import ablation
    from microgpt.params import count_parameters
    ablation.main(["--steps", "3", "--seeds", "2", "--eval-tokens", "200", "--only", "microgpt", "gpt2", "mlp swiglu"])
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].startswith("machine: ") and any(line.startswith("model: n_embd 16") for line in lines)
    rows = {line[:16].strip(): line[16:].split() for line in lines[-3:]}
    assert list(rows) == ["microgpt", "gpt2", "mlp swiglu"]
    baseline = float(rows["microgpt"][1])
    for name, cells in rows.items():
        config = replace(GPTConfig(vocab_size=27), **ablation.components(name))
        assert int(cells[0].replace(",", "")) == count_parameters(config)
        if name != "microgpt":
            assert float(cells[5]) == pytest.approx(float(cells[1]) - baseline, abs=2e-4)
