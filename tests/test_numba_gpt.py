"""The Numba backend against the scalar engine: gradients, whole runs, samples, checkpoints."""

import subprocess
import sys

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from microgpt.backend import get_backend
from microgpt.checkpoint import Checkpoint, load_checkpoint, save_checkpoint
from microgpt.config import GPTConfig, TrainConfig
from microgpt.data import documents_from_strings
from microgpt.generate import generate_many
from microgpt.gradcheck import ENGINE_RTOL, finite_difference_grads, gradcheck, random_batch, relative_difference
from microgpt.numba_gpt import NumbaBackend, flat_loss, pack_batch, shard_rows
from microgpt.optim import Adam
from microgpt.params import Params
from microgpt.scalar_gpt import ScalarBackend
from microgpt.train import train_steps
from tests.conftest import NAMES


@st.composite
def configs_and_batches(draw):
    n_head = draw(st.sampled_from([1, 2, 4]))
    n_embd = n_head * draw(st.integers(8 // n_head, 32 // n_head))
    config = GPTConfig(vocab_size=draw(st.integers(2, 12)), n_embd=n_embd, n_head=n_head,
                       n_layer=draw(st.integers(1, 3)), block_size=draw(st.integers(4, 32)))
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    params = Params.init(config, rng, std=draw(st.sampled_from([0.08, 0.3])))
    return params, random_batch(config, rng, draw(st.integers(1, 4)))


@settings(max_examples=12, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(configs_and_batches())
def test_both_engines_and_finite_differences_agree(setup):
    """Loss and every gradient: engines to relative 1e-9, each engine to central differences."""
    params, batch = setup
    report = gradcheck(params, batch, fd_per_tensor=4)
    assert report.loss_ok, (report.loss_scalar, report.loss_numba)
    for t in report.tensors:
        assert t.engines_rel <= ENGINE_RTOL, t
        assert t.fd_violation <= 1.0, t


def test_loss_is_the_mean_over_real_target_tokens(tiny_params):
    """A packed batch of two documents weighs each by its number of targets, not 1/2 each."""
    backend = NumbaBackend()
    short, long = [6, 1, 6], [6, 2, 3, 4, 5, 0, 6]
    loss_short, grads_short = backend.loss_and_grads(tiny_params, [short])
    loss_long, grads_long = backend.loss_and_grads(tiny_params, [long])
    loss, grads = backend.loss_and_grads(tiny_params, [short, long])
    assert abs(loss - (2 * loss_short + 6 * loss_long) / 8) < 1e-14
    assert relative_difference(grads, (2 * grads_short + 6 * grads_long) / 8) < 1e-13


@pytest.mark.parametrize("kind", [list, np.uint8, np.uint16, np.int64])
def test_pack_batch_layout_and_errors(kind):
    """Sequences as lists, or as 1-D integer arrays (windows of a token stream), pack the same way."""
    sequences = [[6, 1, 6], [6, 2, 3, 6]]
    batch = pack_batch([seq if kind is list else np.array(seq, dtype=kind) for seq in sequences], block_size=4)
    assert batch.tokens.tolist() == [6, 1, 6, 2, 3]
    assert batch.targets.tolist() == [1, 6, 2, 3, 6]
    assert batch.positions.tolist() == [0, 1, 0, 1, 2]
    assert batch.doc_starts.tolist() == [0, 2, 5] and batch.longest == 3
    with pytest.raises(ValueError, match="block_size"):
        pack_batch([[6, 1, 2, 3, 4, 6]], block_size=4)
    with pytest.raises(ValueError):
        pack_batch([[6]], block_size=4)


def batch_logits(params, doc):
    """The logits (T, V) of a batched forward over one document."""
    backend = NumbaBackend()
    backend.loss(params, [doc])
    return backend.model(params).workspace().logits[:len(doc) - 1]


def test_decoder_logits_equal_a_full_forward(tiny_params):
    doc = [6, 0, 3, 3, 1, 2, 6]
    logits = batch_logits(tiny_params, doc)
    decoder = NumbaBackend().decoder(tiny_params)
    for pos, token in enumerate(doc[:-1]):
        assert relative_difference(decoder.step(token), logits[pos]) < 1e-13
    with pytest.raises(IndexError):
        decoder.step(0)


def test_a_reset_decoder_starts_again_at_position_0(tiny_params):
    decoder = NumbaBackend().decoder(tiny_params)
    first = [decoder.step(token) for token in (6, 2, 3)]
    decoder.reset()
    again = [decoder.step(token) for token in (6, 2, 3)]
    assert all(np.array_equal(a, b) for a, b in zip(first, again))


def test_decoders_of_both_engines_agree(tiny_params):
    scalar, numba = ScalarBackend().decoder(tiny_params), NumbaBackend().decoder(tiny_params)
    for token in [6, 5, 4, 0, 2]:
        assert relative_difference(numba.step(token), scalar.step(token)) < 1e-12


def train_run(backend_name, config, train_config, data, steps, params=None, optimizer=None, start=0):
    params = params if params is not None else Params.init(config, np.random.default_rng(train_config.seed))
    optimizer = optimizer or Adam(params.size, train_config.beta1, train_config.beta2, train_config.eps)
    losses = [r.loss for r in train_steps(get_backend(backend_name), params, optimizer, data,
                                          train_config, start, start + steps)]
    return np.array(losses), params, optimizer


def names_setup(block_size=16):
    data = documents_from_strings(NAMES, block_size)
    config = GPTConfig(data.tokenizer.vocab_size, n_embd=16, n_head=4, n_layer=1, block_size=block_size)
    return data.tokenizer, config, data


def test_fifty_steps_give_the_same_losses_and_names_on_both_engines():
    tokenizer, config, documents = names_setup()
    train_config = TrainConfig(steps=50, seed=3)
    scalar_losses, scalar_params, _ = train_run("scalar", config, train_config, documents, 50)
    numba_losses, numba_params, _ = train_run("numba", config, train_config, documents, 50)
    assert np.abs(scalar_losses - numba_losses).max() <= 1e-9
    assert scalar_losses[-10:].mean() < scalar_losses[:10].mean()      # it learned something
    assert relative_difference(numba_params.flat, scalar_params.flat) < 1e-9
    names = {name: generate_many(get_backend(name), params, tokenizer, 8, seed=5)
             for name, params in (("scalar", scalar_params), ("numba", numba_params))}
    assert names["scalar"] == names["numba"]


@pytest.mark.parametrize("writer, reader", [("numba", "scalar"), ("scalar", "numba")])
def test_a_checkpoint_from_one_backend_samples_and_trains_in_the_other(tmp_path, writer, reader):
    tokenizer, config, documents = names_setup()
    train_config = TrainConfig(steps=12, seed=1)
    _, params, optimizer = train_run(writer, config, train_config, documents, 6)
    save_checkpoint(tmp_path, Checkpoint(params, tokenizer, train_config, 6, optimizer, backend=writer))
    expected_names = generate_many(get_backend(writer), params, tokenizer, 5, seed=2)
    expected_losses, _, _ = train_run(writer, config, train_config, documents, 6, params.copy(),
                                      _copy_adam(optimizer), start=6)

    ckpt = load_checkpoint(tmp_path)
    assert generate_many(get_backend(reader), ckpt.params, tokenizer, 5, seed=2) == expected_names
    losses, _, _ = train_run(reader, config, ckpt.train_config, documents, 6, ckpt.params, ckpt.optimizer,
                             start=ckpt.step)
    assert np.abs(losses - expected_losses).max() <= 1e-9


def _copy_adam(optimizer):
    copy = Adam(optimizer.m.size, optimizer.beta1, optimizer.beta2, optimizer.eps)
    copy.load_state_dict({k: np.copy(v) for k, v in optimizer.state_dict().items()})
    return copy


@pytest.mark.parametrize("weight_decay", [0.0, 0.1])
def test_compiled_adam_step_is_bit_identical_to_adam_step(weight_decay):
    rng = np.random.default_rng(0)
    theta = rng.normal(size=300)
    mask = rng.random(300) < 0.7      # some entries decay (matrices), the rest do not (biases, gains)
    reference, compiled = (Adam(300, beta1=0.8, beta2=0.95, eps=1e-6, weight_decay=weight_decay,
                                decay_mask=mask) for _ in range(2))
    theta_ref, theta_compiled = theta.copy(), theta.copy()
    for step in range(5):
        grads = rng.normal(size=300) * 10.0 ** rng.integers(-8, 3, size=300)
        grads[:3] = 0.0
        finite_ref = reference.step(theta_ref, grads, 0.01 / (step + 1))
        finite_compiled = NumbaBackend().step_optimizer(compiled, theta_compiled, grads, 0.01 / (step + 1))
        assert finite_ref is True and finite_compiled is True
        assert np.array_equal(theta_compiled, theta_ref)
        assert np.array_equal(compiled.m, reference.m) and np.array_equal(compiled.v, reference.v)
        assert compiled.t == reference.t


@pytest.mark.parametrize("theta, grad, lr", [(1.0, 1e200, 0.01), (-1e308, 1.0, 1e308)])
def test_both_adam_steps_report_an_update_that_overflows(theta, grad, lr):
    """v overflows with a huge gradient; θ overflows with a huge lr: both must say so."""
    for step in (Adam.step, lambda opt, th, g, lr: NumbaBackend().step_optimizer(opt, th, g, lr)):
        assert step(Adam(4), np.full(4, theta), np.full(4, grad), lr) is False


def test_batched_training_on_numba_lowers_the_loss():
    _, config, documents = names_setup()
    losses, _, _ = train_run("numba", config, TrainConfig(steps=200, batch_size=8, seed=0), documents, 200)
    assert losses[-20:].mean() < losses[:20].mean() - 0.5


def test_importing_the_backend_registry_does_not_import_numba():
    code = "import sys, microgpt.backend, microgpt.cli; print('numba' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"
    assert isinstance(get_backend("numba"), NumbaBackend)


def test_train_cli_with_numba_backend(cli, names_file, tmp_path):
    out = cli("train", names_file, "--backend", "numba", "--steps", "30", "--batch-size", "4",
              "--out", tmp_path / "run", "--samples", "3", "--quiet")
    assert out.returncode == 0, out.stderr
    assert "samples" in out.stdout
    assert load_checkpoint(tmp_path / "run").step == 30


# ------------------------------------------------------------------ threads

def test_shards_are_whole_sequences_of_about_equal_size():
    doc_starts = np.array([0, 5, 9, 20, 24, 30])
    assert shard_rows(doc_starts, 1).tolist() == [0, 30]
    assert shard_rows(doc_starts, 2).tolist() == [0, 9, 30] or shard_rows(doc_starts, 2).tolist() == [0, 20, 30]
    assert shard_rows(np.array([0, 7]), 2).tolist() == [0, 7]          # one sequence cannot be split


@pytest.mark.parametrize("dtype", ["float64", "float32"])
def test_the_threaded_step_agrees_with_the_one_thread_step(tiny_params, dtype, monkeypatch):
    """Shards on threads: the same loss and gradients to 1e-12 (float64), bit-identical from run to run.

    Vectors are split among the threads whatever their size here, so that the shard sum and
    float32's weight copy also take their threaded path.
    """
    from microgpt import numba_gpt
    from microgpt.numba_prepare import Workers
    monkeypatch.setattr(numba_gpt, "THREADED_VECTOR_MIN_SIZE", 1)
    rng = np.random.default_rng(5)
    batch = random_batch(tiny_params.config, rng, 7)
    serial, threaded = NumbaBackend(dtype), NumbaBackend(dtype)
    serial.workers, threaded.workers = Workers(1), Workers(3)
    loss, grads = serial.loss_and_grads(tiny_params, batch)
    tol = 1e-12 if dtype == "float64" else 1e-6
    for n_shards in (2, 3):
        loss_t, grads_t = threaded.loss_and_grads(tiny_params, batch, n_shards=n_shards)
        assert abs(loss_t - loss) <= tol * abs(loss) and relative_difference(grads_t, grads) <= tol
        again = threaded.loss_and_grads(tiny_params, batch, n_shards=n_shards)
        assert again[0] == loss_t and np.array_equal(again[1], grads_t)


def test_the_threaded_adam_update_is_bit_identical():
    from microgpt.numba_gpt import THREADED_VECTOR_MIN_SIZE
    from microgpt.numba_prepare import Workers
    size = THREADED_VECTOR_MIN_SIZE + 3
    rng = np.random.default_rng(1)
    theta, grads = rng.normal(size=size), rng.normal(size=size)
    results = []
    for threads in (1, 2, 3):
        backend, optimizer, th = NumbaBackend(), Adam(size, weight_decay=0.1), theta.copy()
        backend.workers = Workers(threads)
        assert backend.step_optimizer(optimizer, th, grads, 0.01) is True
        results.append((th, optimizer.m, optimizer.v))
    reference, th = Adam(size, weight_decay=0.1), theta.copy()
    reference.step(th, grads, 0.01)
    for got in results:
        assert np.array_equal(got[0], th) and np.array_equal(got[1], reference.m) and np.array_equal(got[2], reference.v)


def test_a_run_on_threads_is_bit_identical_run_to_run_and_close_to_one_thread():
    """Two threads (batches large enough to be split), twice: the same bits; one thread: within 1e-12."""
    from microgpt.numba_prepare import Workers
    tokenizer, config, documents = names_setup()
    config = GPTConfig(config.vocab_size, n_embd=64, n_head=4, n_layer=2, block_size=16)
    train_config = TrainConfig(steps=8, batch_size=16, seed=4)
    runs = []
    for threads in (2, 2, 1):
        backend = NumbaBackend()
        backend.workers = Workers(threads)
        params = Params.init(config, np.random.default_rng(0))
        if threads == 2:        # the batches really are split
            assert backend.n_shards(backend.layout(params), pack_batch(documents.batch(0, 16, 4), 16)) == 2
        losses = [r.loss for r in train_steps(backend, params, Adam(params.size), documents, train_config)]
        runs.append((np.array(losses), params.flat))
    assert np.array_equal(runs[0][0], runs[1][0]) and np.array_equal(runs[0][1], runs[1][1])
    assert np.abs(runs[0][0] - runs[2][0]).max() <= 1e-12 * runs[2][0].max()
    assert relative_difference(runs[0][1], runs[2][1]) <= 1e-12


# ------------------------------------------------------------------ float32

def test_float32_gradients_match_float64(tiny_params):
    """float32 forward and backward: loss and every gradient tensor within 2e-5 of float64, relative.

    float32 has a 24-bit significand (ε = 6e-8). Each product here sums at most a few
    hundred terms, so its rounding error is a few ε relative to the size of its terms;
    through the few dozen layers of the backward these grow to ~1e-6 of a tensor's
    largest entry (measured: at most 6.5e-7 here, 7.5e-7 at n_embd 128, 4 layers,
    768 tokens). 2e-5 leaves a safety factor of ~30, and is far below what a wrong
    formula gives (the dropped K/V term: 1e-3 and more).
    """
    rng = np.random.default_rng(3)
    for batch in (random_batch(tiny_params.config, rng, 4), random_batch(tiny_params.config, rng, 1)):
        loss64, grads64 = NumbaBackend("float64").loss_and_grads(tiny_params, batch)
        loss32, grads32 = NumbaBackend("float32").loss_and_grads(tiny_params, batch)
        assert grads32.dtype == np.float64
        assert abs(loss32 - loss64) <= 2e-5 * abs(loss64)
        for name in tiny_params:
            assert relative_difference(tiny_params.view_of(grads32, name), tiny_params.view_of(grads64, name)) <= 2e-5
        assert abs(NumbaBackend("float32").loss(tiny_params, batch) - loss64) <= 2e-5 * abs(loss64)


def test_float32_gradients_match_finite_differences_of_float64(tiny_params):
    """The float32 gradient is the gradient of the model (not just close to the float64 code's)."""
    batch = random_batch(tiny_params.config, np.random.default_rng(8), 3)
    _, grads32 = NumbaBackend("float32").loss_and_grads(tiny_params, batch)
    indices = np.random.default_rng(0).choice(tiny_params.size, 60, replace=False)
    fd = finite_difference_grads(flat_loss(tiny_params, batch), tiny_params.flat.copy(), indices)
    scale = np.abs(fd[indices]).max()
    assert np.abs(grads32[indices] - fd[indices]).max() <= 2e-5 * scale


def test_a_float32_run_tracks_the_float64_run():
    """200 steps at batch 8 from one seed: the losses of the two runs stay within 1e-5 of each other.

    Measured: at most 2.1e-7 apart (mean 2.8e-8); the runs drift apart slowly, as the rounding
    differences are fed back through the updates, so the bound leaves a factor of ~50.
    """
    _, config, documents = names_setup()
    train_config = TrainConfig(steps=200, batch_size=8, seed=0)
    losses = {}
    for dtype in ("float64", "float32"):
        params = Params.init(config, np.random.default_rng(train_config.seed))
        losses[dtype] = np.array([r.loss for r in train_steps(NumbaBackend(dtype), params, Adam(params.size),
                                                              documents, train_config)])
    assert np.abs(losses["float32"] - losses["float64"]).max() <= 1e-5
    assert losses["float32"][-20:].mean() < losses["float32"][:20].mean() - 0.5


def test_float32_decoder_and_checkpoints_are_interchangeable(tmp_path):
    """A float64 run's checkpoint samples the same names in float32; a float32 run's trains on in float64."""
    tokenizer, config, documents = names_setup()
    train_config = TrainConfig(steps=12, seed=1)
    for writer, reader in (("float64", "float32"), ("float32", "float64")):
        params = Params.init(config, np.random.default_rng(1))
        optimizer = Adam(params.size)
        list(train_steps(NumbaBackend(writer), params, optimizer, documents, train_config, 0, 6))
        save_checkpoint(tmp_path / writer, Checkpoint(params, tokenizer, train_config, 6, optimizer, backend="numba",
                                                      dtype=writer))
        ckpt = load_checkpoint(tmp_path / writer)
        assert np.array_equal(ckpt.params.flat, params.flat)
        names = [generate_many(NumbaBackend(dtype), ckpt.params, tokenizer, 5, seed=2) for dtype in (writer, reader)]
        assert names[0] == names[1]
        decoder32, decoder64 = NumbaBackend("float32").decoder(ckpt.params), NumbaBackend().decoder(ckpt.params)
        for token in (tokenizer.bos, 3, 5):
            assert relative_difference(decoder32.step(token), decoder64.step(token)) <= 1e-5
        losses = [r.loss for r in train_steps(NumbaBackend(reader), ckpt.params, ckpt.optimizer, documents,
                                              ckpt.train_config, 6, 12)]
        assert len(losses) == 6 and all(np.isfinite(losses))
