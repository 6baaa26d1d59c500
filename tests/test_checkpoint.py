"""Checkpoints: exact round trip, atomic saves under a full disk, and clean errors for every broken file."""

import errno
import json
import os

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from microgpt import checkpoint as ckpt
from microgpt.checkpoint import CHECKPOINT_JSON, Checkpoint, load_checkpoint, save_checkpoint
from microgpt.config import TrainConfig
from microgpt.data import DataSpec
from microgpt.tokenizer import Tokenizer
from microgpt.errors import MicrogptError
from tests.runhelpers import assert_clean_error, run_main, snapshot, train


@pytest.fixture
def run(tiny_config):
    """A checkpoint at step 3 with non-trivial Adam moments."""
    tokenizer = Tokenizer("abcdef")  # 6 characters + BOS = tiny_config.vocab_size
    state = Checkpoint.start(tiny_config, TrainConfig(steps=10, seed=5), tokenizer,
                             DataSpec("/data/x.txt", "lines", 0.1, 4, "ab" * 32), "scalar")
    for _ in range(3):
        advance(state)
    return state


def advance(state):
    """One made-up optimisation step, as training would take it."""
    grads = np.random.default_rng(state.step).normal(size=state.params.size)
    state.optimizer.step(state.params.flat, grads, 0.01)
    state.step += 1


@pytest.fixture
def saved(run, tmp_path):
    """The run directory of `run`, saved."""
    run_dir = tmp_path / "run"
    save_checkpoint(run_dir, run)
    return run_dir


def weights_path(run_dir):
    meta = json.loads((run_dir / CHECKPOINT_JSON).read_text())
    return run_dir / meta["weights_file"]


def rewrite_json(run_dir, change):
    """Apply change(meta) to checkpoint.json, keeping everything else (the weights' checksum too)."""
    meta = json.loads((run_dir / CHECKPOINT_JSON).read_text())
    change(meta)
    (run_dir / CHECKPOINT_JSON).write_text(json.dumps(meta))


def expect_error(run_dir, *fragments):
    with pytest.raises(MicrogptError) as info:
        load_checkpoint(str(run_dir))
    for fragment in fragments:
        assert fragment in str(info.value)
    return str(info.value)


# ---------------------------------------------------------------- round trip

def test_round_trip_is_exact(run, saved):
    loaded = load_checkpoint(str(saved))
    np.testing.assert_array_equal(loaded.params.flat, run.params.flat)
    np.testing.assert_array_equal(loaded.optimizer.m, run.optimizer.m)
    np.testing.assert_array_equal(loaded.optimizer.v, run.optimizer.v)
    assert loaded.optimizer.t == run.optimizer.t == 3
    assert (loaded.step, loaded.backend, loaded.data) == (3, "scalar", run.data)
    assert loaded.tokenizer.chars == run.tokenizer.chars
    assert loaded.train_config == run.train_config and loaded.params.config == run.params.config


def test_a_new_save_replaces_the_old_weights_and_leftover_temp_files(run, saved):
    (saved / ".tmp-left-by-a-crash").write_bytes(b"half a file")
    old = weights_path(saved)
    advance(run)
    save_checkpoint(saved, run)
    assert sorted(os.listdir(saved)) == [CHECKPOINT_JSON, weights_path(saved).name]
    assert weights_path(saved) != old and load_checkpoint(str(saved)).step == 4


def test_a_format_1_checkpoint_still_loads(saved):
    rewrite_json(saved, lambda m: (m.update(format_version=1), m.pop("data"), m.pop("backend"), m.pop("dtype"),
                                   m.pop("metrics"), m["tokenizer"].pop("bos")))
    loaded = load_checkpoint(str(saved))
    assert loaded.data is None and loaded.backend == "scalar" and loaded.dtype == "float64"
    assert loaded.tokenizer.bos == 6


def test_a_format_2_checkpoint_loads_as_a_run_on_lines_with_nothing_held_out(saved):
    """Format 2 recorded the data as (path, num_documents, sha256) and trained on every document."""
    def as_format_2(meta):
        meta.update(format_version=2, data={"path": "/data/x.txt", "num_documents": 4, "sha256": "ab" * 32})
        for name in ("dtype", "metrics"):
            meta.pop(name)
        meta["tokenizer"].pop("bos")
        for name in ("warmup", "schedule", "min_lr", "grad_clip", "weight_decay", "eval_every", "eval_tokens"):
            meta["train"].pop(name)
    rewrite_json(saved, as_format_2)
    loaded = load_checkpoint(str(saved))
    assert loaded.data == DataSpec("/data/x.txt", "lines", 0.0, 4, "ab" * 32)
    assert loaded.train_config == TrainConfig(steps=10, seed=5)        # new fields at their defaults: off


# ---------------------------------------------------------------- a full disk during a save

class FullDisk:
    """Fault injection: file writes through `os.fdopen` fail with ENOSPC after `budget` bytes."""

    def __init__(self, real_fdopen, budget):
        self.real_fdopen, self.budget = real_fdopen, budget

    def __call__(self, fd, *args, **kwargs):
        f = self.real_fdopen(fd, *args, **kwargs)
        real_write, disk = f.write, self

        def write(data):
            if len(data) > disk.budget:
                real_write(bytes(data[:disk.budget]))
                disk.budget = 0
                raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
            disk.budget -= len(data)
            return real_write(data)

        f.write = write
        return f


@pytest.mark.parametrize("budget", [0, 100, 3000, 10**9])
def test_a_full_disk_keeps_the_previous_checkpoint(run, saved, monkeypatch, budget):
    """A budget of 10**9 lets the weights through and fails the JSON; the others fail the weights."""
    before = snapshot(saved)
    monkeypatch.setattr(ckpt.os, "fdopen", FullDisk(os.fdopen, budget))
    if budget == 10**9:  # the weights fit; fail when the JSON is written
        real = ckpt.atomic_write
        monkeypatch.setattr(ckpt, "atomic_write", lambda target, write, name_of=None: (
            real(target, write, name_of) if name_of else real(target, _no_space)))
    advance(run)
    with pytest.raises(MicrogptError, match="No space left on device.*previous checkpoint there is left"):
        save_checkpoint(saved, run)
    assert snapshot(saved) == before  # nothing changed, no temporary file left behind
    monkeypatch.undo()
    assert load_checkpoint(str(saved)).step == 3


def _no_space(f):
    raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))


def test_a_full_disk_during_training_is_one_line_and_keeps_the_last_checkpoint(names_file, tmp_path, monkeypatch):
    """The CLI saves at step 5, then the disk fills up before the save at step 10."""
    out = tmp_path / "run"
    real_save = ckpt.save_checkpoint

    def save(run_dir, state):
        if state.step == 10:
            monkeypatch.setattr(ckpt.os, "fdopen", FullDisk(os.fdopen, 500))
        real_save(run_dir, state)

    monkeypatch.setattr("microgpt.run.save_checkpoint", save)
    code, _, err = run_main("train", names_file, "--out", out, "--steps", 20, "--save-every", 5,
                            "--n-embd", 8, "--n-head", 2, "--quiet")
    assert_clean_error(code, err, exit_code=1)
    assert "checkpoint of step 10" in err and "No space left" in err
    monkeypatch.undo()
    assert load_checkpoint(str(out)).step == 5
    assert not [name for name in os.listdir(out) if name.startswith(".tmp-")]


# ---------------------------------------------------------------- missing, truncated, corrupt

def test_missing_files(saved, tmp_path):
    expect_error(tmp_path / "nowhere", "not a run directory")
    expect_error(tmp_path, "has no checkpoint.json")
    weights_path(saved).unlink()
    expect_error(saved, "missing its weights file")


def test_checkpoint_json_truncated_at_every_byte(saved):
    text = (saved / CHECKPOINT_JSON).read_bytes()
    for length in range(len(text) - 1):  # the last byte is a newline: dropping it changes nothing
        (saved / CHECKPOINT_JSON).write_bytes(text[:length])
        expect_error(saved, CHECKPOINT_JSON)


def test_weights_truncated_byte_by_byte(saved):
    """Every truncation fails the checksum; with the checksum updated (a file that merely looks
    consistent) the archive itself must still be refused cleanly: a dense sample of lengths."""
    path = weights_path(saved)
    data = path.read_bytes()
    lengths = sorted(set(range(0, 200)) | set(range(200, len(data), 37)) | set(range(len(data) - 200, len(data))))
    for length in lengths:
        path.write_bytes(data[:length])
        expect_error(saved, "SHA-256 does not match")
        rewrite_json(saved, lambda m: m.update(weights_sha256=ckpt._sha256(path)))
        expect_error(saved, path.name)
        rewrite_json(saved, lambda m: m.update(weights_sha256="0" * 64))


def test_weights_with_flipped_bytes(saved):
    path = weights_path(saved)
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0xFF
    path.write_bytes(bytes(data))
    expect_error(saved, "corrupt")


def test_newer_format_version(saved):
    rewrite_json(saved, lambda m: m.update(format_version=ckpt.FORMAT_VERSION + 1))
    expect_error(saved, "newer than this microgpt reads", "upgrade microgpt")


@pytest.mark.parametrize("change, fragment", [
    (lambda m: m["model"].update(n_layer=3), "layer2.attn_wq is missing"),
    (lambda m: m["model"].update(n_layer=1), "layer1.attn_wq is there but not in this model"),
    (lambda m: m["model"].update(n_embd=4), "has shape"),
    (lambda m: m["model"].update(block_size=7), "wpe has shape"),
    (lambda m: m.update(adam_t=None), "adam.m is there but not in this model"),
])
def test_json_that_does_not_match_the_arrays(saved, change, fragment):
    rewrite_json(saved, change)
    expect_error(saved, "do not match", fragment)


def test_arrays_that_do_not_match_the_json(saved):
    """Weights written with the right checksum but a parameter missing, or of the wrong dtype."""
    path = weights_path(saved)
    with np.load(path) as npz:
        arrays = dict(npz)
    for broken in ({k: v for k, v in arrays.items() if k != "lm_head"},
                   dict(arrays, wte=arrays["wte"].astype(np.float32)),
                   dict(arrays, wpe=np.full_like(arrays["wpe"], np.nan))):
        with open(path, "wb") as f:
            np.savez(f, **broken)
        rewrite_json(saved, lambda m: m.update(weights_sha256=ckpt._sha256(path)))
        expect_error(saved, "do not match")


@pytest.mark.parametrize("change", [
    lambda m: m.update(step=11),                             # past the run's steps
    lambda m: m.update(step="3"),
    lambda m: m.update(adam_t=2),
    lambda m: m["model"].update(n_head=3),                   # 8 not divisible by 3
    lambda m: m["model"].update(n_embd=8.0),
    lambda m: m["train"].update(lr="fast"),
    lambda m: m["train"].update(seed=-1),
    lambda m: m["tokenizer"].update(chars="abcde"),         # vocabulary one short
    lambda m: m.update(weights_file="../elsewhere.npz"),
    lambda m: m.pop("model"),
    lambda m: m.update(data=[1, 2]),
])
def test_invalid_fields(saved, change):
    rewrite_json(saved, change)
    expect_error(saved, "not a valid microgpt checkpoint")


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=8),
    lambda children: st.lists(children, max_size=3) | st.dictionaries(st.text(max_size=5), children, max_size=3),
    max_leaves=6)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(path=st.sampled_from([("format_version",), ("model",), ("model", "n_embd"), ("model", "vocab_size"),
                             ("train",), ("train", "steps"), ("train", "beta1"), ("tokenizer", "chars"),
                             ("step",), ("adam_t",), ("data",), ("data", "size"), ("data", "mode"),
                             ("data", "val_fraction"), ("backend",), ("dtype",), ("metrics",),
                             ("tokenizer", "bos"), ("train", "schedule"), ("weights_file",), ("weights_sha256",)]),
       value=json_values)
def test_any_field_replaced_by_any_json_gives_a_clean_answer(saved, path, value):
    original = (saved / CHECKPOINT_JSON).read_bytes()
    try:
        def change(meta):
            target = meta
            for key in path[:-1]:
                target = target[key]
            target[path[-1]] = value
        rewrite_json(saved, change)
        try:
            load_checkpoint(str(saved))  # a replacement may happen to be valid (say adam_t=None)
        except MicrogptError:
            pass
    finally:
        (saved / CHECKPOINT_JSON).write_bytes(original)


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(garbage=st.binary(max_size=300), which=st.sampled_from(["json", "weights"]))
def test_garbage_files_give_one_line_from_the_cli(saved, garbage, which):
    target = saved / CHECKPOINT_JSON if which == "json" else weights_path(saved)
    original = target.read_bytes()
    try:
        target.write_bytes(garbage)
        code, _, err = run_main("sample", saved, "--num", 1)
        assert_clean_error(code, err, command="sample", exit_code=1)
    finally:
        target.write_bytes(original)


def test_a_trained_run_holds_what_the_docs_say(names_file, tmp_path):
    """The JSON of a real run: data file, mode, split and fingerprint, backend, step = adam_t = steps."""
    train(names_file, tmp_path / "run", steps=6)
    meta = json.loads((tmp_path / "run" / CHECKPOINT_JSON).read_text())
    assert meta["step"] == meta["adam_t"] == 6 and meta["backend"] == "scalar" and meta["dtype"] == "float64"
    assert meta["data"] == {"path": str(names_file), "mode": "lines", "val_fraction": 0.1, "size": 16,
                            "sha256": meta["data"]["sha256"]}
    assert meta["tokenizer"]["bos"] is True and meta["metrics"] is None
    assert sorted(os.listdir(tmp_path / "run")) == sorted(
        [CHECKPOINT_JSON, meta["weights_file"], "log.csv", "eval.csv", "baselines.json", "best", "loss.png",
         "config.toml", ".lock", ".microgpt-run"])
    best = json.loads((tmp_path / "run" / "best" / CHECKPOINT_JSON).read_text())
    assert set(best["metrics"]) == {"train_loss", "val_loss"} and 1 <= best["step"] <= 6
    assert_clean_error(*run_main("sample", tmp_path / "run" / "log.csv")[::2], command="sample")


@pytest.mark.parametrize("change, fragment", [
    (lambda m: m["model"].update(n_layer=10**9), "parameters, more than"),
    (lambda m: m["model"].update(block_size=10**9), "parameters, more than"),
    (lambda m: m["train"].update(batch_size=10**9), "predictions is more than"),
])
def test_absurd_sizes_are_refused_before_anything_is_allocated(saved, change, fragment):
    rewrite_json(saved, change)
    expect_error(saved, "not a valid microgpt checkpoint", fragment)
