"""The block's components on the command line: presets, flags over them, bad values, resume, checkpoints."""

import json

import pytest

from microgpt import checkpoint as ckpt
from microgpt.checkpoint import CHECKPOINT_JSON, load_checkpoint
from microgpt.cli import COMPONENT_OPTIONS, build_parser, model_options
from microgpt.config import PRESETS, GPTConfig
from microgpt.errors import MicrogptError
from tests.runhelpers import assert_clean_error, run_main, train

GPT2 = dict(norm="layernorm", norm_weights=True, embed_norm=False, final_norm=True, mlp="gelu",
            bias=True, tie_weights=True, init="gpt2")


def options(*argv):
    """model_options of `microgpt summary ARGV`, parsed but not run."""
    return model_options(build_parser().parse_args(["summary", *map(str, argv)]))


def test_every_component_has_a_flag_and_no_flag_means_the_defaults():
    assert set(COMPONENT_OPTIONS) == set(GPTConfig(2).to_dict()) - {"vocab_size", "n_embd", "n_head", "n_layer",
                                                                     "block_size"}
    assert options() == {} and options("--preset", "microgpt") == {}
    assert GPTConfig(27, **options("--preset", "microgpt")) == GPTConfig(27)


def test_the_gpt2_preset_is_gpt2s_block():
    assert PRESETS["gpt2"] == GPT2
    assert options("--preset", "gpt2") == GPT2


def test_options_beside_a_preset_override_it_whatever_their_order():
    expected = dict(GPT2, bias=False, norm="rmsnorm", mlp_ratio=2)
    assert options("--no-bias", "--preset", "gpt2", "--norm", "rmsnorm", "--mlp-ratio", 2) == expected
    assert options("--preset", "gpt2", "--mlp-ratio", 2, "--norm", "rmsnorm", "--no-bias") == expected


def test_each_flag_sets_its_field():
    given = options("--norm", "scalenorm", "--norm-weights", "--no-embed-norm", "--final-norm", "--mlp", "swiglu",
                    "--mlp-ratio", 3, "--pos", "sinusoidal", "--attn-window", 5, "--bias", "--tie-weights",
                    "--dropout", 0.25, "--init", "gpt2")
    assert given == dict(norm="scalenorm", norm_weights=True, embed_norm=False, final_norm=True, mlp="swiglu",
                         mlp_ratio=3, pos="sinusoidal", attn_window=5, bias=True, tie_weights=True, dropout=0.25,
                         init="gpt2")


@pytest.mark.parametrize("argv, fragment", [
    (("--norm", "batchnorm"), "argument --norm: invalid choice: 'batchnorm'"),
    (("--mlp", "tanh"), "argument --mlp: invalid choice"),
    (("--pos", "rotary"), "argument --pos: invalid choice"),
    (("--init", "xavier"), "argument --init: invalid choice"),
    (("--preset", "llama"), "argument --preset: invalid choice"),
    (("--dropout", "1"), "must be at least 0 and below 1"),
    (("--dropout", "-0.1"), "must be at least 0 and below 1"),
    (("--attn-window", "-1"), "must be 0 or more"),
    (("--mlp-ratio", "0"), "must be at least 1"),
    (("--bias=yes",), "argument --bias/--no-bias: ignored explicit argument 'yes'"),
])
def test_a_bad_value_is_one_line_and_exit_2(names_file, tmp_path, argv, fragment):
    for command in (("summary",), ("train", names_file, "--out", tmp_path / "never"), ("gradcheck",), ("bench",)):
        code, _, err = run_main(*command, *argv)
        assert_clean_error(code, err, command=command[0], exit_code=2)
        assert fragment in err
    assert not (tmp_path / "never").exists()


def test_a_new_run_records_its_components(names_file, tmp_path):
    train(names_file, tmp_path / "run", "--preset", "gpt2", "--no-tie-weights", "--attn-window", 3, steps=2)
    config = load_checkpoint(str(tmp_path / "run")).params.config
    assert config == GPTConfig(19, n_embd=4, n_head=2, block_size=10, **dict(GPT2, tie_weights=False),
                               attn_window=3)
    meta = json.loads((tmp_path / "run" / CHECKPOINT_JSON).read_text())
    assert meta["format_version"] == ckpt.FORMAT_VERSION == 4
    assert {name: meta["model"][name] for name in COMPONENT_OPTIONS} == {
        name: getattr(config, name) for name in COMPONENT_OPTIONS}


def test_train_names_the_components_that_differ_from_microgpts(names_file, tmp_path):
    code, out, err = run_main("train", names_file, "--out", tmp_path / "run", "--steps", 1, "--n-embd", 4,
                              "--n-head", 2, "--samples", 0, "--bias", "--mlp", "gelu")
    assert code == 0, err
    lines = out.splitlines()
    at = next(i for i, line in enumerate(lines) if line.startswith("model: "))
    assert lines[at + 1] == "       gelu MLP of hidden width 16, biases"


@pytest.fixture
def stopped_run(names_file, tmp_path):
    """A default-architecture run stopped after 2 of 4 steps."""
    train(names_file, tmp_path / "run", "--stop-after", 2, steps=4)
    return tmp_path / "run"


@pytest.mark.parametrize("argv, fragment", [
    (("--norm", "layernorm"), "--norm layernorm does not match the run's norm rmsnorm"),
    (("--bias",), "--bias does not match the run's bias False"),
    (("--dropout", "0.1"), "--dropout 0.1 does not match the run's dropout 0.0"),
    (("--preset", "gpt2"), "(from --preset gpt2) does not match the run's"),
])
def test_resume_refuses_other_components(stopped_run, argv, fragment):
    before = (stopped_run / CHECKPOINT_JSON).read_bytes()
    code, _, err = run_main("train", "--resume", stopped_run, "--quiet", *argv)
    assert_clean_error(code, err, exit_code=2)
    assert fragment in err and "leave --" in err
    assert (stopped_run / CHECKPOINT_JSON).read_bytes() == before


def test_resume_accepts_the_runs_own_components(stopped_run):
    code, _, err = run_main("train", "--resume", stopped_run, "--quiet", "--samples", 0, "--preset", "microgpt",
                            "--norm", "rmsnorm", "--no-bias", "--attn-window", 0)
    assert code == 0, err
    assert load_checkpoint(str(stopped_run)).step == 4


def test_bench_builds_its_models_with_the_components():
    from microgpt.bench import setup
    params, _, _, train_config = setup((8, 2, 1, 6, 3), components=dict(bias=True, mlp="gelu"))
    assert params.config == GPTConfig(27, n_embd=8, n_head=2, n_layer=1, block_size=6, bias=True, mlp="gelu")
    assert train_config.batch_size == 3


# ------------------------------------------------------------------ checkpoints

def rewrite_model(run_dir, change):
    meta = json.loads((run_dir / CHECKPOINT_JSON).read_text())
    change(meta)
    (run_dir / CHECKPOINT_JSON).write_text(json.dumps(meta))


def test_a_format_3_checkpoint_loads_as_the_microgpt_block(stopped_run):
    """Format 3 knew the sizes only: written by hand here, it must load with every component at its default."""
    def as_format_3(meta):
        meta["format_version"] = 3
        for name in COMPONENT_OPTIONS:
            del meta["model"][name]
    rewrite_model(stopped_run, as_format_3)
    config = load_checkpoint(str(stopped_run)).params.config
    assert config == GPTConfig(19, n_embd=4, n_head=2, block_size=10)
    assert all(getattr(config, name) == getattr(GPTConfig(19), name) for name in COMPONENT_OPTIONS)


@pytest.mark.parametrize("name, value, fragment", [
    ("norm", "batchnorm", "unknown norm 'batchnorm'; choose one of: rmsnorm, layernorm, scalenorm"),
    ("mlp", 3, '"model.mlp" should be a string, not 3'),
    ("bias", 1, '"model.bias" should be true or false, not 1'),
    ("tie_weights", "yes", '"model.tie_weights" should be true or false'),
    ("embed_norm", None, '"model.embed_norm" should be true or false, not None'),
    ("dropout", "0.1", '"model.dropout" should be a finite number'),
    ("dropout", 1.5, "dropout must be in [0, 1), got 1.5"),
    ("attn_window", -2, "attn_window must be 0"),
    ("attn_window", 2.5, '"model.attn_window" should be a whole number'),
    ("init", "xavier", "unknown init 'xavier'"),
    ("pos", "rotary", "unknown pos 'rotary'"),
    ("mlp_ratio", 0, "mlp_ratio must be at least 1"),
])
def test_a_bad_component_in_a_checkpoint_is_refused_in_one_line(stopped_run, name, value, fragment):
    rewrite_model(stopped_run, lambda meta: meta["model"].update({name: value}))
    with pytest.raises(MicrogptError) as info:
        load_checkpoint(str(stopped_run))
    assert fragment in str(info.value) and "\n" not in str(info.value)
    code, _, err = run_main("sample", stopped_run, "--num", 1)
    assert_clean_error(code, err, command="sample", exit_code=1)


def test_an_unknown_component_in_a_checkpoint_is_refused(stopped_run):
    rewrite_model(stopped_run, lambda meta: meta["model"].update(activation="tanh"))
    with pytest.raises(MicrogptError, match='"model" has fields this microgpt does not know: activation'):
        load_checkpoint(str(stopped_run))
