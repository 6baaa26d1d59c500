"""`microgpt sample RUN_DIR`: names from a checkpoint, reproducible, with clean errors."""

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from microgpt.generate import sample_next
from tests.runhelpers import assert_clean_error, run_main
from tests.runhelpers import train as train_cli


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("sample")
    (tmp / "names.txt").write_text("emma\nolivia\nava\nisabella\nsophia\nmia\namelia\nharper\n")
    train_cli(tmp / "names.txt", tmp / "run", "--samples", 5, steps=30)
    return tmp / "run"


def sample(run_dir, *args):
    code, out, err = run_main("sample", run_dir, *args)
    assert code == 0, err
    return out.splitlines()


def test_same_seed_same_names_and_num(run_dir):
    names = sample(run_dir, "--num", 12, "--seed", 3)
    assert len(names) == 12 and all(names)
    assert sample(run_dir, "--num", 12, "--seed", 3) == names
    assert sample(run_dir, "--num", 12, "--seed", 4) != names


def test_both_engines_sample_the_same_names(run_dir):
    """Their logits agree to ~1e-15, so the same seed draws the same names, prompt and top-k included."""
    for args in (("--num", 10, "--seed", 7), ("--num", 5, "--prompt", "a", "--top-k", 3, "--temperature", 1.5)):
        assert sample(run_dir, *args, "--backend", "numba") == sample(run_dir, *args, "--backend", "scalar")


def test_default_seed_and_temperature_repeat_what_train_printed(run_dir, tmp_path):
    """train samples with the run's seed at temperature 0.5; so does sample by default."""
    out = train_cli(run_dir.parent / "names.txt", tmp_path / "again", "--samples", 5, steps=30)
    printed = [line.strip() for line in out.split("samples (temperature 0.5):\n")[1].split("\n\n")[0].splitlines()]
    assert sample(tmp_path / "again", "--num", 5) == printed


def test_prompt_is_the_start_of_every_name(run_dir):
    names = sample(run_dir, "--prompt", "em", "--num", 8)
    assert all(name.startswith("em") for name in names)


def test_top_k_1_is_greedy_whatever_the_seed(run_dir):
    assert len(set(sample(run_dir, "--top-k", 1, "--seed", s, "--num", 1)[0] for s in range(4))) == 1


def test_tiny_and_huge_temperatures_do_not_break_sampling():
    logits = np.array([1.0, 3.0, 2.0])
    rng = np.random.default_rng(0)
    assert {sample_next(logits, rng, temperature=1e-300) for _ in range(20)} == {1}
    counts = np.bincount([sample_next(logits, rng, temperature=1e300) for _ in range(3000)], minlength=3)
    assert np.all(np.abs(counts / 3000 - 1 / 3) < 0.05)  # flat: every token about a third of the time


@pytest.mark.parametrize("args, fragment", [
    (("--prompt", "emz"), "the prompt has 1 character(s) the model never saw: 'z'"),
    (("--prompt", "É!"), "'!', 'É'"),
    (("--best", "--num", 1, "--prompt", "q"), "the prompt has 1 character(s) the model never saw: 'q'"),
])
def test_bad_prompts(run_dir, args, fragment):
    code, _, err = run_main("sample", run_dir, *args)
    assert_clean_error(code, err, command="sample", exit_code=2)
    assert fragment in err


def test_a_prompt_longer_than_the_context_slides_the_window(run_dir):
    """block_size is 10: the model reads the prompt's last 10 characters and goes on from there."""
    prompt = "emmaolivia" * 3
    names = sample(run_dir, "--prompt", prompt, "--num", 3, "--max-new-tokens", 12)
    assert all(name.startswith(prompt) and len(name) <= len(prompt) + 12 for name in names)
    assert sample(run_dir, "--prompt", prompt, "--num", 3, "--max-new-tokens", 12, "--backend", "numba") == names


def test_max_new_tokens_caps_a_name(run_dir):
    assert all(len(name) <= 2 for name in sample(run_dir, "--num", 10, "--max-new-tokens", 2))


def test_best_samples_from_the_best_checkpoint(run_dir):
    from microgpt.checkpoint import load_checkpoint
    best = load_checkpoint(str(run_dir / "best"))
    assert best.metrics["val_loss"] > 0 and best.step <= 30
    assert sample(run_dir, "--best", "--num", 4) == sample(run_dir / "best", "--num", 4)


@pytest.mark.parametrize("args, exit_code", [
    (("--num", "0"), 2), (("--temperature", "0"), 2), (("--top-k", "-1"), 2),
    (("--seed", "x"), 2), (("--backend", "gpu"), 2),
])
def test_bad_options(run_dir, args, exit_code):
    code, _, err = run_main("sample", run_dir, *args)
    assert_clean_error(code, err, command="sample", exit_code=exit_code)


def test_not_a_run(tmp_path):
    code, _, err = run_main("sample", tmp_path / "nothing")
    assert_clean_error(code, err, command="sample", exit_code=1)
    assert "is not a run directory" in err


@settings(max_examples=60, deadline=None)
@given(option=st.sampled_from(["--num", "--temperature", "--top-k", "--prompt", "--seed"]),
       value=st.text(alphabet=st.characters(blacklist_categories=("Cs",)), max_size=8)
       | st.integers(-5, 30).map(str) | st.floats().map(str))
def test_any_option_value_samples_or_fails_in_one_line(run_dir, option, value):
    code, _, err = run_main("sample", run_dir, "--num", 2, f"{option}={value}")
    if code != 0:
        assert_clean_error(code, err, command="sample", exit_code=2)
