"""Bad input: one clear line, a non-zero exit (2 for usage), no traceback, and no file changed."""

import errno
import os
import tempfile
from unittest import mock

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from microgpt import cli
from microgpt.data import MAX_DOCUMENT_CHARS, read_documents
from tests.conftest import NAMES, run_cli
from tests.runhelpers import TINY, assert_clean_error, run_main, snapshot


def train_error(data, tmp_path, *extra, exit_code):
    """Run `train` expecting a clean error and no new or changed file in tmp_path; returns stderr."""
    before = snapshot(tmp_path)
    code, _, err = run_main("train", data, "--out", tmp_path / "run", "--steps", 2, *TINY, *extra)
    assert_clean_error(code, err, exit_code=exit_code)
    assert snapshot(tmp_path) == before
    return err


# ---------------------------------------------------------------- training files

@pytest.mark.parametrize("content, fragment", [
    (None, "no such file"),
    ("dir", "is a directory"),
    (b"", "is empty"),
    (b"\xef\xbb\xbf", "is empty (no characters after its byte-order mark)"),
    (b"  \n\n\t\r\n   \n", "has no documents"),
    (b"emma\n\xff\xfeolivia\n", "is not UTF-8 text (a bad byte near offset 5)"),
    (b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR", "looks like a binary file"),
])
def test_bad_training_files(tmp_path, content, fragment):
    path = tmp_path / "data.txt"
    if content == "dir":
        path.mkdir()
    elif content is not None:
        path.write_bytes(content)
    assert fragment in train_error(path, tmp_path, exit_code=1)


def test_a_single_50_mb_line_is_not_a_document(tmp_path):
    """Read as lines, a 50 MB line is refused (it is some other kind of file); auto reads it as text."""
    path = tmp_path / "one-line.txt"
    path.write_bytes(b"abcdefghij" * 5_000_000)
    err = train_error(path, tmp_path, "--data", "lines", exit_code=1)
    assert "a line of 50,000,000 characters is not a document" in err and "--data text" in err


def test_a_line_at_the_limit_is_still_a_document(tmp_path):
    path = tmp_path / "long.txt"
    path.write_text("ab" * (MAX_DOCUMENT_CHARS // 2) + "\nemma\n")
    assert len(read_documents(path)) == 2


def test_names_longer_than_the_block_are_cut_with_a_note(names_file, tmp_path):
    code, _, err = run_main("train", names_file, "--out", tmp_path / "run", "--steps", 2, "--samples", 0,
                            *TINY, "--block-size", 6)
    assert code == 0, err
    # "olivia" has 6 characters: [BOS] o l i v i a [BOS] is 8 tokens, cut to block_size + 1 = 7
    expected = sum(len(name) >= 6 for name in NAMES)
    assert f"note: {expected} of {len(NAMES)} documents are longer than the context" in err


def test_windows_line_endings_train_exactly_like_unix_ones(names_file, tmp_path):
    crlf = tmp_path / "crlf.txt"
    crlf.write_bytes(names_file.read_bytes().replace(b"\n", b"\r\n"))
    assert read_documents(crlf) == read_documents(names_file) == NAMES
    outs = [run_main("train", f, "--out", tmp_path / f.stem, "--steps", 3, *TINY)[1] for f in (names_file, crlf)]
    assert outs[0].replace(str(tmp_path / "names"), "X") == outs[1].replace(str(tmp_path / "crlf"), "X")


# ---------------------------------------------------------------- options

@pytest.mark.parametrize("option, value, fragment", [
    ("--steps", "ten", "'ten' is not a whole number"),
    ("--steps", "0", "out of range: it must be at least 1"),
    ("--lr", "-0.1", "out of range: it must be positive and finite"),
    ("--lr", "nan", "out of range"),
    ("--n-embd", "1.5", "not a whole number"),
    ("--seed", "-1", "out of range: it must be 0 or more"),
    ("--save-every", "-3", "out of range"),
    ("--backend", "cuda", "invalid choice: 'cuda'"),
])
def test_bad_option_values_are_usage_errors(names_file, tmp_path, option, value, fragment):
    assert fragment in train_error(names_file, tmp_path, option, value, exit_code=2)


@pytest.mark.parametrize("extra, fragment", [
    (("--n-embd", 10, "--n-head", 4), "n_embd (10) must be divisible by n_head (4): try --n-head 2"),
    (("--batch-size", 15), "--batch-size 15 is more than the 14 training documents"),
    (("--n-embd", 512, "--n-head", 8, "--n-layer", 4), "more than the 1,000,000 the scalar backend can train"),
    (("--block-size", 10**9), "block_size 1,000,000,000 is more than 16,384"),
    (("--block-size", 2**31 - 1), "block_size 2,147,483,647 is more than 16,384"),
    (("--n-layer", 10**12), "parameters, more than"),
])
def test_options_that_do_not_fit_together(names_file, tmp_path, extra, fragment):
    assert fragment in train_error(names_file, tmp_path, *extra, exit_code=2)


# ---------------------------------------------------------------- the output directory

def test_out_is_a_file(names_file, tmp_path):
    (tmp_path / "run").write_text("my notes")
    err = train_error(names_file, tmp_path, exit_code=2)
    assert "--out" in err and "is a file" in err


def test_out_under_a_file(names_file, tmp_path):
    (tmp_path / "file").write_text("my notes")
    before = snapshot(tmp_path)
    code, _, err = run_main("train", names_file, "--out", tmp_path / "file" / "run", "--steps", 2, *TINY)
    assert_clean_error(code, err, exit_code=2)
    assert "cannot create the run directory" in err and "Not a directory" in err
    assert snapshot(tmp_path) == before


def test_out_not_writable(names_file, tmp_path, monkeypatch):
    """Tests run as root, whom chmod does not stop: inject the EACCES a read-only directory gives."""
    def refuse(*args, **kwargs):
        raise PermissionError(errno.EACCES, os.strerror(errno.EACCES))

    (tmp_path / "run").mkdir()
    monkeypatch.setattr("microgpt.run.os.open", refuse)
    err = train_error(names_file, tmp_path, exit_code=2)
    assert "cannot write to the run directory" in err and "Permission denied" in err


def test_out_that_already_holds_a_run(names_file, tmp_path):
    run_main("train", names_file, "--out", tmp_path / "run", "--steps", 2, *TINY)
    err = train_error(names_file, tmp_path, exit_code=2)
    assert "already holds a run; continue it with --resume" in err


def test_an_unexpected_os_error_is_one_line(names_file, tmp_path, monkeypatch):
    def fail(*args, **kwargs):
        raise OSError(errno.EIO, os.strerror(errno.EIO), "/dev/disk")
    monkeypatch.setattr("microgpt.commands.train.load_data", fail)
    code, _, err = run_main("train", names_file, "--out", tmp_path / "run")
    assert_clean_error(code, err, exit_code=1)
    assert "Input/output error: /dev/disk" in err


# ---------------------------------------------------------------- end to end, in a real process

def test_end_to_end_error_and_debug_traceback(tmp_path):
    missing = tmp_path / "missing.txt"
    result = run_cli("train", missing)
    assert result.returncode == 1 and result.stdout == ""
    assert result.stderr == f"microgpt train: error: {missing}: no such file; give the path of a UTF-8 text file\n"
    debug = run_cli("--debug", "train", missing)
    assert debug.returncode == 1 and "Traceback" in debug.stderr and "MicrogptError" in debug.stderr


def test_end_to_end_usage_error(tmp_path):
    result = run_cli("train", "--n-head", "many")
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert result.stderr.strip().splitlines() == [
        "microgpt train: error: argument --n-head: 'many' is not a whole number (see microgpt train --help)"]


# ---------------------------------------------------------------- anything at all

def no_plot():
    """Drawing loss.png takes longer than the rest of a one-step run, and has nothing to do with input."""
    return mock.patch("microgpt.commands.train.write_loss_plot")


@settings(max_examples=50, deadline=None)
@given(content=st.binary(max_size=200) | st.text(max_size=200).map(lambda t: t.encode("utf-8", "surrogatepass")))
def test_any_file_trains_or_fails_in_one_line(content):
    with tempfile.TemporaryDirectory() as tmp, no_plot():
        path = os.path.join(tmp, "data.txt")
        with open(path, "wb") as f:
            f.write(content)
        code, _, err = run_main("train", path, "--out", os.path.join(tmp, "run"), "--steps", 1,
                                "--samples", 1, "--n-embd", 2, "--n-head", 1, "--block-size", 4, "--quiet")
        if code != 0:  # block 4 cuts most documents, and says so in a note before any later error
            assert_clean_error(code, err, exit_code=1, notes=True)
        else:
            assert "Traceback" not in err


OPTIONS = ["--n-embd", "--n-head", "--n-layer", "--block-size", "--steps", "--lr", "--batch-size", "--seed",
           "--save-every", "--stop-after", "--samples", "--temperature", "--backend", "--data", "--val-fraction",
           "--warmup", "--schedule", "--min-lr", "--grad-clip", "--weight-decay", "--eval-every", "--eval-tokens",
           "--sample-every", "--dtype"]
values = (st.text(alphabet=st.characters(blacklist_categories=("Cs",)), max_size=12)
          | st.integers(-10, 12).map(str)
          | st.integers(10**7, 10**30).map(str)
          | st.floats(allow_nan=True, allow_infinity=True).map(str)
          | st.sampled_from(["1e400", "-0", "0x10", " 3", "3 ", "٣", "1_000", "", "-", "--"]))


@settings(max_examples=100, deadline=None)
@given(option=st.sampled_from(OPTIONS), value=values)
def test_any_option_value_trains_or_fails_in_one_line(option, value):
    """Small and huge numbers, floats, text: training (one step at most) or one clean line."""
    with tempfile.TemporaryDirectory() as tmp, no_plot():
        path = os.path.join(tmp, "names.txt")
        with open(path, "w") as f:
            f.write("\n".join(NAMES) + "\n")
        # block 16 holds every name whole, so no note about cut names comes before an error
        code, _, err = run_main("train", path, "--out", os.path.join(tmp, "run"), "--steps", 2,
                                "--stop-after", 1, "--n-embd", 2, "--n-head", 1, "--block-size", 16,
                                "--quiet", "--samples", 1, f"{option}={value}")
        assert code in (0, 1, 2), err
        if code != 0:
            assert_clean_error(code, err)
            assert "out of memory" not in err  # every size is checked before anything is allocated


def test_the_dispatcher_reports_a_bug_in_one_line(monkeypatch):
    """The last resort: an exception nobody foresaw still is one line (and --debug shows it)."""
    def broken(args):
        raise ZeroDivisionError("oops")
    monkeypatch.setattr("microgpt.commands.sample.run", broken)
    code, _, err = run_main("sample", "somewhere")
    assert code == 1 and err.strip() == ("microgpt sample: internal error: ZeroDivisionError: oops "
                                         "(this is a bug in microgpt; rerun with --debug for the traceback)")
    with pytest.raises(ZeroDivisionError):
        cli.main(["--debug", "sample", "somewhere"])
