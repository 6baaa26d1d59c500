"""Training on a character stream end to end, on both engines: losses, samples, eval, extending a run."""

import numpy as np
import pytest

from microgpt.checkpoint import load_checkpoint
from microgpt.data import load_data
from microgpt.evaluate import evaluate
from microgpt.optim import learning_rate
from microgpt.runlog import read_log
from microgpt.scalar_gpt import ScalarBackend
from tests.conftest import REPO_ROOT
from tests.runhelpers import assert_clean_error, run_main

SMALL = ("--n-embd", "8", "--n-head", "2", "--block-size", "16", "--quiet", "--samples", "0")
KNOBS = ("--warmup", "3", "--schedule", "cosine", "--min-lr", "0.001", "--grad-clip", "0.5",
         "--weight-decay", "0.1", "--lr", "0.02")


@pytest.fixture(scope="module")
def play(tmp_path_factory):
    """The first 20,000 characters of tiny Shakespeare."""
    path = tmp_path_factory.mktemp("text") / "play.txt"
    with open(f"{REPO_ROOT}/data/shakespeare.txt", encoding="utf-8") as f:
        path.write_text(f.read(20_000), encoding="utf-8")
    return path


def train(play, out, *extra, steps=20):
    code, stdout, err = run_main("train", play, "--out", out, "--steps", steps, "--batch-size", 2, *SMALL, *extra)
    assert code == 0, err
    return stdout


@pytest.fixture(scope="module")
def runs(play, tmp_path_factory):
    """The same run on each engine, with every training knob on (and the same evaluation sample:
    by default the scalar engine measures fewer predictions than numba, being ~1,000x slower)."""
    tmp = tmp_path_factory.mktemp("runs")
    for backend in ("scalar", "numba"):
        train(play, tmp / backend, "--backend", backend, "--eval-tokens", 256, *KNOBS)
    return tmp


def test_both_engines_train_the_same_run(runs):
    scalar, numba = read_log(runs / "scalar" / "log.csv"), read_log(runs / "numba" / "log.csv")
    np.testing.assert_allclose(numba["loss"], scalar["loss"], rtol=0, atol=1e-9)
    np.testing.assert_array_equal(numba["lr"], scalar["lr"])
    np.testing.assert_allclose(load_checkpoint(str(runs / "numba")).params.flat,
                               load_checkpoint(str(runs / "scalar")).params.flat, rtol=0, atol=1e-9)
    evals = [read_log(runs / b / "eval.csv")["val_loss"] for b in ("scalar", "numba")]
    np.testing.assert_allclose(evals[1], evals[0], rtol=0, atol=1e-9)


def test_the_knobs_shape_the_schedule_and_the_log(runs):
    log = read_log(runs / "scalar" / "log.csv")
    expected = [learning_rate(s, 20, 0.02, warmup=3, schedule="cosine", min_lr=0.001) for s in range(20)]
    np.testing.assert_array_equal(log["lr"], expected)
    assert log["grad_norm"].max() > 0.5          # the norm is logged before clipping to 0.5
    meta = load_checkpoint(str(runs / "scalar")).train_config
    assert (meta.warmup, meta.schedule, meta.min_lr, meta.grad_clip, meta.weight_decay) == (3, "cosine", 0.001, 0.5, 0.1)


def test_a_stream_model_has_no_bos_and_reads_as_text(play, tmp_path):
    out = train(play, tmp_path / "run", "--eval-every", 3, steps=3).splitlines()
    ckpt = load_checkpoint(str(tmp_path / "run"))
    assert ckpt.data.mode == "text" and ckpt.tokenizer.bos is None
    assert ckpt.params.config.vocab_size == len(set(play.read_text()))


def test_both_engines_write_the_same_text_far_past_the_context(runs):
    """block_size 16, 60 new characters: the window slides 44 times, identically on both engines."""
    texts = {}
    for backend in ("scalar", "numba"):
        code, out, err = run_main("sample", runs / "scalar", "--prompt", "ROMEO:", "--max-new-tokens", 60,
                                  "--backend", backend, "--seed", 3)
        assert code == 0, err
        texts[backend] = out
    assert texts["scalar"] == texts["numba"]
    assert texts["scalar"].startswith("ROMEO:") and len(texts["scalar"].rstrip("\n")) == len("ROMEO:") + 60


def test_eval_measures_the_whole_validation_split(runs, play):
    code, out, err = run_main("eval", runs / "scalar", "--backend", "numba")
    assert code == 0, err
    ckpt = load_checkpoint(str(runs / "scalar"))
    data = load_data(play, 16, "text", 0.1)
    loss = evaluate(ScalarBackend(), ckpt.params, data.eval_sample("val", None))
    lines = out.splitlines()
    assert lines[0] == f"{runs / 'scalar'} (step 20) on its validation split of {play}: 1,999 predictions"
    assert lines[1].startswith(f"loss {loss:.4f} nats · perplexity {np.exp(loss):.3f} · "
                               f"{loss / np.log(2):.4f} bits per character")


def test_eval_on_another_file_and_on_unseen_characters(runs, tmp_path):
    other = tmp_path / "other.txt"
    other.write_text("First Citizen:\nSpeak, speak.\n\nAll:\nSpeak.\n" * 5)
    code, out, err = run_main("eval", runs / "scalar", other, "--backend", "scalar")
    assert code == 0, err and "bits per character" in out
    weird = tmp_path / "weird.txt"
    weird.write_text("Speak, ßpeak € ¥\n\nyes\n" * 5)
    code, _, err = run_main("eval", runs / "scalar", weird)
    assert_clean_error(code, err, command="eval", exit_code=1)
    assert "has 3 character(s) the model never saw: '¥', 'ß', '€'" in err


def test_a_finished_run_is_extended_with_more_steps(play, tmp_path):
    out = tmp_path / "run"
    train(play, out, "--eval-every", 5, steps=10)
    code, _, err = run_main("train", "--resume", out, "--steps", 16, "--quiet")
    assert code == 0, err
    log = read_log(out / "log.csv")
    assert log["step"].tolist() == list(range(1, 17))
    # the schedule is recomputed for the new total: step 10 (0-based) of 16 runs at lr·(1 - 10/16)
    assert log["lr"][10] == learning_rate(10, 16, 0.01) and log["lr"][9] == learning_rate(9, 10, 0.01)
    assert load_checkpoint(str(out)).train_config.steps == 16
