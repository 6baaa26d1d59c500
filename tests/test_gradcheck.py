"""The gradient check itself: it passes on the real engines, and it fails when it should."""

import numpy as np

import microgpt.gradcheck as gc
from microgpt.cli import main
from microgpt.config import GPTConfig
from microgpt.numba_gpt import flat_loss
from microgpt.scalar_gpt import ScalarBackend


def test_gradcheck_passes_on_a_small_model(tiny_config):
    params, batch = gc.random_setup(tiny_config, batch_size=3, seed=1, init_std=0.3)
    report = gc.gradcheck(params, batch)
    assert report.ok, gc.format_report(report)
    assert [t.name for t in report.tensors] == list(params)
    assert all(t.checked == t.size for t in report.tensors)
    assert "gradcheck passed" in gc.format_report(report)


def test_a_wrong_gradient_is_caught(tiny_config):
    """Tiny errors in one tensor break the engine tolerance; larger ones the fd tolerance."""
    params, batch = gc.random_setup(tiny_config, batch_size=2, seed=2, init_std=0.3)
    _, grads = ScalarBackend().loss_and_grads(params, batch)
    fd = gc.finite_difference_grads(flat_loss(params, batch), params.flat.copy(), np.arange(params.size))
    assert all(t.ok for t in gc.compare_grads(params, grads, grads, fd))

    slightly_off = grads.copy()
    params.view_of(slightly_off, "layer1.attn_wk")[...] *= 1 + 1e-7
    bad = [t.name for t in gc.compare_grads(params, grads, slightly_off, fd) if not t.ok]
    assert bad == ["layer1.attn_wk"]

    dropped = grads.copy()
    params.view_of(dropped, "layer0.attn_wv")[0, 0] = 0.0
    report = {t.name: t for t in gc.compare_grads(params, dropped, dropped, fd)}
    assert report["layer0.attn_wv"].fd_violation > 1.0
    assert report["layer0.attn_wq"].fd_violation <= 1.0


def test_fd_indices_sample_every_tensor(tiny_config):
    params, _ = gc.random_setup(tiny_config, 1, 0)
    indices = gc.fd_indices(params, np.random.default_rng(0), per_tensor=3)
    assert len(indices) == 3 * len(params.shapes)
    hit = {name for name in params for i in indices
           if params.offsets[name] <= i < params.offsets[name] + params[name].size}
    assert hit == set(params.shapes)


def test_random_batch_has_documents_longer_than_the_block():
    config = GPTConfig(vocab_size=5, n_embd=8, n_head=2, n_layer=1, block_size=4)
    batch = gc.random_batch(config, np.random.default_rng(0), 40)
    assert all(2 <= len(doc) <= 5 and doc[0] == 4 for doc in batch)
    assert any(len(doc) == 5 and doc[-1] != 4 for doc in batch)      # cut: no closing BOS


def test_gradcheck_command(cli):
    out = cli("gradcheck", "--n-embd", "8", "--n-head", "2", "--n-layer", "2", "--block-size", "6",
              "--vocab-size", "7", "--batch-size", "2")
    assert out.returncode == 0, out.stderr
    assert "gradcheck passed" in out.stdout and "layer1.mlp_fc2" in out.stdout


def test_gradcheck_command_exits_1_when_a_tolerance_breaks(monkeypatch, capsys):
    monkeypatch.setattr(gc, "ENGINE_RTOL", 0.0)   # no two float computations are that equal
    code = main(["gradcheck", "--n-embd", "8", "--n-head", "2", "--block-size", "6", "--vocab-size", "7"])
    assert code == 1
    assert "gradcheck FAILED" in capsys.readouterr().out


def test_gradcheck_command_rejects_bad_options(cli):
    assert cli("gradcheck", "--vocab-size", "1").returncode == 2
    out = cli("gradcheck", "--n-embd", "10", "--n-head", "4")
    assert out.returncode == 2 and "divisible" in out.stderr
