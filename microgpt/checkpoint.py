"""A run's whole state, saved atomically and loaded with every field checked.

A run directory holds one checkpoint made of two files:

    weights-{step:06d}-{sha8}.npz   every parameter by name, plus Adam's moments "adam.m", "adam.v"
    checkpoint.json                 format version, configs (the model's sizes and every component
                                    of its block), tokenizer, step, Adam's t, the data
                                    (file, mode, validation split, size, fingerprint), the backend
                                    and dtype, metrics (the validation loss, for the best checkpoint),
                                    and the name and SHA-256 of the weights file it belongs to

A run directory keeps its latest checkpoint at the top and, when it measures a
validation loss, the best one so far in best/ (the same two files).

Each file is written to a temporary name, fsynced and renamed into place, and the
JSON is written last: it is the commit point. A crash (or a full disk) at any
moment leaves the previous checkpoint.json pointing at its own complete weights
file; older weights files are removed only after the new JSON is in place. The
weights file is named after its content, so a save never overwrites the weights
the current JSON points to.

What is *not* stored, and why: the data order and every random number of a run
are pure functions of (seed, step). The seeded generator that draws the initial
weights is used up before step 0; the order of the documents in each epoch comes
from a generator built from (seed, epoch) when needed (`data.batch_indices`). So
no random-generator state evolves during training, and the seed plus the step
reproduce both exactly. Anything that one day draws random numbers during
training (dropout, say) must derive them from (seed, step) the same way, or its
generator state must join this file.
"""

import hashlib
import json
import math
import os
import tempfile
import zipfile
import zlib
from dataclasses import MISSING, dataclass, fields

import numpy as np

from microgpt.config import GPTConfig, TrainConfig
from microgpt.data import MODES, DataSpec
from microgpt.errors import MicrogptError, UsageError
from microgpt.limits import check_size
from microgpt.optim import Adam
from microgpt.params import Params, param_shapes
from microgpt.tokenizer import Tokenizer

FORMAT_VERSION = 4          # 2 added "data" and "backend"; 3 the data's mode and split, dtype, metrics;
                            # 4 the block's components in "model" (older checkpoints are microgpt's block)
BEST = "best"               # the subdirectory holding the best checkpoint
CHECKPOINT_JSON = "checkpoint.json"
WEIGHTS_PREFIX = "weights-"
TMP_PREFIX = ".tmp-"


@dataclass
class Checkpoint:
    """A run after `step` optimisation steps: what `save_checkpoint` writes and `load_checkpoint` returns."""

    params: Params
    tokenizer: Tokenizer
    train_config: TrainConfig
    step: int = 0                  # optimisation steps completed
    optimizer: Adam = None         # its moments and t; None for a checkpoint made without one
    data: DataSpec = None          # the data it trains on; None in format-1 checkpoints
    backend: str = "scalar"        # the engine that computes its gradients
    dtype: str = "float64"         # the precision that engine computes in
    metrics: dict = None           # e.g. {"val_loss": 2.31}: what was measured at this step, if anything

    @classmethod
    def start(cls, config, train_config, tokenizer, data=None, backend="scalar", dtype="float64"):
        """Step 0 of a new run: weights from the seeded generator, a fresh Adam(W)."""
        params = Params.init(config, np.random.default_rng(train_config.seed), train_config.init_std)
        return cls(params, tokenizer, train_config, 0, new_optimizer(params, train_config), data, backend, dtype)


def new_optimizer(params, train_config):
    """A fresh Adam(W) for `params` with the betas, eps and weight decay of `train_config`."""
    return Adam(params.size, train_config.beta1, train_config.beta2, train_config.eps,
                train_config.weight_decay, params.decay_mask())


# ---------------------------------------------------------------- saving

def save_checkpoint(run_dir, checkpoint):
    """Write `checkpoint` into `run_dir` (created if needed), atomically.

    Raises MicrogptError if the disk refuses (full, read-only, ...): the previous
    checkpoint, if any, is then left exactly as it was.
    """
    weights_name = None
    try:
        os.makedirs(run_dir, exist_ok=True)
        weights_name = _write_weights(run_dir, checkpoint)
        text = json.dumps(_meta(checkpoint, weights_name, _sha256(os.path.join(run_dir, weights_name))),
                          indent=2, ensure_ascii=False) + "\n"
        atomic_write(os.path.join(run_dir, CHECKPOINT_JSON), lambda f: f.write(text.encode("utf-8")))
    except BaseException as e:
        if weights_name is not None and weights_name != _committed_weights(run_dir):
            _remove_quietly(os.path.join(run_dir, weights_name))  # never committed: not part of any checkpoint
        if not isinstance(e, OSError):
            raise
        kept = ("the previous checkpoint there is left as it was" if _committed_weights(run_dir)
                else "no checkpoint was saved")
        raise MicrogptError(
            f"cannot save the checkpoint of step {checkpoint.step} in {run_dir} ({_reason(e)}); "
            f"{kept}: make room or fix the directory, then retry") from None
    _remove_stale_files(run_dir, keep=weights_name)


def _write_weights(run_dir, checkpoint):
    """Write the arrays to a temporary file and rename it after step and content; return the name."""
    arrays = dict(checkpoint.params.items())
    if checkpoint.optimizer is not None:
        arrays["adam.m"], arrays["adam.v"] = checkpoint.optimizer.m, checkpoint.optimizer.v

    def write(f):
        np.savez(f, **arrays)

    def name_of(tmp):  # named after step and content, so it never replaces the weights in use
        return f"{WEIGHTS_PREFIX}{checkpoint.step:06d}-{_sha256(tmp)[:8]}.npz"

    return atomic_write(run_dir, write, name_of=name_of)


def _meta(checkpoint, weights_name, weights_sha):
    return {
        "format_version": FORMAT_VERSION,
        "model": checkpoint.params.config.to_dict(),
        "train": checkpoint.train_config.to_dict(),
        "tokenizer": checkpoint.tokenizer.to_dict(),
        "step": checkpoint.step,
        "adam_t": None if checkpoint.optimizer is None else checkpoint.optimizer.t,
        "data": None if checkpoint.data is None else checkpoint.data.to_dict(),
        "backend": checkpoint.backend,
        "dtype": checkpoint.dtype,
        "metrics": checkpoint.metrics,
        "weights_file": weights_name,
        "weights_sha256": weights_sha,
    }


def atomic_write(target, write, name_of=None):
    """Call write(file) on a temporary file, fsync it, then rename it into place; return the final name.

    `target` is the final path, or (with `name_of`) the directory, and name_of(tmp)
    picks the file name once the content is written. On any failure, Ctrl-C included,
    the temporary file is removed and nothing else has changed.
    """
    directory = target if name_of else (os.path.dirname(target) or ".")
    fd, tmp = tempfile.mkstemp(dir=directory, prefix=TMP_PREFIX)
    try:
        with os.fdopen(fd, "wb") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        name = name_of(tmp) if name_of else os.path.basename(target)
        os.replace(tmp, os.path.join(directory, name))
    except BaseException:
        if os.path.exists(tmp):
            os.remove(tmp)
        raise
    _fsync_directory(directory)  # so the rename itself survives a power cut
    return name


def _fsync_directory(directory):
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:
        return  # not possible on every platform (Windows); the rename is still atomic
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def _remove_stale_files(run_dir, keep):
    """The new JSON is in place: older weights and temporary files left by a crash are garbage now."""
    for name in os.listdir(run_dir):
        stale_weights = name.startswith(WEIGHTS_PREFIX) and name.endswith(".npz") and name != keep
        if stale_weights or name.startswith(TMP_PREFIX):
            _remove_quietly(os.path.join(run_dir, name))


def _remove_quietly(path):
    try:
        os.remove(path)
    except OSError:
        pass  # garbage that stays is harmless: the JSON names the one weights file that counts


def _committed_weights(run_dir):
    """The weights file the checkpoint.json on disk points to, or None."""
    try:
        with open(os.path.join(run_dir, CHECKPOINT_JSON), encoding="utf-8") as f:
            return json.load(f).get("weights_file")
    except (OSError, ValueError, AttributeError):
        return None


def _reason(e):
    return e.strerror or str(e) or type(e).__name__


def _sha256(path):
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


# ---------------------------------------------------------------- loading

class _Bad(Exception):
    """A field of checkpoint.json that is missing or wrong; load_checkpoint turns it into one line."""


def load_checkpoint(run_dir):
    """The `Checkpoint` in `run_dir`. Raises MicrogptError, saying what is wrong and what to do, for a bad one."""
    if not os.path.isdir(run_dir):
        raise MicrogptError(f"{run_dir} is not a run directory; give the --out directory of a train run")
    json_path = os.path.join(run_dir, CHECKPOINT_JSON)
    if not os.path.isfile(json_path):
        raise MicrogptError(f"{run_dir} has no {CHECKPOINT_JSON}; give the --out directory of a train run")
    meta = _read_json(json_path)
    try:
        parsed = _parse_meta(meta)
    except _Bad as e:
        raise MicrogptError(f"{json_path} is not a valid microgpt checkpoint: {e}; "
                            f"restore it from a copy or start a new run") from None
    arrays = _read_weights(run_dir, json_path, parsed["weights_file"], parsed["weights_sha256"])
    params, optimizer = _restore(arrays, parsed, json_path)
    return Checkpoint(params, parsed["tokenizer"], parsed["train"], parsed["step"], optimizer,
                      parsed["data"], parsed["backend"], parsed["dtype"], parsed["metrics"])


def best_or_latest(run_dir, best):
    """Where the checkpoint to load is: run_dir, or its best/ subdirectory (a clear error if it has none)."""
    if not best:
        return run_dir
    path = os.path.join(run_dir, BEST)
    if not os.path.isdir(path) and os.path.isdir(run_dir):
        raise MicrogptError(f"{run_dir} has no best checkpoint (a run keeps one when it measures a "
                            f"validation loss); leave out --best to use the latest")
    return path


def _read_json(json_path):
    """The parsed JSON object, or a MicrogptError for unreadable, non-UTF-8 or malformed text."""
    try:
        with open(json_path, "rb") as f:
            meta = json.loads(f.read().decode("utf-8"))
    except OSError as e:
        raise MicrogptError(f"cannot read {json_path} ({_reason(e)})") from None
    except (ValueError, RecursionError) as e:  # JSONDecodeError and UnicodeDecodeError are ValueErrors
        raise MicrogptError(f"{json_path} is corrupt (not JSON: {e}); restore it from a copy "
                            f"or start a new run") from None
    if not isinstance(meta, dict):
        raise MicrogptError(f"{json_path} is not a microgpt checkpoint (not a JSON object)")
    version = meta.get("format_version")
    if not _is_int(version) or version < 1:
        raise MicrogptError(f"{json_path} is not a microgpt checkpoint (no valid format_version)")
    if version > FORMAT_VERSION:
        raise MicrogptError(
            f"{json_path} has format version {version}, newer than this microgpt reads "
            f"({FORMAT_VERSION}); upgrade microgpt to use it")
    return meta


def _parse_meta(meta):
    """Every field of a checkpoint.json, type- and range-checked; raises _Bad naming the first bad one."""
    config = _config(GPTConfig, _get(meta, "model", dict), "model")
    train = _config(TrainConfig, _get(meta, "train", dict), "train")
    backend = _get(meta, "backend", str) if "backend" in meta else "scalar"
    try:
        check_size(config, train, backend if backend in ("scalar", "numba") else "numba")
    except UsageError as e:   # refused before anything is allocated: a file can ask for any size
        raise _Bad(str(e).split(";")[0]) from None
    tokenizer_d = _get(meta, "tokenizer", dict)
    chars = _get(tokenizer_d, "chars", str)
    bos = _get(tokenizer_d, "bos", bool) if "bos" in tokenizer_d else True
    if len(set(chars)) != len(chars) or len(chars) + bos != config.vocab_size:
        raise _Bad(f"its tokenizer ({len(chars)} characters{' + BOS' if bos else ''}) "
                   f"does not match vocab_size {config.vocab_size}")
    step = _get(meta, "step", int)
    if not 0 <= step <= train.steps:
        raise _Bad(f"step {step} is outside 0..{train.steps}")
    adam_t = meta.get("adam_t")
    if adam_t is not None and adam_t != step:
        raise _Bad(f"adam_t ({adam_t!r}) does not match step ({step})")  # one Adam update per step
    weights_file = _get(meta, "weights_file", str)
    if os.path.basename(weights_file) != weights_file or not weights_file.endswith(".npz"):
        raise _Bad(f"weights_file {weights_file!r} is not the name of a .npz file in the run directory")
    return {"model": config, "train": train, "tokenizer": Tokenizer(chars, bos), "step": step,
            "has_optimizer": adam_t is not None, "data": _data_spec(meta.get("data")),
            "backend": backend, "dtype": _get(meta, "dtype", str) if "dtype" in meta else "float64",
            "metrics": _metrics(meta.get("metrics")),
            "weights_file": weights_file, "weights_sha256": _get(meta, "weights_sha256", str)}


def _get(d, key, kind):
    """d[key] as `kind` (int, float, str, bool or dict), or _Bad saying it is missing or what it should be."""
    if key not in d:
        raise _Bad(f'"{key}" is missing')
    return _typed(d[key], kind, key)


def _is_int(value):
    return isinstance(value, int) and not isinstance(value, bool)


def _config(cls, d, section):
    """A config dataclass from its dict: only its fields, each of its type, then validated.

    A field missing from the dict takes its default: checkpoints written before a
    field existed load as runs that did not use it (every new option defaults to off,
    and a model without its components recorded is microgpt's block).
    """
    kinds = {f.name: f.type for f in fields(cls)}
    unknown = sorted(set(d) - set(kinds))
    if unknown:
        raise _Bad(f'"{section}" has fields this microgpt does not know: {", ".join(unknown)}')
    values = {}
    for f in fields(cls):
        if f.name not in d:
            if f.default is MISSING:
                raise _Bad(f'"{section}.{f.name}" is missing')
            continue
        values[f.name] = _typed(d[f.name], f.type, f"{section}.{f.name}")
    try:
        return cls(**values).validate()
    except UsageError as e:
        raise _Bad(f'"{section}": {e}') from None


_KIND_NAMES = {int: "a whole number", float: "a finite number", str: "a string", bool: "true or false",
               dict: "an object"}


def _typed(value, kind, where):
    """`value` as `kind` (int, float, str, bool or dict), or _Bad saying what it should be."""
    if kind is float and _is_int(value):
        value = float(value)
    ok = {int: _is_int(value), float: isinstance(value, float) and math.isfinite(value),
          str: isinstance(value, str), bool: isinstance(value, bool), dict: isinstance(value, dict)}.get(kind, False)
    if not ok:
        raise _Bad(f'"{where}" should be {_KIND_NAMES[kind]}, not {value!r:.40}')
    return value


def _data_spec(d):
    """The run's DataSpec; a format-2 "data" (path, num_documents, sha256) is a file of lines, nothing held out."""
    if d is None:
        return None
    if not isinstance(d, dict):
        raise _Bad('"data" should be an object')
    if "num_documents" in d:
        spec = DataSpec(_get(d, "path", str), "lines", 0.0, _get(d, "num_documents", int), _get(d, "sha256", str))
    else:
        spec = DataSpec(_get(d, "path", str), _get(d, "mode", str), _get(d, "val_fraction", float),
                        _get(d, "size", int), _get(d, "sha256", str))
    if spec.mode not in MODES:
        raise _Bad(f'"data.mode" should be one of {", ".join(MODES)}, not {spec.mode!r:.40}')
    if not 0 <= spec.val_fraction <= 0.5:
        raise _Bad('"data.val_fraction" should be between 0 and 0.5')
    if spec.size < 1:
        raise _Bad('"data.size" should be at least 1')
    return spec


def _metrics(d):
    if d is None:
        return None
    if not isinstance(d, dict):
        raise _Bad('"metrics" should be an object')
    return {str(name): _typed(value, float, f"metrics.{name}") for name, value in d.items()}


def _read_weights(run_dir, json_path, weights_file, expected_sha):
    """The arrays of the weights file, after checking it is the very file the JSON was written with."""
    path = os.path.join(run_dir, weights_file)
    if not os.path.isfile(path):
        raise MicrogptError(f"{run_dir} is missing its weights file {weights_file}; "
                            f"restore it from a copy or start a new run")
    try:
        sha = _sha256(path)
    except OSError as e:
        raise MicrogptError(f"cannot read {path} ({_reason(e)})") from None
    if sha != expected_sha:
        raise MicrogptError(f"{path} is corrupt or truncated (its SHA-256 does not match {CHECKPOINT_JSON}); "
                            f"restore it from a copy or start a new run")
    if not zipfile.is_zipfile(path):    # np.load would call it a pickle, which would only mislead
        raise MicrogptError(f"{path} is not a weights file (not a .npz archive); "
                            f"restore it from a copy or start a new run")
    try:
        with np.load(path, allow_pickle=False) as npz:
            return {name: npz[name] for name in npz.files}
    except (ValueError, OSError, EOFError, KeyError, zipfile.BadZipFile, zlib.error) as e:
        raise MicrogptError(f"{path} is not a readable weights file ({type(e).__name__}: {e}); "
                            f"restore it from a copy or start a new run") from None


def _restore(arrays, meta, json_path):
    """Params (and Adam) from the arrays, which must be exactly the shapes the JSON's config implies."""
    expected = dict(param_shapes(meta["model"]))
    size = sum(math.prod(shape) for shape in expected.values())
    if meta["has_optimizer"]:
        expected["adam.m"] = expected["adam.v"] = (size,)
    problems = [f"{name} is missing" for name in expected if name not in arrays]
    problems += [f"{name} is there but not in this model" for name in arrays if name not in expected]
    problems += [f"{name} has shape {arrays[name].shape}, not {shape}" for name, shape in expected.items()
                 if name in arrays and arrays[name].shape != shape]
    problems += [f"{name} is {a.dtype}, not float64" for name, a in arrays.items()
                 if name in expected and a.dtype != np.float64]
    problems += [f"{name} holds NaN or infinite values" for name, a in arrays.items()
                 if name in expected and a.dtype == np.float64 and not np.isfinite(a).all()]
    if "adam.v" in arrays and arrays["adam.v"].dtype == np.float64 and (arrays["adam.v"] < 0).any():
        problems.append("adam.v holds negative values (a running mean of squares cannot be negative)")
    if problems:
        raise MicrogptError(f"the weights do not match {json_path}: {problems[0]}"
                            f"{f' (and {len(problems) - 1} more)' if len(problems) > 1 else ''}; "
                            f"restore the run from a copy or start a new run")
    params = Params(meta["model"])
    for name in params:
        params[name][...] = arrays[name]
    optimizer = None
    if meta["has_optimizer"]:
        optimizer = new_optimizer(params, meta["train"])
        optimizer.load_state_dict({"m": arrays["adam.m"], "v": arrays["adam.v"], "t": meta["step"]})
    return params, optimizer
