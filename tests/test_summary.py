"""microgpt summary: the table of tensors, the counts, FLOPs and memory, and train's one-line form."""

import math

import numpy as np
import pytest

from microgpt.architecture import tensor_table
from microgpt.config import PRESETS, GPTConfig
from microgpt.flops import training_flops
from microgpt.numba_gpt import Workspace, layout_of
from microgpt.params import Params, count_parameters
from microgpt.summary import (describe_components, flops_per_token, memory_bytes, non_embedding_parameters,
                              short_summary, tensor_rows)
from tests.runhelpers import assert_clean_error, run_main, train

DEFAULT = GPTConfig(27)
GPT2 = GPTConfig(27, **PRESETS["gpt2"])


def table_of(output):
    """{tensor name: parameters} from the rows of `microgpt summary`'s table."""
    header, *lines = output.split("\n\n")[1].splitlines()
    end = header.index("parameters") + len("parameters")     # the counts are right-aligned to it
    return {line.split()[0]: int(line[:end].split()[-1].replace(",", "")) for line in lines}


def number_after(output, label):
    line = next(line for line in output.splitlines() if line.startswith(label))
    return int(line[len(label):].split()[0].replace(",", ""))


def test_the_default_model_is_the_4192_parameters_train_prints(names_file, tmp_path):
    code, out, err = run_main("summary")
    assert code == 0, err
    rows = table_of(out)
    assert rows == {name: math.prod(shape) for name, shape in Params(DEFAULT).shapes.items()}
    assert sum(rows.values()) == number_after(out, "total") == count_parameters(DEFAULT) == 4192
    assert number_after(out, "non-embedding") == 4192 - 27 * 16 - 16 * 16 == 3504
    # 6 FLOPs per weight in a product per token, plus attention's 6·L·C·T(T+1) over T tokens
    assert number_after(out, "training FLOPs per token") == (6 * 3504 * 16 + 6 * 16 * 16 * 17) / 16 == 22656
    trained = run_main("train", "--steps", 1, "--out", tmp_path / "run", "--samples", 0, "--val-fraction", 0)[1]
    assert "block_size 16: 4,192 parameters (3,504 without embeddings), 22,656 training FLOPs/token" in trained


@pytest.mark.parametrize("config", [DEFAULT, GPT2, GPTConfig(11, n_embd=8, n_head=2, n_layer=3, block_size=5,
                                                               mlp="swiglu", pos="sinusoidal", bias=True)])
def test_rows_are_the_tensor_table_and_add_up_to_count_parameters(config):
    rows = tensor_rows(config, 0.08)
    assert [(name, shape) for name, shape, *_ in rows] == [(t.name, t.shape) for t in tensor_table(config)]
    assert sum(count for _, _, count, *_ in rows) == count_parameters(config) == Params(config).size
    embeddings = sum(count for name, _, count, *_ in rows if name in ("wte", "wpe"))
    assert non_embedding_parameters(config) == count_parameters(config) - embeddings


def test_the_gpt2_preset_has_biases_and_no_lm_head():
    names = [name for name, *_ in tensor_rows(GPT2, 0.08)]
    assert "lm_head" not in names and "wte" in names
    for name in ("attn_bq", "attn_bk", "attn_bv", "attn_bo", "mlp_b1", "mlp_b2", "attn_norm_g", "attn_norm_b",
                 "mlp_norm_g", "mlp_norm_b"):
        assert f"layer0.{name}" in names
    assert "final_norm_g" in names and "final_norm_b" in names and "embd_norm_g" not in names
    code, out, err = run_main("summary", "--preset", "gpt2")
    assert code == 0, err
    assert table_of(out)["layer0.attn_bq"] == 16 and "lm_head" not in table_of(out)
    assert sum(table_of(out).values()) == count_parameters(GPT2)


def test_flops_per_token_is_a_full_sequences_flops_over_its_length():
    config = GPTConfig(27, n_layer=2, block_size=8)
    assert flops_per_token(config) == training_flops(config, [8]) / 8


def test_memory_is_eight_bytes_per_entry_of_weights_gradients_adam_and_the_workspace():
    P = count_parameters(DEFAULT)
    memory = memory_bytes(DEFAULT, 3, P)
    R, C, V, H, NH, T, L = 3 * 16, 16, 27, 64, 4, 16, 1
    activations = R * (12 * C + 3 * V + 2 * H + NH * T + 1 + L * (7 * C + 2 * H + NH * T + 2))
    assert memory == {"parameters": 8 * P, "gradients": 8 * P, "Adam m and v": 16 * P,
                      "activations": 8 * activations}
    assert activations == Workspace(layout_of(Params(DEFAULT)), R, np.float64).memory.size


def test_describe_components_names_only_the_changes_when_asked():
    assert describe_components(DEFAULT, only_changes=True) == ""
    assert describe_components(GPTConfig(27, attn_window=4, dropout=0.1), only_changes=True) == (
        "attention window 4, dropout 0.1")
    assert describe_components(DEFAULT).startswith("rmsnorm without weights, norm after the embedding")
    assert short_summary(DEFAULT) == "4,192 parameters (3,504 without embeddings), 22,656 training FLOPs/token"


def test_a_run_directory_is_summarised_as_its_options_would_be(names_file, tmp_path):
    train(names_file, tmp_path / "run", "--batch-size", 2, steps=1)
    code, from_run, err = run_main("summary", tmp_path / "run")
    assert code == 0, err
    code, from_options, err = run_main("summary", "--vocab-size", 19, "--n-embd", 4, "--n-head", 2,
                                       "--block-size", 10, "--batch-size", 2)
    assert code == 0, err
    assert from_run == from_options and "batch 2 × block_size 10" in from_run


@pytest.mark.parametrize("argv, fragment", [
    (("RUN", "--n-embd", "8"), "--n-embd describes a new model, but RUN_DIR is a trained one"),
    (("RUN", "--preset", "gpt2"), "--preset describes a new model"),
    (("RUN", "--config", "x.toml"), "--config describes a new model"),
    (("NOT_A_RUN",), "is not a run directory"),
    (("--vocab-size", "1"), "--vocab-size must be at least 2"),
    (("--n-embd", "10"), "n_embd (10) must be divisible by n_head (4)"),
    (("--n-layer", "1000000"), "parameters, more than"),
])
def test_bad_input_is_one_line(names_file, tmp_path, argv, fragment):
    train(names_file, tmp_path / "RUN", steps=1)
    argv = [str(tmp_path / a) if a in ("RUN", "NOT_A_RUN") else a for a in argv]
    code, _, err = run_main("summary", *argv)
    assert_clean_error(code, err, command="summary")
    assert fragment in err


def test_a_config_file_is_summarised_as_the_run_it_describes(names_file, tmp_path):
    train(names_file, tmp_path / "run", "--batch-size", 2, "--preset", "gpt2", "--mlp", "swiglu", steps=1)
    from_run = run_main("summary", tmp_path / "run")[1]
    code, from_file, err = run_main("summary", "--config", tmp_path / "run" / "config.toml", "--vocab-size", 19)
    assert code == 0, err
    assert from_file == from_run and "layer0.mlp_gate" in from_file and "batch 2 × block_size 10" in from_file
    code, overridden, err = run_main("summary", "--config", tmp_path / "run" / "config.toml", "--vocab-size", 19,
                                     "--preset", "microgpt", "--mlp", "relu", "--n-layer", 2)
    assert code == 0, err
    assert "layer1.mlp_fc1" in overridden and "layer0.mlp_gate" not in overridden
    assert "layer0.attn_norm_b" in overridden     # the file's gpt2 components stay: microgpt's preset is empty
