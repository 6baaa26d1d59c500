"""train --config FILE.toml: reading, precedence, clean errors, and config.toml repeating a run exactly."""

import tomllib

import numpy as np
import pytest

from microgpt.checkpoint import load_checkpoint
from microgpt.cli import build_parser
from microgpt.commands.train import resolve_options
from microgpt.config import PRESETS
from microgpt.configfile import format_toml, read_config_file
from microgpt.errors import UsageError
from microgpt.runlog import read_log
from tests.runhelpers import assert_clean_error, run_main, train


def resolved(*argv):
    """The parsed arguments of `microgpt train ARGV` after --config and --preset are applied."""
    args = build_parser().parse_args(["train", *map(str, argv)])
    resolve_options(args)
    return args


# ------------------------------------------------------------------ the TOML writer

@pytest.mark.parametrize("value", [0.1, 1e-08, 1 / 3, 2.5e300, 5e-324, -0.0, 0.85, 123456789.123456789])
def test_floats_read_back_as_the_same_float(value):
    text = format_toml({"t": {"x": value}})
    read = tomllib.loads(text)["t"]["x"]
    assert read == value and np.copysign(1, read) == np.copysign(1, value)


def test_strings_ints_and_bools_read_back_unchanged():
    tables = {"a": {"s": 'a "quoted" \\ path\nwith\ttabs, é and \x01', "n": -7, "yes": True, "no": False},
              "b": {"empty": ""}}
    assert tomllib.loads(format_toml(tables, comment="two\nlines")) == tables


def test_format_toml_lays_out_tables():
    assert format_toml({"model": {"n_embd": 16, "bias": False}, "run": {"backend": "scalar"}}, comment="hi") == (
        '# hi\n\n[model]\nn_embd = 16\nbias = false\n\n[run]\nbackend = "scalar"\n')


# ------------------------------------------------------------------ reading and precedence

def test_every_table_maps_to_its_options(tmp_path):
    path = tmp_path / "c.toml"
    path.write_text('[model]\npreset = "gpt2"\nn_embd = 8\nbias = false\ndropout = 0\n'
                    '[train]\nlr = 1\nsteps = 7\ninit_std = 0.05\n'
                    '[data]\npath = "x.txt"\nmode = "text"\nval_fraction = 0.2\n'
                    '[run]\nbackend = "numba"\ndtype = "float32"\n')
    assert read_config_file(path) == dict(preset="gpt2", n_embd=8, bias=False, dropout=0.0, lr=1.0, steps=7,
                                          init_std=0.05, data="x.txt", data_mode="text", val_fraction=0.2,
                                          backend="numba", dtype="float32")


def test_precedence_defaults_file_preset_file_values_flag_preset_flags(tmp_path):
    path = tmp_path / "c.toml"
    path.write_text('[model]\npreset = "gpt2"\nbias = false\nn_embd = 8\n[train]\nsteps = 9\nlr = 0.02\n')
    args = resolved("--config", path, "--lr", 0.5)
    assert (args.norm, args.bias, args.tie_weights, args.n_embd, args.steps, args.lr) == (
        "layernorm", False, True, 8, 9, 0.5)
    assert args.mlp_ratio is None and args.n_head is None     # neither file nor preset sets them: the defaults
    assert args.sources["norm"] == f"preset gpt2 in {path}" and args.sources["bias"] == str(path)
    # a --preset on the command line is over the file's values, the other flags over everything
    args = resolved("--config", path, "--preset", "microgpt", "--n-embd", 12)
    assert (args.bias, args.norm, args.n_embd) == (False, "layernorm", 12)   # microgpt's preset is empty
    path.write_text('[model]\nnorm = "scalenorm"\nmlp = "relu"\n')
    args = resolved("--config", path, "--preset", "gpt2", "--mlp", "swiglu")
    assert (args.norm, args.mlp, args.bias) == ("layernorm", "swiglu", True)
    assert args.sources["norm"] == "--preset gpt2" and "mlp" not in args.sources
    assert all(getattr(args, name) == value for name, value in PRESETS["gpt2"].items() if name != "mlp")


@pytest.mark.parametrize("text, fragment", [
    ("[model\n", "is not valid TOML"),
    ("n_embd = 16\n", "unknown table [n_embd]; expected [model], [train], [data], [run]"),
    ("[optimizer]\nlr = 0.1\n", "unknown table [optimizer]"),
    ("[model]\nvocab_size = 27\n", "unknown key 'vocab_size' in [model]; expected one of: preset, n_embd"),
    ("[train]\nlearning_rate = 0.1\n", "unknown key 'learning_rate' in [train]"),
    ("[model]\nn_embd = \"16\"\n", "[model] n_embd should be a whole number, not '16'"),
    ("[model]\nn_embd = 16.0\n", "[model] n_embd should be a whole number, not 16.0"),
    ("[model]\nbias = 1\n", "[model] bias should be true or false, not 1"),
    ("[train]\nlr = true\n", "[train] lr should be a number, not True"),
    ("[train]\nlr = nan\n", "[train] lr should be a finite number, not nan"),
    ("[model]\nnorm = [1, 2]\n", "[model] norm should be a string, not list"),
    ("[run]\nbackend = \"gpu\"\n", "[run] backend should be one of scalar, numba, not 'gpu'"),
    ("[model]\npreset = \"llama\"\n", "[model] preset should be one of microgpt, gpt2, not 'llama'"),
    ("[data]\nmode = \"words\"\n", "[data] mode should be one of auto, lines, text"),
    ("[data]\nval_fraction = 0.9\n", "[data] val_fraction should be from 0 to 0.5, not 0.9"),
    ("[data]\nsize = 4\n", "unknown key 'size' in [data]; expected one of: path, mode, val_fraction"),
])
def test_a_bad_file_is_one_line_naming_the_file_and_the_key(names_file, tmp_path, text, fragment):
    path = tmp_path / "bad.toml"
    path.write_text(text)
    with pytest.raises(UsageError) as info:
        read_config_file(path)
    assert fragment in str(info.value) and str(path) in str(info.value)
    code, _, err = run_main("train", names_file, "--config", path, "--out", tmp_path / "never")
    assert_clean_error(code, err, exit_code=2)
    assert fragment in err and not (tmp_path / "never").exists()


def test_a_missing_file_or_a_directory_is_one_line(names_file, tmp_path):
    for path, fragment in ((tmp_path / "nope.toml", "nope.toml: no such file"), (tmp_path, "is a directory")):
        code, _, err = run_main("train", names_file, "--config", path, "--out", tmp_path / "never")
        assert_clean_error(code, err, exit_code=2)
        assert fragment in err


def test_a_value_out_of_range_in_the_file_is_refused_by_the_configs_own_check(names_file, tmp_path):
    path = tmp_path / "c.toml"
    path.write_text("[model]\nn_embd = 10\nn_head = 4\n[train]\n")
    code, _, err = run_main("train", names_file, "--config", path, "--out", tmp_path / "never")
    assert_clean_error(code, err, exit_code=2)
    assert "n_embd (10) must be divisible by n_head (4)" in err


# ------------------------------------------------------------------ config.toml repeats a run

@pytest.mark.parametrize("block", [(), ("--preset", "gpt2", "--dropout", "0.1", "--attn-window", "3",
                                         "--pos", "sinusoidal")])
def test_config_toml_repeats_the_run_exactly(names_file, tmp_path, block):
    first = tmp_path / "first"
    train(names_file, first, "--lr", 0.02, "--seed", 3, "--batch-size", 2, "--warmup", 1, "--val-fraction", 0.2,
          "--schedule", "cosine", "--init-std", 0.1, "--eps", 1e-7, "--mlp-ratio", 2, *block, steps=6)
    written = tomllib.loads((first / "config.toml").read_text())
    assert written["train"]["lr"] == 0.02 and written["train"]["eps"] == 1e-7 and written["train"]["init_std"] == 0.1
    model = dict(PRESETS["gpt2"], dropout=0.1, attn_window=3, pos="sinusoidal") if block else {}
    assert all(written["model"][name] == value for name, value in model.items())
    assert written["model"]["mlp_ratio"] == 2 and written["data"] == {
        "path": str(names_file), "mode": "lines", "val_fraction": 0.2}
    assert written["run"] == {"backend": "scalar", "dtype": "float64"}

    code, _, err = run_main("train", "--config", first / "config.toml", "--out", tmp_path / "again", "--quiet",
                            "--samples", 0)
    assert code == 0, err
    a, b = read_log(first / "log.csv"), read_log(tmp_path / "again" / "log.csv")
    assert a["step"].tolist() == list(range(1, 7))
    np.testing.assert_array_equal(a["loss"], b["loss"])
    assert (tmp_path / "again" / "config.toml").read_text() == (first / "config.toml").read_text()
    np.testing.assert_array_equal(load_checkpoint(str(first)).params.flat,
                                  load_checkpoint(str(tmp_path / "again")).params.flat)


def test_flags_override_the_file(names_file, tmp_path):
    train(names_file, tmp_path / "first", steps=3)
    train(names_file, tmp_path / "second", "--config", tmp_path / "first" / "config.toml", "--seed", 9, steps=4)
    config = tomllib.loads((tmp_path / "second" / "config.toml").read_text())
    assert (config["train"]["steps"], config["train"]["seed"]) == (4, 9)


def test_resume_with_the_runs_config_and_a_differing_one(names_file, tmp_path):
    run = tmp_path / "run"
    train(names_file, run, "--stop-after", 2, steps=4)
    other = tmp_path / "other.toml"
    other.write_text((run / "config.toml").read_text().replace("n_embd = 4", "n_embd = 8"))
    code, _, err = run_main("train", "--resume", run, "--config", other, "--quiet")
    assert_clean_error(code, err, exit_code=2)
    assert f"n_embd 8 (from {other}) does not match the run's n_embd 4" in err
    assert f"take n_embd out of {other}" in err
    code, _, err = run_main("train", "--resume", run, "--config", run / "config.toml", "--quiet", "--samples", 0)
    assert code == 0, err
    assert load_checkpoint(str(run)).step == 4
