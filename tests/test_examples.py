"""The examples run and print what their docstrings promise."""

import runpy

from tests.conftest import REPO_ROOT


def test_value_basics_prints_the_hand_computed_gradients(capsys):
    runpy.run_path(f"{REPO_ROOT}/examples/value_basics.py", run_name="__main__")
    out = capsys.readouterr().out
    assert "df/da = 1.5000" in out and "df/db = 3.6667" in out


def test_train_names_trains_and_samples(capsys):
    module = runpy.run_path(f"{REPO_ROOT}/examples/train_names.py")
    module["main"](steps=20)
    out = capsys.readouterr().out.splitlines()
    assert out[0] == "32,000 documents, 2,000 held out for validation, 4192 parameters, 20 steps"
    assert any(line.startswith("validation loss on 256 held-out predictions: ") for line in out)
    assert out[-1].strip() and len([line for line in out if line.startswith("   ")]) == 10
