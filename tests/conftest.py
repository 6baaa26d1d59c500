"""Shared fixtures: a tiny model, a tiny training file, and a way to run the CLI."""

import os
import subprocess
import sys

import numpy as np
import pytest

from microgpt.config import GPTConfig
from microgpt.params import Params

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
NAMES = ["emma", "olivia", "ava", "isabella", "sophia", "mia", "amelia", "harper",
         "evelyn", "abigail", "liam", "noah", "oliver", "elijah", "james", "lucas"]


@pytest.fixture
def tiny_config():
    """vocab 7, n_embd 8, 2 heads, 2 layers, block 6: every code path, quickly."""
    return GPTConfig(vocab_size=7, n_embd=8, n_head=2, n_layer=2, block_size=6)


@pytest.fixture
def tiny_params(tiny_config):
    return Params.init(tiny_config, np.random.default_rng(0), std=0.3)


@pytest.fixture
def names_file(tmp_path):
    """A small one-name-per-line training file."""
    path = tmp_path / "names.txt"
    path.write_text("\n".join(NAMES) + "\n", encoding="utf-8")
    return path


def run_cli(*args, cwd=None, timeout=300, **kwargs):
    """Run `python -m microgpt ARGS` in a subprocess; returns the CompletedProcess (text mode)."""
    env = dict(os.environ, PYTHONPATH=REPO_ROOT + os.pathsep + os.environ.get("PYTHONPATH", ""))
    return subprocess.run([sys.executable, "-m", "microgpt", *map(str, args)], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=timeout, **kwargs)


@pytest.fixture
def cli():
    """`cli("train", path, "--steps", 5)` runs the CLI in a subprocess."""
    return run_cli
