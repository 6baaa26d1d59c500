"""Helpers for the tests of runs, checkpoints and CLI errors: in-process CLI calls and file snapshots."""

import contextlib
import io
import os

from microgpt import cli

# A model small enough that a step takes milliseconds on the scalar engine.
TINY = ("--n-embd", "4", "--n-head", "2", "--block-size", "10", "--quiet")


def run_main(*args):
    """Call microgpt.cli.main in-process; returns (exit code, stdout, stderr).

    An exception escaping main (a traceback the user would see) fails the test.
    """
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = cli.main([str(a) for a in args])
    return code, out.getvalue(), err.getvalue()


def train(data, out, *extra, steps=20):
    """A tiny training run through the CLI; asserts it succeeded and returns its stdout."""
    code, stdout, stderr = run_main("train", data, "--out", out, "--steps", steps, *TINY, *extra)
    assert code == 0, stderr
    return stdout


SMALL_NAMES = "emma\nolivia\nava\nisabella\nsophia\nmia\namelia\nharper\n"  # vocabulary abehilmoprsv + BOS


def small_run(directory, samples=0):
    """A run of 30 tiny steps on SMALL_NAMES in directory/run (the file is directory/names.txt)."""
    (directory / "names.txt").write_text(SMALL_NAMES)
    train(directory / "names.txt", directory / "run", "--samples", samples, steps=30)
    return directory / "run"


def assert_clean_error(code, stderr, command="train", exit_code=None, notes=False):
    """One line on stderr, `microgpt CMD: error: ...`, a non-zero exit, no traceback, no bug report.

    With `notes`, `note: ...` lines about the input (documents cut to the block) may come
    before the error: a run that reads its data and fails later says both.
    """
    assert code != 0
    if exit_code is not None:
        assert code == exit_code, stderr
    lines = stderr.strip().splitlines()
    if notes:
        lines = [line for line in lines if not line.startswith("note: ")]
    assert len(lines) == 1, stderr
    assert lines[0].startswith((f"microgpt {command}: error: ", f"microgpt {command}: error:")), stderr
    assert "Traceback" not in stderr and "internal error" not in stderr


def snapshot(directory):
    """Every file under `directory` as {relative path: bytes}: to check nothing was touched."""
    files = {}
    for root, _, names in os.walk(directory):
        for name in names:
            path = os.path.join(root, name)
            with open(path, "rb") as f:
                files[os.path.relpath(path, directory)] = f.read()
    return files
