"""Saving and loading a run's state, atomically.

A run directory holds one checkpoint made of two files:

    weights-{step:06d}.npz   every parameter by name, plus Adam's moments "adam.m", "adam.v"
    checkpoint.json          format version, configs, tokenizer, step, Adam's t, and the
                             name and SHA-256 of the weights file it belongs to

Each file is written to a temporary name and renamed into place, and the JSON is
written last: it is the commit point. A crash at any moment leaves the previous
checkpoint.json pointing at its own complete weights file; older weights files
are removed only after the new JSON is in place.
"""

import hashlib
import json
import os
import tempfile
from dataclasses import dataclass

import numpy as np

from microgpt.config import GPTConfig, TrainConfig
from microgpt.data import Tokenizer
from microgpt.errors import MicrogptError
from microgpt.params import Params

FORMAT_VERSION = 1
CHECKPOINT_JSON = "checkpoint.json"


@dataclass
class Checkpoint:
    params: Params
    tokenizer: Tokenizer
    train_config: TrainConfig
    step: int                 # optimisation steps completed
    optimizer_state: dict     # {"m", "v", "t"} for Adam.load_state_dict, or None


def _atomic_write(path, write):
    """Call write(file) on a temporary file beside `path`, fsync it, then rename it to `path`."""
    directory = os.path.dirname(path) or "."
    fd, tmp = tempfile.mkstemp(dir=directory, prefix=".tmp-", suffix=os.path.basename(path))
    try:
        with os.fdopen(fd, "wb") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.remove(tmp)
        raise


def _sha256(path):
    with open(path, "rb") as f:
        return hashlib.sha256(f.read()).hexdigest()


def save_checkpoint(run_dir, params, tokenizer, train_config, step, optimizer=None):
    """Write the checkpoint of `step` completed steps into `run_dir` (created if needed)."""
    os.makedirs(run_dir, exist_ok=True)
    arrays = {name: view for name, view in params.items()}
    if optimizer is not None:
        arrays["adam.m"], arrays["adam.v"] = optimizer.m, optimizer.v
    weights_name = f"weights-{step:06d}.npz"
    weights_path = os.path.join(run_dir, weights_name)
    _atomic_write(weights_path, lambda f: np.savez(f, **arrays))
    meta = {
        "format_version": FORMAT_VERSION,
        "model": params.config.to_dict(),
        "train": train_config.to_dict(),
        "tokenizer": tokenizer.to_dict(),
        "step": step,
        "adam_t": None if optimizer is None else optimizer.t,
        "weights_file": weights_name,
        "weights_sha256": _sha256(weights_path),
    }
    text = json.dumps(meta, indent=2, ensure_ascii=False) + "\n"
    _atomic_write(os.path.join(run_dir, CHECKPOINT_JSON), lambda f: f.write(text.encode("utf-8")))
    for name in os.listdir(run_dir):  # the new JSON is in place: older weights are garbage now
        if name.startswith("weights-") and name.endswith(".npz") and name != weights_name:
            os.remove(os.path.join(run_dir, name))


def load_checkpoint(run_dir):
    """The `Checkpoint` in `run_dir`. Raises MicrogptError, saying what is wrong, for a bad one."""
    json_path = os.path.join(run_dir, CHECKPOINT_JSON)
    if not os.path.isdir(run_dir):
        raise MicrogptError(f"{run_dir} is not a run directory; give the --out directory of a train run")
    if not os.path.exists(json_path):
        raise MicrogptError(f"{run_dir} has no {CHECKPOINT_JSON}; give the --out directory of a train run")
    try:
        with open(json_path, encoding="utf-8") as f:
            meta = json.load(f)
        version = meta["format_version"]
        if not isinstance(version, int) or version > FORMAT_VERSION:
            raise MicrogptError(
                f"{json_path} has format version {version}, newer than this microgpt reads "
                f"({FORMAT_VERSION}); upgrade microgpt")
        config = GPTConfig(**meta["model"]).validate()
        train_config = TrainConfig(**meta["train"]).validate()
        tokenizer = Tokenizer.from_dict(meta["tokenizer"])
        step = int(meta["step"])
        weights_path = os.path.join(run_dir, os.path.basename(meta["weights_file"]))
        expected_sha = meta["weights_sha256"]
    except MicrogptError:
        raise
    except (ValueError, KeyError, TypeError) as e:
        raise MicrogptError(f"{json_path} is corrupt or not a microgpt checkpoint ({e!r})") from None
    if tokenizer.vocab_size != config.vocab_size:
        raise MicrogptError(f"{json_path} is inconsistent: its tokenizer does not match vocab_size")
    if not os.path.exists(weights_path):
        raise MicrogptError(f"{run_dir} is missing its weights file {os.path.basename(weights_path)}")
    if _sha256(weights_path) != expected_sha:
        raise MicrogptError(f"{weights_path} is corrupt (its checksum does not match {CHECKPOINT_JSON})")
    params = Params(config)
    try:
        with np.load(weights_path) as arrays:
            for name in params:
                params[name][...] = arrays[name]
            optimizer_state = None
            if meta.get("adam_t") is not None:
                optimizer_state = {"m": arrays["adam.m"], "v": arrays["adam.v"], "t": meta["adam_t"]}
    except (ValueError, KeyError, OSError) as e:
        raise MicrogptError(f"{weights_path} does not match {CHECKPOINT_JSON} ({e})") from None
    return Checkpoint(params, tokenizer, train_config, step, optimizer_state)
