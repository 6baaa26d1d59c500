"""`microgpt train` end to end, and that training actually learns."""

import numpy as np

from microgpt.config import GPTConfig, TrainConfig
from microgpt.data import load_data
from microgpt.optim import Adam
from microgpt.params import Params
from microgpt.runlog import read_log
from microgpt.scalar_gpt import ScalarBackend
from microgpt.train import train_steps

from tests.conftest import NAMES


def test_train_writes_a_run_and_prints_samples(cli, names_file, tmp_path):
    out = tmp_path / "run"
    result = cli("train", names_file, "--steps", 30, "--n-embd", 8, "--n-head", 2,
                 "--out", out, "--samples", 5)
    assert result.returncode == 0, result.stderr
    assert "Traceback" not in result.stderr
    assert "parameters" in result.stdout and "n_embd 8" in result.stdout
    samples = result.stdout.split("samples (temperature 0.5):\n")[1].split("\n\n")[0].split("\n")
    assert len(samples) == 5
    alphabet = set("".join(NAMES))
    assert all(set(s.strip()) <= alphabet for s in samples)
    assert (out / "checkpoint.json").exists() and list(out.glob("weights-*.npz"))
    assert (out / "loss.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    header = (out / "log.csv").read_text().splitlines()[0]
    assert header.startswith("step,loss,lr")
    log = read_log(out / "log.csv")
    assert log["step"].tolist() == list(range(1, 31))
    np.testing.assert_allclose(log["lr"], [0.01 * (1 - s / 30) for s in range(30)], rtol=1e-12)


def test_quiet_prints_only_the_results(cli, names_file, tmp_path):
    result = cli("train", names_file, "--steps", 3, "--n-embd", 8, "--n-head", 2,
                 "--out", tmp_path / "q", "--samples", 2, "--quiet")
    assert result.returncode == 0, result.stderr
    assert "step/s" not in result.stderr and "parameters" not in result.stdout
    assert "2 samples" in result.stdout


def test_default_out_never_overwrites_a_run(cli, names_file, tmp_path):
    for _ in range(2):
        result = cli("train", names_file, "--steps", 2, "--n-embd", 8, "--n-head", 2,
                     "--samples", 0, "--quiet", cwd=tmp_path)
        assert result.returncode == 0, result.stderr
    assert sorted(p.name for p in (tmp_path / "runs").iterdir()) == ["names", "names-2"]


def test_bad_option_is_one_line_and_exit_2(cli, names_file):
    result = cli("train", names_file, "--n-embd", 10, "--n-head", 4)
    assert result.returncode == 2
    assert len(result.stderr.strip().splitlines()) == 1 and "divisible" in result.stderr
    result = cli("train", names_file, "--steps", "ten")
    assert result.returncode == 2 and len(result.stderr.strip().splitlines()) == 1


def test_training_lowers_the_loss(names_file):
    """200 steps on 16 names: the last 50 losses average well below the first 50."""
    data = load_data(names_file, block_size=8, mode="lines", val_fraction=0.0)
    config = GPTConfig(data.tokenizer.vocab_size, n_embd=8, n_head=2, block_size=8)
    tc = TrainConfig(steps=200, lr=0.02)
    params = Params.init(config, np.random.default_rng(0))
    optimizer = Adam(params.size, tc.beta1, tc.beta2, tc.eps)
    losses = [r.loss for r in train_steps(ScalarBackend(), params, optimizer, data, tc)]
    assert np.mean(losses[-50:]) < np.mean(losses[:50]) - 0.5
