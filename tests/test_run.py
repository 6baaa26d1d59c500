"""The run harness: directories that are never overwritten, a lock, signals, and what a run writes."""

import os
import signal
import subprocess
import sys
import time

import pytest

from microgpt.checkpoint import CHECKPOINT_JSON, load_checkpoint
from microgpt.errors import MicrogptError, UsageError
from microgpt.run import LOCK, MARKER, RunDirectory, eval_steps
from microgpt.config import TrainConfig
from tests.conftest import REPO_ROOT
from tests.runhelpers import TINY, assert_clean_error, run_main, snapshot
from tests.test_resume import wait_for_rows


# ---------------------------------------------------------------- the directory

def test_a_new_run_never_goes_over_someone_elses_files(names_file, tmp_path):
    out = tmp_path / "mine"
    out.mkdir()
    (out / "log.csv").write_text("my own experiment\n")
    (out / "weights-000001-abcd.npz").write_bytes(b"keep me")
    before = snapshot(tmp_path)
    code, _, err = run_main("train", names_file, "--out", out, "--steps", 2, *TINY)
    assert_clean_error(code, err, exit_code=2)
    assert "is not empty (it holds log.csv, weights-000001-abcd.npz)" in err
    assert snapshot(tmp_path) == before                           # not even a lock file appeared


def test_an_empty_directory_and_one_microgpt_left_without_a_checkpoint_are_fine(names_file, tmp_path):
    empty = tmp_path / "empty"
    empty.mkdir()
    assert run_main("train", names_file, "--out", empty, "--steps", 2, *TINY)[0] == 0
    diverged = tmp_path / "diverged"                              # made by a run that diverged before saving
    code, _, err = run_main("train", names_file, "--out", diverged, "--steps", 3, "--lr", "1e300", *TINY)
    assert code == 1 and not (diverged / CHECKPOINT_JSON).exists() and (diverged / MARKER).exists()
    code, _, err = run_main("train", names_file, "--out", diverged, "--steps", 2, *TINY)
    assert code == 0, err


def test_a_directory_in_use_is_refused_and_left_alone(names_file, tmp_path):
    out = tmp_path / "run"
    run_main("train", names_file, "--out", out, "--steps", 4, "--stop-after", 2, *TINY)
    with RunDirectory.open(str(out)):                             # another process is resuming it
        before = snapshot(out)
        code, _, err = run_main("train", "--resume", out, "--quiet")
        assert_clean_error(code, err, exit_code=1)
        assert f"{out} is in use by another microgpt process (pid {os.getpid()})" in err
        assert snapshot(out) == before
    assert run_main("train", "--resume", out, "--quiet")[0] == 0   # free again once it is closed


def test_two_new_runs_racing_for_one_directory(names_file, tmp_path):
    """The second sees the first's lock before it writes a thing."""
    out = tmp_path / "race"
    first = RunDirectory.create(str(out))
    try:
        with pytest.raises(MicrogptError, match="in use by another microgpt process"):
            RunDirectory.create(str(out))
        assert sorted(os.listdir(out)) == [LOCK, MARKER]
    finally:
        first.close()


def test_a_second_process_is_refused(names_file, tmp_path):
    """A real second process, while the first trains."""
    out = tmp_path / "busy"
    env = dict(os.environ, PYTHONPATH=REPO_ROOT)
    first = subprocess.Popen([sys.executable, "-m", "microgpt", "train", str(names_file), "--out", str(out),
                              "--steps", "100000", "--save-every", "0", *TINY], env=env,
                             stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    try:
        wait_for_rows(out / "log.csv", 2, first)
        second = subprocess.run([sys.executable, "-m", "microgpt", "train", str(names_file), "--out", str(out)],
                                env=env, capture_output=True, text=True, timeout=60)
        assert second.returncode == 1
        assert second.stderr.strip().splitlines() == [
            f"microgpt train: error: {out} is in use by another microgpt process (pid {first.pid}); "
            f"wait for it to finish, or train somewhere else with --out"]
    finally:
        first.kill()
        first.communicate()


def test_create_refuses_a_run_with_a_checkpoint(tmp_path):
    (tmp_path / CHECKPOINT_JSON).write_text("{}")
    with pytest.raises(UsageError, match="already holds a run"):
        RunDirectory.create(str(tmp_path))


# ---------------------------------------------------------------- signals

@pytest.mark.parametrize("signum, code", [(signal.SIGTERM, 143), (signal.SIGHUP, 129)])
def test_sigterm_and_sighup_save_and_say_how_to_resume(names_file, tmp_path, signum, code):
    out = tmp_path / "run"
    env = dict(os.environ, PYTHONPATH=REPO_ROOT)
    proc = subprocess.Popen([sys.executable, "-m", "microgpt", "train", str(names_file), "--out", str(out),
                             "--steps", "100000", "--save-every", "0", *TINY], env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        wait_for_rows(out / "log.csv", 3, proc)
        proc.send_signal(signum)
        _, stderr = proc.communicate(timeout=60)
    finally:
        proc.kill()
    assert proc.returncode == code, stderr
    saved = load_checkpoint(str(out)).step
    name = signal.Signals(signum).name
    assert f"interrupted by {name}: saved the checkpoint of step {saved} of 100000" in stderr
    assert f"resume with: python -m microgpt train --resume {out}" in stderr and "Traceback" not in stderr


def test_a_signal_during_the_final_save_still_stops_the_run(tiny_config, tmp_path, monkeypatch):
    """The save completes (it is atomic), then the run reports the interruption instead of going on."""
    from tests.test_resume import start_run, train_library
    from microgpt import run as run_module
    from microgpt.scalar_gpt import ScalarBackend
    real_save = run_module.save_checkpoint

    def save_then_signal(path, state):
        real_save(path, state)
        if state.step == 5:
            os.kill(os.getpid(), signal.SIGTERM)
            time.sleep(0.1)

    monkeypatch.setattr(run_module, "save_checkpoint", save_then_signal)
    outcome = train_library(ScalarBackend(), start_run(tiny_config, steps=5), tmp_path / "run")
    assert (outcome.status, outcome.step, outcome.exit_code) == ("interrupted", 5, 143)
    assert load_checkpoint(str(tmp_path / "run")).step == 5


# ---------------------------------------------------------------- evaluations

def test_evaluations_happen_at_zero_every_n_and_at_the_end():
    config = TrainConfig(steps=25, eval_every=10)
    assert eval_steps(config, 0, 25) == {0, 10, 20, 25}
    assert eval_steps(config, 10, 20) == {10, 20}
    assert eval_steps(TrainConfig(steps=25), 0, 25) == set()


def test_a_run_writes_its_evaluations_and_keeps_the_best(names_file, tmp_path):
    from microgpt.runlog import read_log
    out = tmp_path / "run"
    code, stdout, err = run_main("train", names_file, "--out", out, "--steps", 20, "--eval-every", 5,
                                 "--n-embd", 4, "--n-head", 2, "--block-size", 10)
    assert code == 0, err
    evals = read_log(out / "eval.csv")
    assert evals["step"].tolist() == [0, 5, 10, 15, 20]
    best = load_checkpoint(str(out / "best"))
    assert best.metrics["val_loss"] == evals["val_loss"][1:].min()
    assert best.step == int(evals["step"][1:][evals["val_loss"][1:].argmin()])
    for step in (5, 10, 15, 20):
        assert f"step {step}: train " in stdout
    assert "yardsticks on the same validation predictions: uniform 2.944" in stdout   # ln 19
