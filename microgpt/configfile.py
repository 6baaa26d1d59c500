"""A run's options as a TOML file: `train --config FILE` reads one, every run directory writes one.

The file has four tables, whose keys are the option names with underscores:

    [model]   preset, the sizes (n_embd, n_head, n_layer, block_size) and the components
              (norm, norm_weights, ..., init): GPTConfig's fields but vocab_size, which the data sets
    [train]   TrainConfig's fields (steps, lr, batch_size, seed, ..., init_std, eps)
    [data]    path, mode (auto, lines or text), val_fraction
    [run]     backend, dtype

Precedence, lowest first: the defaults, a preset named in the file, the file's own
values, a --preset on the command line, then the other command-line options.

A run writes `config.toml` with every value resolved (no preset: its values are
spelled out), so `train --config runs/x/config.toml --out runs/y` repeats run x.
Floats are written with `repr`, which reads back as the very same float.
"""

import math
import tomllib
from dataclasses import fields

from microgpt.backend import BACKENDS, DTYPES
from microgpt.config import PRESETS, GPTConfig, TrainConfig
from microgpt.data import MODES
from microgpt.errors import UsageError

CONFIG_TOML = "config.toml"

# table -> {key in the file: (the option's name in the parsed arguments, its Python type)}
TABLES = {
    "model": {"preset": ("preset", str),
              **{f.name: (f.name, f.type) for f in fields(GPTConfig) if f.name != "vocab_size"}},
    "train": {f.name: (f.name, f.type) for f in fields(TrainConfig)},
    "data": {"path": ("data", str), "mode": ("data_mode", str), "val_fraction": ("val_fraction", float)},
    "run": {"backend": ("backend", str), "dtype": ("dtype", str)},
}
# The values a few options may take (the configs' own fields are checked by their validate()).
CHOICES = {"preset": tuple(PRESETS), "data_mode": ("auto",) + MODES, "backend": BACKENDS, "dtype": DTYPES}
_KIND_NAMES = {int: "a whole number", float: "a number", str: "a string", bool: "true or false"}


def read_config_file(path):
    """The options in the TOML file `path`, as {option name: value} (option names as argparse's dests).

    Raises UsageError naming the file, the key and what it expects for a missing or
    unreadable file, bad TOML, an unknown table or key, or a value of the wrong type.
    """
    try:
        with open(path, "rb") as f:
            document = tomllib.load(f)
    except FileNotFoundError:
        raise UsageError(f"--config {path}: no such file; give a TOML file such as a run's {CONFIG_TOML}") from None
    except IsADirectoryError:
        raise UsageError(f"--config {path} is a directory; give a TOML file such as a run's {CONFIG_TOML}") from None
    except OSError as e:
        raise UsageError(f"--config {path}: cannot read it ({e.strerror or e})") from None
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as e:
        raise UsageError(f"{path} is not valid TOML ({e}); fix the file") from None
    values = {}
    for table, entries in document.items():
        if table not in TABLES:
            raise UsageError(f"{path}: unknown table [{table}]; expected {', '.join(f'[{t}]' for t in TABLES)}")
        if not isinstance(entries, dict):
            raise UsageError(f"{path}: {table} should be a table ([{table}] followed by key = value lines)")
        for key, value in entries.items():
            values.update([_checked(path, table, key, value)])
    return values


def _checked(path, table, key, value):
    """(option name, value) for `key = value` in [table], or UsageError saying what is expected."""
    known = TABLES[table]
    if key not in known:
        raise UsageError(f"{path}: unknown key {key!r} in [{table}]; expected one of: {', '.join(known)}")
    name, kind = known[key]
    if kind is float and isinstance(value, int) and not isinstance(value, bool):
        value = float(value)
    if not (isinstance(value, kind) and (kind is bool or not isinstance(value, bool))):
        raise UsageError(f"{path}: [{table}] {key} should be {_KIND_NAMES[kind]}, not {_shown(value)}")
    if kind is float and not math.isfinite(value):
        raise UsageError(f"{path}: [{table}] {key} should be a finite number, not {value}")
    if name in CHOICES and value not in CHOICES[name]:
        raise UsageError(f"{path}: [{table}] {key} should be one of {', '.join(CHOICES[name])}, not {value!r}")
    if name == "val_fraction" and not 0 <= value <= 0.5:
        raise UsageError(f"{path}: [{table}] {key} should be from 0 to 0.5, not {value}")
    return name, value


def _shown(value):
    text = repr(value) if not isinstance(value, (dict, list)) else type(value).__name__
    return text if len(text) <= 40 else text[:37] + "..."


def layered_options(file_values, file_path, flag_preset):
    """{option: (value, where it came from)} below the command line's own options: the file's preset,
    the file's values, then a --preset given on the command line, each over the ones before."""
    layers = []
    if file_values.get("preset"):
        layers.append((PRESETS[file_values["preset"]], f"preset {file_values['preset']} in {file_path}"))
    layers.append(({k: v for k, v in file_values.items() if k != "preset"}, file_path))
    if flag_preset:
        layers.append((PRESETS[flag_preset], f"--preset {flag_preset}"))
    resolved = {}
    for values, source in layers:
        resolved.update({name: (value, source) for name, value in values.items()})
    return resolved


# ------------------------------------------------------------------ writing

def run_config_tables(run):
    """The resolved options of a run (a Checkpoint), as the tables of its config.toml."""
    model = run.params.config.to_dict()
    del model["vocab_size"]
    tables = {"model": model, "train": run.train_config.to_dict()}
    if run.data is not None:
        tables["data"] = {"path": run.data.path, "mode": run.data.mode, "val_fraction": run.data.val_fraction}
    tables["run"] = {"backend": run.backend, "dtype": run.dtype}
    return tables


def format_toml(tables, comment=""):
    """TOML text for flat tables of str, int, float and bool values ({table: {key: value}})."""
    lines = [f"# {line}" for line in comment.splitlines()]
    for table, entries in tables.items():
        lines += ([""] if lines else []) + [f"[{table}]"]
        lines += [f"{key} = {_toml_value(value)}" for key, value in entries.items()]
    return "\n".join(lines) + "\n"


def _toml_value(value):
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        return repr(value)      # the shortest text that reads back as this very float (1e-08, 0.1)
    if isinstance(value, str):
        return _toml_string(value)
    raise TypeError(f"cannot write {type(value).__name__} to TOML")


def _toml_string(text):
    """A TOML basic string: quotes, backslashes and control characters escaped."""
    escaped = {'"': '\\"', "\\": "\\\\", "\n": "\\n", "\t": "\\t", "\r": "\\r"}
    out = [escaped.get(ch) or (f"\\u{ord(ch):04x}" if ord(ch) < 0x20 or ord(ch) == 0x7f else ch) for ch in text]
    return '"' + "".join(out) + '"'


def write_run_config(path, run):
    """Write config.toml for `run` at `path`, atomically (a crash leaves the old file or none)."""
    from microgpt.checkpoint import atomic_write

    text = format_toml(run_config_tables(run),
                       comment="microgpt run options, every one resolved; repeat the run with:\n"
                               "python -m microgpt train --config THIS_FILE --out NEW_RUN_DIR")
    atomic_write(path, lambda f: f.write(text.encode("utf-8")))
