"""Resume: a run stopped (--stop-after, Ctrl-C, a crash) and resumed equals the run that never stopped."""

import os
import signal
import subprocess
import sys
import time

import numpy as np
import pytest

from microgpt.checkpoint import CHECKPOINT_JSON, Checkpoint, load_checkpoint
from microgpt.config import TrainConfig
from microgpt.data import load_data
from microgpt.run import RunDirectory, RunOptions, stop_signals, train_run
from microgpt.runlog import read_log as read_csv
from microgpt.scalar_gpt import ScalarBackend
from microgpt.train import Diverged
from tests.conftest import NAMES
from tests.runhelpers import TINY, assert_clean_error, run_main, snapshot
from tests.runhelpers import train as train_cli

STEPS = 40
REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def read_log(run_dir):
    return read_csv(os.path.join(run_dir, "log.csv"))


def assert_same_run(a, b):
    """Two run directories that trained the same steps: losses and evaluations to 1e-12, the same
    weights and Adam state."""
    log_a, log_b = read_log(a), read_log(b)
    np.testing.assert_array_equal(log_a["step"], np.arange(1, STEPS + 1))
    np.testing.assert_array_equal(log_b["step"], np.arange(1, STEPS + 1))
    np.testing.assert_allclose(log_b["loss"], log_a["loss"], rtol=0, atol=1e-12)
    np.testing.assert_allclose(log_b["lr"], log_a["lr"], rtol=0, atol=1e-15)
    assert np.all(np.diff(log_b["seconds"]) >= 0)  # time keeps growing across the resume
    ca, cb = load_checkpoint(str(a)), load_checkpoint(str(b))
    assert ca.step == cb.step == STEPS
    np.testing.assert_allclose(cb.params.flat, ca.params.flat, rtol=0, atol=1e-12)
    np.testing.assert_allclose(cb.optimizer.m, ca.optimizer.m, rtol=0, atol=1e-12)
    np.testing.assert_allclose(cb.optimizer.v, ca.optimizer.v, rtol=0, atol=1e-12)
    eval_a, eval_b = (read_csv(os.path.join(d, "eval.csv")) for d in (a, b))
    np.testing.assert_array_equal(eval_b["step"], eval_a["step"])
    np.testing.assert_allclose(eval_b["val_loss"], eval_a["val_loss"], rtol=0, atol=1e-12)


def reference_run(tmp_path_factory, backend):
    """A run that never stopped, on the same file as `names_file`."""
    tmp = tmp_path_factory.mktemp(f"reference-{backend}")
    (tmp / "names.txt").write_text("\n".join(NAMES) + "\n", encoding="utf-8")
    train_cli(tmp / "names.txt", tmp / "whole", "--batch-size", 2, "--backend", backend, steps=STEPS)
    return tmp / "whole"


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory):
    """The reference run on the scalar engine, trained once for the module."""
    return reference_run(tmp_path_factory, "scalar")


@pytest.mark.parametrize("backend", ["scalar", "numba"])
def test_stop_after_then_resume_equals_the_uninterrupted_run(names_file, tmp_path, tmp_path_factory,
                                                             uninterrupted, backend):
    reference = uninterrupted if backend == "scalar" else reference_run(tmp_path_factory, backend)
    out = tmp_path / "sliced"
    stdout = train_cli(names_file, out, "--batch-size", 2, "--backend", backend, "--stop-after", 15,
                       steps=STEPS)
    assert f"stopped after step 15 of {STEPS}" in stdout and f"--resume {out}" in stdout
    assert load_checkpoint(str(out)).step == 15
    assert "samples" not in stdout  # a run that is not finished does not sample yet
    train_cli_resume(out, "--stop-after", 30)  # a second slice
    train_cli_resume(out)
    assert_same_run(reference, out)


def test_a_numba_run_resumed_on_the_scalar_engine_matches_to_1e9(names_file, tmp_path, uninterrupted):
    """The engines agree to ~1e-15 per step, so switching engine mid-run changes nothing visible."""
    out = tmp_path / "switched"
    train_cli(names_file, out, "--batch-size", 2, "--backend", "numba", "--stop-after", 20, steps=STEPS)
    train_cli_resume(out, "--backend", "scalar")
    np.testing.assert_allclose(read_log(out)["loss"], read_log(uninterrupted)["loss"], rtol=0, atol=1e-9)
    np.testing.assert_allclose(load_checkpoint(str(out)).params.flat,
                               load_checkpoint(str(uninterrupted)).params.flat, rtol=0, atol=1e-9)


def train_cli_resume(out, *extra):
    code, stdout, stderr = run_main("train", "--resume", out, "--quiet", *extra)
    assert code == 0, stderr
    return stdout


def test_resume_after_a_crash_drops_the_log_rows_past_the_checkpoint(names_file, tmp_path, uninterrupted):
    """A crash after the save at step 20 but with 30 rows logged: the resumed log has each step once."""
    out = tmp_path / "crashed"
    train_cli(names_file, out, "--batch-size", 2, "--stop-after", 20, steps=STEPS)
    with open(out / "log.csv", "a") as f:
        for row in open(uninterrupted / "log.csv").read().splitlines()[21:31]:
            f.write(row.replace(",", ",9", 1) + "\n")  # rows that must not survive
    train_cli_resume(out)
    assert_same_run(uninterrupted, out)


def test_ctrl_c_in_a_real_training_process_saves_and_resumes_exactly(names_file, tmp_path, uninterrupted):
    """SIGINT to `python -m microgpt train` once it has logged steps: exit 130, no traceback,
    a checkpoint at the step it was on, a resume command; resuming gives the uninterrupted run."""
    out = tmp_path / "interrupted"
    env = dict(os.environ, PYTHONPATH=REPO_ROOT)
    args = [sys.executable, "-m", "microgpt", "train", str(names_file), "--out", str(out),
            "--steps", str(STEPS), "--batch-size", "2", "--save-every", "0", *TINY]
    proc = subprocess.Popen(args, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        wait_for_rows(out / "log.csv", 3, proc)
        proc.send_signal(signal.SIGINT)
        stdout, stderr = proc.communicate(timeout=60)
    finally:
        proc.kill()
    assert proc.returncode == 130, stderr
    assert "Traceback" not in stderr
    saved_step = load_checkpoint(str(out)).step
    assert 3 <= saved_step < STEPS, "the run finished before the signal: make it longer"
    assert f"interrupted by Ctrl-C: saved the checkpoint of step {saved_step} of {STEPS}" in stderr
    assert f"resume with: python -m microgpt train --resume {out}" in stderr
    assert len(read_log(out)["step"]) == saved_step  # the log stops where the checkpoint is
    train_cli_resume(out)
    assert_same_run(uninterrupted, out)


def wait_for_rows(log_path, rows, proc, timeout=60):
    """Poll log.csv until it has `rows` data rows (the process has made progress)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        assert proc.poll() is None, proc.communicate()
        if log_path.exists() and len(log_path.read_text().splitlines()) > rows:
            return
        time.sleep(0.005)
    raise AssertionError(f"no progress in {log_path} after {timeout} s")


class InterruptAt(ScalarBackend):
    """A backend that sends this process SIGINT during step `at` (0-based), like a user's Ctrl-C."""

    def __init__(self, at):
        super().__init__()
        self.at, self.calls = at, 0

    def loss_and_grads(self, params, batch, masks=None):
        if self.calls == self.at:
            os.kill(os.getpid(), signal.SIGINT)
        self.calls += 1
        return super().loss_and_grads(params, batch, masks)


def start_run(tiny_config, steps=10):
    return Checkpoint.start(tiny_config, TrainConfig(steps=steps), tiny_data(tiny_config.block_size).tokenizer)


def tiny_data(block_size, tmp=[]):
    """Documents over the characters "abcdef" (6 + BOS = tiny_config's vocabulary), nothing held out."""
    import tempfile
    if not tmp:
        tmp.append(tempfile.mkdtemp())
    path = os.path.join(tmp[0], "abcdef.txt")
    with open(path, "w") as f:
        f.write("ab\ncde\nf\nfade\n")
    return load_data(path, block_size, mode="lines", val_fraction=0.0)


def train_library(backend, run, run_dir, **options):
    with RunDirectory.create(str(run_dir)) as directory:
        return train_run(backend, run, tiny_data(run.params.config.block_size), directory,
                         RunOptions(progress=False, **options))


def test_ctrl_c_finishes_the_step_it_is_on_and_saves_it(tiny_config, tmp_path):
    run = start_run(tiny_config)
    outcome = train_library(InterruptAt(3), run, tmp_path / "run")
    assert (outcome.status, outcome.step, run.step) == ("interrupted", 4, 4)
    assert (outcome.signal, outcome.exit_code) == (signal.SIGINT, 130)
    assert load_checkpoint(str(tmp_path / "run")).step == 4
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler  # handler restored


def test_a_second_ctrl_c_interrupts_at_once():
    with stop_signals() as stop:
        os.kill(os.getpid(), signal.SIGINT)
        assert stop.signum == signal.SIGINT
        with pytest.raises(KeyboardInterrupt):
            os.kill(os.getpid(), signal.SIGINT)
            time.sleep(1)  # the signal is handled before this ends


class NaNAt(ScalarBackend):
    """A backend whose gradient for `name` becomes NaN from the weights of step `at` (0-based) on.

    It counts the weights it has seen rather than its calls: the check before a save
    computes a gradient too, from the same weights as the step that follows it.
    """

    def __init__(self, at, name):
        super().__init__()
        self.at, self.name, self.seen, self.last = at, name, -1, None

    def loss_and_grads(self, params, batch, masks=None):
        if params.flat.tobytes() != self.last:
            self.seen, self.last = self.seen + 1, params.flat.tobytes()
        loss, grads = super().loss_and_grads(params, batch, masks)
        if self.seen == self.at:
            params.view_of(grads, self.name)[0, 0] = np.nan
        return loss, grads


def test_divergence_names_the_step_and_parameter_and_keeps_the_last_checkpoint(tiny_config, tmp_path):
    run = start_run(tiny_config, steps=20)
    with pytest.raises(Diverged) as info:
        train_library(NaNAt(7, "layer1.mlp_fc1"), run, tmp_path / "run", save_every=3)
    assert (info.value.step, info.value.params) == (8, ["layer1.mlp_fc1"])
    message = str(info.value)
    assert "step 8" in message and "layer1.mlp_fc1" in message and "(step 6) is kept" in message
    saved = load_checkpoint(str(tmp_path / "run"))
    assert saved.step == 6 and np.isfinite(saved.params.flat).all()


def test_divergence_from_the_cli(names_file, tmp_path):
    """An absurd learning rate: the first update leaves finite weights of ~1e300 whose gradients
    overflow, so that state is not a good checkpoint: nothing is saved, and the line says why."""
    out = tmp_path / "run"
    code, _, err = run_main("train", names_file, "--out", out, "--steps", 20, "--lr", "1e300",
                            "--save-every", 1, *TINY)
    assert_clean_error(code, err, exit_code=1)
    assert "training diverged at step 1: the weights it reached give a non-finite loss or gradient" in err
    assert "no checkpoint had been saved yet" in err
    assert not (out / CHECKPOINT_JSON).exists()


# ---------------------------------------------------------------- resume refuses what would not be exact

@pytest.fixture
def half_run(names_file, tmp_path):
    out = tmp_path / "half"
    train_cli(names_file, out, "--stop-after", 5, steps=10)
    return out


@pytest.mark.parametrize("extra, fragment", [
    (("--block-size", 16), "--block-size 16 does not match the run's block_size 10"),
    (("--n-embd", 16), "--n-embd 16 does not match"),
    (("--warmup", 2), "--warmup 2 does not match the run's warmup 0"),
    (("--lr", "0.02"), "--lr 0.02 does not match"),
    (("--val-fraction", "0.2"), "--val-fraction 0.2 does not match the run's val_fraction 0.1"),
    (("--data", "text"), "--data text does not match the run's data lines"),
    (("--steps", 5), "--steps 5 is not after step 5"),
    (("--stop-after", 5), "--stop-after 5 is not after step 5"),
    (("--out", "elsewhere"), "--out cannot be used with --resume"),
])
def test_resume_refuses_options_that_change_the_run(half_run, extra, fragment):
    before = snapshot(half_run)
    code, _, err = run_main("train", "--resume", half_run, "--quiet", *extra)
    assert_clean_error(code, err, exit_code=2)
    assert fragment in err
    assert snapshot(half_run) == before


def test_resume_with_the_options_it_already_has_is_fine(half_run):
    train_cli_resume(half_run, "--block-size", 10, "--n-embd", 4, "--steps", 10)
    assert load_checkpoint(str(half_run)).step == 10


@pytest.mark.parametrize("content, fragment", [
    ("emma\nzoe\n", "has 'z' which the run never saw"),
    ("\n".join(["emma", "olivia", "ava"]) + "\n", "different vocabulary"),
])
def test_resume_refuses_data_with_another_vocabulary(half_run, tmp_path, content, fragment):
    other = tmp_path / "other.txt"
    other.write_text(content)
    before = snapshot(half_run)
    code, _, err = run_main("train", other, "--resume", half_run, "--quiet")
    assert_clean_error(code, err, exit_code=2)
    assert fragment in err and snapshot(half_run) == before


def test_resume_refuses_other_documents_with_the_same_vocabulary(half_run, names_file, tmp_path):
    shuffled = tmp_path / "shuffled.txt"
    shuffled.write_text("\n".join(reversed(names_file.read_text().split())) + "\n")
    code, _, err = run_main("train", shuffled, "--resume", half_run, "--quiet")
    assert_clean_error(code, err, exit_code=2)
    assert "holds different text" in err


def test_resume_with_windows_line_endings_is_the_same_data(half_run, names_file, tmp_path):
    crlf = tmp_path / "crlf.txt"
    crlf.write_bytes(names_file.read_bytes().replace(b"\n", b"\r\n"))
    code, _, err = run_main("train", crlf, "--resume", half_run, "--quiet")
    assert code == 0, err


def test_resume_of_a_finished_run_says_so(names_file, tmp_path):
    out = tmp_path / "done"
    train_cli(names_file, out, steps=3)
    code, _, err = run_main("train", "--resume", out)
    assert_clean_error(code, err, exit_code=2)
    assert "is complete (3 of 3 steps)" in err and "microgpt sample" in err


def test_resume_of_a_broken_checkpoint_changes_nothing(half_run):
    (half_run / CHECKPOINT_JSON).write_text("{")
    before = snapshot(half_run)
    code, _, err = run_main("train", "--resume", half_run)
    assert_clean_error(code, err, exit_code=1)
    assert snapshot(half_run) == before


def test_resume_finds_its_own_data_file_from_another_directory(half_run, tmp_path, monkeypatch):
    """The checkpoint records the training file's absolute path."""
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    train_cli_resume(half_run)
    assert load_checkpoint(str(half_run)).step == 10
