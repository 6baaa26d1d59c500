"""`microgpt compare`: config differences, final losses from the logs, the picture, samples, bad input."""

import math
import os
import struct

import numpy as np
import pytest

from microgpt.checkpoint import load_checkpoint
from microgpt.compare import EMPTY_NAME, draw_samples, load_run, load_runs, yardstick_groups
from microgpt.runlog import read_log
from tests.conftest import run_cli
from tests.runhelpers import SMALL_NAMES, assert_clean_error, run_main, train

ACCENTED = "zoé\nchloé\nrené\nanaïs\nélodie\nlouis\njérôme\nagnès\n"   # another vocabulary, and not ASCII
ACCENTED_CHARS = "".join(sorted(set(ACCENTED) - {"\n"}))


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """Three tiny runs, by label: "a" (n_embd 4, lr 0.01), "b" (n_embd 6, lr 0.03) on the same names,
    and "c" on other names with other characters and no validation data."""
    root = tmp_path_factory.mktemp("compare")
    (root / "names.txt").write_text(SMALL_NAMES, encoding="utf-8")
    (root / "accented.txt").write_text(ACCENTED, encoding="utf-8")
    train(root / "names.txt", root / "a", "--samples", 0, steps=30)
    train(root / "names.txt", root / "b", "--n-embd", 6, "--lr", 0.03, "--samples", 0, steps=30)
    train(root / "accented.txt", root / "c", "--val-fraction", 0, "--samples", 0, steps=20)
    return {name: root / name for name in "abc"}


def compare(*args):
    code, out, err = run_main("compare", *args)
    assert code == 0, err
    return out


def parse_table(out, title, labels):
    """{row name: [cell per run]} of the table whose header is `title` and `labels`, split where the labels start."""
    lines = out.splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith(title))
    header = lines[start]
    columns = [header.index(str(label), len(title)) for label in labels]
    table = {}
    for line in lines[start + 1:]:
        if not line.strip():
            break
        cuts = [0] + columns + [len(line)]
        cells = [line[lo:hi].strip() for lo, hi in zip(cuts, cuts[1:])]
        table[cells[0]] = cells[1:]
    return table


def sample_columns(out, labels):
    """The samples printed under each label: {label: [sample, ...]} ((empty) read back as '')."""
    lines = out.splitlines()
    start = lines.index(next(line for line in lines if line.startswith("samples (")))
    header = lines[start + 1]
    cuts = [header.index(label) for label in labels] + [None]
    found = {label: [] for label in labels}
    for line in lines[start + 2:]:
        if not line.strip():
            break
        for label, lo, hi in zip(labels, cuts, cuts[1:]):
            cell = line[lo:hi].strip() if hi is not None else line[lo:].strip()
            if cell:
                found[label].append("" if cell == EMPTY_NAME else cell)
    return found


def test_the_table_lists_exactly_the_options_that_differ(runs, tmp_path):
    out = compare(runs["a"], runs["b"], "--num", 0, "--out", tmp_path / "c.png")
    sizes = [f"{load_checkpoint(runs[r]).params.size:,}" for r in "ab"]
    assert parse_table(out, "options that differ", [runs["a"], runs["b"]]) == {
        "n_embd": ["4", "6"],
        "parameters": sizes,
        "lr": ["0.01", "0.03"],
    }
    assert sizes[0] != sizes[1]


def test_final_losses_are_the_values_in_the_logs(runs, tmp_path):
    out = compare(runs["a"], runs["b"], "--num", 0, "--out", tmp_path / "c.png")
    table = parse_table(out, "final losses", [runs["a"], runs["b"]])
    for column, name in enumerate("ab"):
        log = read_log(os.path.join(runs[name], "log.csv"))
        evals = read_log(os.path.join(runs[name], "eval.csv"))
        later = evals["step"] > 0
        best = int(np.argmin(np.where(later, evals["val_loss"], np.inf)))
        assert table["steps trained"][column] == "30"
        assert table["training loss, last step"][column] == f"{log['loss'][-1]:.4f}"
        assert table["training loss, mean of last 100"][column] == f"{log['loss'].mean():.4f}"   # 30 steps: all
        assert table["training loss, last evaluation"][column] == f"{evals['train_loss'][-1]:.4f}"
        assert table["validation loss, last evaluation"][column] == f"{evals['val_loss'][-1]:.4f}"
        assert table["best validation loss"][column] == f"{evals['val_loss'][best]:.4f} (step {int(evals['step'][best])})"
        assert float(table["best validation loss"][column].split()[0]) == pytest.approx(
            load_checkpoint(os.path.join(runs[name], "best")).metrics["val_loss"], abs=5e-5)


def test_the_picture_is_a_png_of_the_stated_size(runs, tmp_path):
    path = tmp_path / "runs.png"
    out = compare(runs["a"], runs["b"], runs["c"], "--num", 0, "--out", path)
    assert out.rstrip().endswith(f"wrote {path}")
    data = path.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n" and data[12:16] == b"IHDR"
    assert struct.unpack(">II", data[16:24]) == (1000, 600)


def test_samples_are_what_sample_prints_with_the_same_seed(runs, tmp_path):
    out = compare(runs["a"], runs["b"], runs["c"], "--num", 4, "--seed", 7, "--out", tmp_path / "c.png")
    labels = [str(runs[r]) for r in "abc"]
    found = sample_columns(out, labels)
    for label in labels:
        code, sampled, err = run_main("sample", label, "--num", 4, "--seed", 7)
        assert code == 0, err
        assert found[label] == sampled.splitlines()
    assert set("".join(found[str(runs["c"])])) <= set(ACCENTED)   # each run's own tokenizer
    assert any(set(name) & set("éïèô") for name in found[str(runs["c"])])


def test_runs_on_other_characters_compare_and_say_the_vocabularies_differ(runs, tmp_path):
    out = compare(runs["a"], runs["c"], "--num", 0, "--out", tmp_path / "c.png")
    table = parse_table(out, "options that differ", [runs["a"], runs["c"]])
    assert table["vocabulary"] == ["13: abehilmoprsv + BOS", f"{len(ACCENTED_CHARS) + 1}: {ACCENTED_CHARS} + BOS"]
    assert table["data"] == ["names.txt", "accented.txt"]
    assert table["val_fraction"] == ["0.1", "0"]
    losses = parse_table(out, "final losses", [runs["a"], runs["c"]])
    assert losses["validation loss, last evaluation"][1] == "-"     # no validation data: nothing invented
    assert losses["best validation loss"][1] == "-"


def test_yardsticks_are_drawn_once_for_runs_on_the_same_data(runs):
    compared = load_runs([str(runs[r]) for r in "abc"])
    groups = yardstick_groups(compared)
    assert [labels for _, labels in groups] == [[str(runs["a"]), str(runs["b"])], [str(runs["c"])]]
    shared, alone = groups[0][0], groups[1][0]
    assert set(shared) == {"uniform", "unigram", "bigram"} and shared["uniform"] == pytest.approx(math.log(13))
    assert alone == {"uniform": pytest.approx(math.log(len(ACCENTED_CHARS) + 1))}     # no validation: ln V alone


def test_output_survives_an_ascii_terminal(runs, tmp_path, monkeypatch):
    monkeypatch.setenv("PYTHONIOENCODING", "ascii")
    result = run_cli("compare", runs["a"], runs["c"], "--num", 2, "--out", tmp_path / "c.png")
    assert result.returncode == 0, result.stderr
    assert "\\xe9" in result.stdout and "Traceback" not in result.stderr


def test_output_without_differences_says_so(runs, tmp_path):
    twin = tmp_path / "twin"
    train(runs["a"].parent / "names.txt", twin, "--samples", 0, steps=30)
    out = compare(runs["a"], twin, "--num", 0, "--out", tmp_path / "c.png")
    assert out.startswith("no option differs")
    table = parse_table(out, "final losses", [runs["a"], twin])
    assert table["validation loss, last evaluation"][0] == table["validation loss, last evaluation"][1]


@pytest.mark.parametrize("make_args, says", [
    (lambda runs, tmp: [runs["a"]], "compare needs two or more run directories (only"),
    (lambda runs, tmp: [runs["a"], f"{runs['a']}/"], "is given twice"),
    (lambda runs, tmp: [runs["a"], tmp / "missing"], "is not a run directory"),
    (lambda runs, tmp: [runs["a"], runs["a"].parent / "names.txt"], "is not a run directory"),
    (lambda runs, tmp: [runs["a"], tmp], "has no checkpoint.json"),
    (lambda runs, tmp: [runs["a"], runs["b"], "--out", tmp / "c.svg"], "give a file name ending in .png"),
    (lambda runs, tmp: [], "the following arguments are required: RUN_DIR"),
    (lambda runs, tmp: [runs["a"]] * 11, "compare draws at most 10 runs in one picture (11 were given)"),
])
def test_bad_input_gets_one_line(runs, tmp_path, make_args, says):
    code, out, err = run_main("compare", *make_args(runs, tmp_path))
    assert_clean_error(code, err, command="compare")
    assert says in err
    assert not os.path.exists(tmp_path / "compare.png")


def test_the_mean_training_loss_takes_the_last_100_steps():
    from types import SimpleNamespace
    from microgpt.compare import ComparedRun, final_losses
    steps = np.arange(1.0, 151.0)
    log = {"step": steps, "loss": steps / 100}            # steps 51..150: losses 0.51..1.50, mean 1.005
    run = ComparedRun("r", SimpleNamespace(step=150), log, {}, {})
    table = dict(final_losses([run, run]))
    assert table["training loss, mean of last 100"] == ["1.0050", "1.0050"]
    assert table["training loss, last step"] == ["1.5000", "1.5000"]
    assert table["validation loss, last evaluation"] == ["-", "-"]


def test_a_text_run_compares_with_a_names_run(runs, tmp_path):
    (tmp_path / "play.txt").write_text("to be, or not to be: that is the question.\n" * 60, encoding="utf-8")
    play = tmp_path / "play"
    train(tmp_path / "play.txt", play, "--data", "text", "--samples", 0, steps=10)
    out = compare(play, runs["a"], "--num", 2, "--max-new-tokens", 30, "--out", tmp_path / "c.png")
    assert parse_table(out, "options that differ", [play, runs["a"]])["data mode"] == ["text", "lines"]
    code, sampled, err = run_main("sample", play, "--num", 2, "--max-new-tokens", 30, "--seed", 42)
    assert code == 0, err
    texts = draw_samples(load_run(str(play)), 2, seed=42, max_new_tokens=30)
    assert "".join(text + "\n" for text in texts) == sampled         # what sample prints, text for text
    shown = out.split(f"{play}:\n", 1)[1].split(f"\n\n{runs['a']}:\n", 1)[0]
    assert shown == "\n\n".join("\n".join("  " + line for line in text.strip("\n").split("\n")) for text in texts)
