"""Ways a run could be lost, hang or crash, each a class of failure with the test that keeps it fixed.

The numbers are those of the classes in docs/runs.md's account of what can go wrong;
each test reproduces its class through the command line, as a user meets it.
"""

import json
import os
import signal
import subprocess
import sys

import numpy as np
import pytest

from microgpt.checkpoint import CHECKPOINT_JSON, load_checkpoint
from tests.conftest import NAMES, REPO_ROOT
from tests.runhelpers import TINY, assert_clean_error, run_main, snapshot
from tests.runhelpers import train as train_cli


def env(**extra):
    return dict(os.environ, PYTHONPATH=REPO_ROOT, **extra)


def microgpt(*args, **kwargs):
    return subprocess.run([sys.executable, "-m", "microgpt", *map(str, args)], capture_output=True, text=True,
                          timeout=300, **kwargs)


# 1. nothing non-finite is ever written, on either engine

@pytest.mark.parametrize("backend", ["scalar", "numba"])
def test_an_overflowing_run_diverges_on_both_engines_and_writes_no_checkpoint(names_file, tmp_path, backend):
    """At lr 1e100 the gradients stay finite but Adam's second moment overflows: that is divergence."""
    out = tmp_path / "run"
    code, _, err = run_main("train", names_file, "--out", out, "--lr", "1e100", "--steps", 20,
                            "--backend", backend, *TINY)
    assert_clean_error(code, err, exit_code=1)
    assert "training diverged at step 2" in err and "no checkpoint had been saved yet" in err
    assert not (out / CHECKPOINT_JSON).exists()


def test_a_tampered_negative_second_moment_is_refused(names_file, tmp_path):
    out = tmp_path / "run"
    train_cli(names_file, out, "--stop-after", 3, steps=6)
    meta = json.loads((out / CHECKPOINT_JSON).read_text())
    path = out / meta["weights_file"]
    with np.load(path) as npz:
        arrays = dict(npz)
    arrays["adam.v"] = -arrays["adam.v"] - 1.0
    with open(path, "wb") as f:
        np.savez(f, **arrays)
    import hashlib
    meta["weights_sha256"] = hashlib.sha256(path.read_bytes()).hexdigest()
    (out / CHECKPOINT_JSON).write_text(json.dumps(meta))
    before = snapshot(out)
    code, _, err = run_main("train", "--resume", out, "--quiet")
    assert_clean_error(code, err, exit_code=1)
    assert "adam.v holds negative values" in err and snapshot(out) == before


# 2. a checkpoint is good only if training can go on from it; a broken one is sampled with one line

def test_weights_that_overflow_are_never_kept_as_good(names_file, tmp_path):
    out = tmp_path / "run"
    code, _, err = run_main("train", names_file, "--out", out, "--lr", "1e200", "--steps", 20, "--save-every", 1,
                            *TINY)
    assert_clean_error(code, err, exit_code=1)
    assert "the weights it reached give a non-finite loss or gradient" in err
    assert not (out / CHECKPOINT_JSON).exists()


def test_sampling_a_broken_checkpoint_is_one_line(names_file, tmp_path):
    from microgpt.checkpoint import save_checkpoint
    out = tmp_path / "run"
    train_cli(names_file, out, steps=3)
    run = load_checkpoint(str(out))
    for name in ("layer0.attn_wq", "layer0.attn_wk"):
        run.params[name][...] *= 1e200     # finite, but q·k overflows: softmax then meets inf - inf
    save_checkpoint(str(out), run)
    code, _, err = run_main("sample", out, "--num", 2)
    assert_clean_error(code, err, command="sample", exit_code=1)
    assert "predictions are not finite numbers" in err


# 6. the log never loses rows that were there

def test_a_damaged_row_before_the_checkpoint_survives_a_resume(names_file, tmp_path):
    out = tmp_path / "run"
    train_cli(names_file, out, "--stop-after", 10, steps=20)
    lines = (out / "log.csv").read_text().splitlines()
    lines[4] = "4,###"
    (out / "log.csv").write_text("\n".join(lines) + "\n")
    assert run_main("train", "--resume", out, "--quiet")[0] == 0
    after = (out / "log.csv").read_text().splitlines()
    assert after[:11] == lines[:11] and len(after) == 21      # header, 20 rows: none lost, the damaged one kept


# 7. large inputs: read with a progress bar, in bounded memory, and devices refused

def test_a_device_is_refused_in_one_line(tmp_path):
    code, _, err = run_main("train", "/dev/zero", "--out", tmp_path / "run")
    assert_clean_error(code, err, exit_code=1)
    assert "/dev/zero is not a regular file" in err and not (tmp_path / "run").exists()


def test_a_large_file_is_read_with_a_progress_bar(tmp_path, monkeypatch):
    from microgpt import textfile
    monkeypatch.setattr(textfile, "PROGRESS_BYTES", 1000)
    path = tmp_path / "names.txt"
    path.write_text("\n".join(NAMES * 20) + "\n")
    code, _, err = run_main("train", path, "--out", tmp_path / "run", "--steps", 1, "--samples", 0,
                            "--n-embd", 4, "--n-head", 2)
    assert code == 0, err
    assert "reading names.txt" in err


# 9. any output encoding

@pytest.mark.parametrize("command", [
    ("train", "{names}", "--out", "{tmp}/run", "--steps", 2, *TINY[:-1]),            # prints "β1"
    ("attention", "{run}", "émma", "--out", "{tmp}/a.png"),                           # prints "×", a vocabulary with é
    ("sample", "{run}", "--num", 3, "--prompt", "é"),
])
def test_output_survives_an_encoding_without_those_characters(command, tmp_path, tmp_path_factory):
    data = tmp_path_factory.mktemp("accents") / "names.txt"
    data.write_text("émma\nzoë\nchloé\nrenée\nandré\n" * 4, encoding="utf-8")
    run = tmp_path_factory.mktemp("accented-run") / "run"
    train_cli(data, run, steps=3)
    args = [str(a).format(names=data, tmp=tmp_path, run=run) for a in command]
    result = subprocess.run([sys.executable, "-m", "microgpt", *args], env=env(PYTHONIOENCODING="cp1252"),
                            capture_output=True, encoding="cp1252", errors="replace", timeout=300)
    assert result.returncode == 0, result.stderr
    assert "UnicodeEncodeError" not in result.stderr and "Traceback" not in result.stderr


# 10. crashes that are now one line

@pytest.mark.parametrize("where", ["microgpt.cli", "microgpt.backend"])   # before main; while it builds the parser
def test_ctrl_c_while_the_program_is_still_importing(where):
    """A Ctrl-C in the first tenth of a second lands in an import: one quiet line and 130, no traceback."""
    code = ("import builtins, sys\n"
            "real = builtins.__import__\n"
            "def interrupted(name, *args, **kwargs):\n"
            f"    if name == {where!r}:\n"
            "        raise KeyboardInterrupt\n"
            "    return real(name, *args, **kwargs)\n"
            "builtins.__import__ = interrupted\n"
            "from microgpt.__main__ import run\n"
            "sys.argv = ['microgpt', 'train', '--help']\n"
            "sys.exit(run())\n")
    result = subprocess.run([sys.executable, "-c", code], env=env(), capture_output=True, text=True, timeout=60)
    assert (result.returncode, result.stderr) == (130, "microgpt: interrupted\n")


def test_gradcheck_with_a_negative_seed_is_a_usage_error():
    code, _, err = run_main("gradcheck", "--seed", "-1")
    assert_clean_error(code, err, command="gradcheck", exit_code=2)
    assert "out of range: it must be 0 or more" in err


def test_a_closed_stdout_still_trains_and_saves(names_file, tmp_path):
    out = tmp_path / "run"
    result = subprocess.run(f"{sys.executable} -m microgpt train {names_file} --out {out} --steps 3 "
                            f"{' '.join(TINY)} >&-", shell=True, env=env(), capture_output=True, text=True,
                            timeout=300)
    assert result.returncode == 0, result.stderr
    assert "Traceback" not in result.stderr and load_checkpoint(str(out)).step == 3


# 11. characters and files that were mishandled

def test_without_dot_an_existing_dot_file_is_left_alone(tmp_path, monkeypatch):
    (tmp_path / "g.dot").write_text("my own graph")
    result = subprocess.run([sys.executable, "-m", "microgpt", "graph", "expression", "--out", str(tmp_path / "g.svg")],
                            env=env(PATH=os.path.dirname(sys.executable)), capture_output=True, text=True, timeout=120)
    assert result.returncode == 1 and "already exists" in result.stderr
    assert (tmp_path / "g.dot").read_text() == "my own graph"


# messages that misled

def test_a_huge_seed_is_out_of_range_not_a_non_number(names_file, tmp_path):
    code, _, err = run_main("train", names_file, "--out", tmp_path / "run", "--seed", "9" * 5000)
    assert_clean_error(code, err, exit_code=2)
    assert "(5,000 digits) is out of range" in err


def test_a_weights_file_that_is_not_an_archive_says_so(names_file, tmp_path):
    out = tmp_path / "run"
    train_cli(names_file, out, steps=2)
    meta = json.loads((out / CHECKPOINT_JSON).read_text())
    path = out / meta["weights_file"]
    path.write_bytes(b"not a zip file at all")
    import hashlib
    meta["weights_sha256"] = hashlib.sha256(path.read_bytes()).hexdigest()
    (out / CHECKPOINT_JSON).write_text(json.dumps(meta))
    code, _, err = run_main("sample", out)
    assert_clean_error(code, err, command="sample", exit_code=1)
    assert "is not a weights file (not a .npz archive)" in err and "pickle" not in err


def test_no_raw_library_warnings_reach_the_user(names_file, tmp_path):
    result = microgpt("train", names_file, "--out", tmp_path / "run", "--lr", "1e100", "--steps", 5,
                      "--backend", "numba", *TINY, env=env())
    assert result.returncode == 1
    assert "Warning" not in result.stderr and len(result.stderr.strip().splitlines()) == 1


def test_a_broken_pipe_ends_quietly(names_file, tmp_path):
    out = tmp_path / "run"
    train_cli(names_file, out, steps=2)
    result = subprocess.run(f"{sys.executable} -m microgpt sample {out} --num 500 | head -1", shell=True,
                            env=env(), capture_output=True, text=True, timeout=300)
    assert len(result.stdout.splitlines()) == 1 and result.stderr == ""


def test_gradcheck_prints_no_endless_numbers():
    code, out, err = run_main("gradcheck", "--n-embd", 4, "--n-head", 1, "--block-size", 4, "--vocab-size", 4,
                              "--init-std", "1e100", "--fd-per-tensor", 1)
    import re
    assert code == 1 and re.search(r"\d{20}", out) is None   # it fails (of course), in figures a person can read


def test_sample_prints_each_name_as_soon_as_it_is_written(names_file, tmp_path):
    out = tmp_path / "run"
    train_cli(names_file, out, steps=2)
    proc = subprocess.Popen([sys.executable, "-m", "microgpt", "sample", str(out), "--num", "100000"], env=env(),
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        first = proc.stdout.readline()
        assert first.strip() and proc.poll() is None        # a name arrived while the rest are still to come
    finally:
        proc.kill()
        proc.communicate()


def test_a_resume_into_an_unwritable_directory_does_not_advise_out(names_file, tmp_path, monkeypatch):
    out = tmp_path / "run"
    train_cli(names_file, out, "--stop-after", 2, steps=4)
    os.remove(out / ".lock")

    def refuse(*args, **kwargs):
        raise PermissionError(13, "Permission denied")
    monkeypatch.setattr("microgpt.run.os.open", refuse)
    code, _, err = run_main("train", "--resume", out, "--quiet")
    assert_clean_error(code, err, exit_code=2)
    assert "copy the run directory somewhere writable and resume the copy" in err and "--out" not in err


def test_a_full_disk_while_logging_names_the_run_directory(names_file, tmp_path, monkeypatch):
    from microgpt import runlog
    real = runlog.LogWriter.write

    def full(self, **row):
        if row.get("step") == 3 and "loss" in row:
            raise OSError(28, "No space left on device")
        return real(self, **row)
    monkeypatch.setattr(runlog.LogWriter, "write", full)
    out = tmp_path / "run"
    code, _, err = run_main("train", names_file, "--out", out, "--steps", 6, "--save-every", 2, *TINY)
    assert_clean_error(code, err, exit_code=1)
    assert f"cannot write to the run directory {out} at step 3 (No space left on device)" in err
    assert "the last good checkpoint (step 2) is kept" in err
