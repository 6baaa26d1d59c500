"""The table of tensors: names, shapes and order per component, counts, FLOPs, init rules, positions."""

import math
from dataclasses import replace

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from microgpt.architecture import init_description, sinusoidal_positions, tensor_table
from microgpt.config import MLPS, NORMS, POSITIONS, PRESETS, GPTConfig
from microgpt.flops import attention_pairs, matmul_params, training_flops
from microgpt.params import Params, count_parameters, param_shapes

C, V, T = 8, 7, 6


def config_of(**components):
    return GPTConfig(vocab_size=V, n_embd=C, n_head=2, n_layer=2, block_size=T, **components)


def test_default_table_is_microgpts_layout():
    layer = [("attn_wq", (C, C)), ("attn_wk", (C, C)), ("attn_wv", (C, C)), ("attn_wo", (C, C)),
             ("mlp_fc1", (4 * C, C)), ("mlp_fc2", (C, 4 * C))]
    want = ([("wte", (V, C)), ("wpe", (T, C))] + [(f"layer{i}.{n}", s) for i in range(2) for n, s in layer]
            + [("lm_head", (V, C))])
    assert [(t.name, t.shape) for t in tensor_table(config_of())] == want
    assert {t.init for t in tensor_table(config_of())} == {"normal", "normal_residual"}


def test_gpt2_table():
    table = tensor_table(GPTConfig(vocab_size=V, n_embd=C, n_head=2, n_layer=1, block_size=T, **PRESETS["gpt2"]))
    assert [(t.name, t.shape, t.init) for t in table] == [
        ("wte", (V, C), "normal"), ("wpe", (T, C), "normal"),
        ("layer0.attn_norm_g", (C,), "ones"), ("layer0.attn_norm_b", (C,), "zeros"),
        ("layer0.attn_wq", (C, C), "normal"), ("layer0.attn_wk", (C, C), "normal"),
        ("layer0.attn_wv", (C, C), "normal"),
        ("layer0.attn_bq", (C,), "zeros"), ("layer0.attn_bk", (C,), "zeros"), ("layer0.attn_bv", (C,), "zeros"),
        ("layer0.attn_wo", (C, C), "normal_residual"), ("layer0.attn_bo", (C,), "zeros"),
        ("layer0.mlp_norm_g", (C,), "ones"), ("layer0.mlp_norm_b", (C,), "zeros"),
        ("layer0.mlp_fc1", (4 * C, C), "normal"), ("layer0.mlp_b1", (4 * C,), "zeros"),
        ("layer0.mlp_fc2", (C, 4 * C), "normal_residual"), ("layer0.mlp_b2", (C,), "zeros"),
        ("final_norm_g", (C,), "ones"), ("final_norm_b", (C,), "zeros")]


def test_swiglu_scalenorm_and_sinusoidal_tensors():
    config = config_of(mlp="swiglu", bias=True, norm="scalenorm", norm_weights=True, final_norm=True,
                       pos="sinusoidal")
    shapes = param_shapes(config)
    H = (2 * 4 * C) // 3
    assert list(shapes)[:2] == ["wte", "embd_norm_g"] and shapes["embd_norm_g"] == (1,)
    names = [n for n in shapes if n.startswith("layer0.mlp")]
    assert names == ["layer0.mlp_norm_g", "layer0.mlp_fc1", "layer0.mlp_gate", "layer0.mlp_b1",
                     "layer0.mlp_bgate", "layer0.mlp_fc2", "layer0.mlp_b2"]
    assert shapes["layer0.mlp_gate"] == (H, C) and shapes["layer0.mlp_bgate"] == (H,)
    assert shapes["layer1.mlp_fc2"] == (C, H) and list(shapes)[-2:] == ["final_norm_g", "lm_head"]


@st.composite
def any_config(draw):
    return GPTConfig(vocab_size=draw(st.integers(2, 9)), n_embd=2 * draw(st.integers(1, 6)), n_head=2,
                     n_layer=draw(st.integers(1, 3)), block_size=draw(st.integers(1, 8)),
                     norm=draw(st.sampled_from(NORMS)), norm_weights=draw(st.booleans()),
                     embed_norm=draw(st.booleans()), final_norm=draw(st.booleans()),
                     mlp=draw(st.sampled_from(MLPS)), mlp_ratio=draw(st.integers(1, 4)),
                     pos=draw(st.sampled_from(POSITIONS)), bias=draw(st.booleans()),
                     tie_weights=draw(st.booleans()), init=draw(st.sampled_from(["microgpt", "gpt2"])))


@settings(max_examples=60, deadline=None)
@given(any_config())
def test_count_and_layout_agree_with_the_table(config):
    table = tensor_table(config)
    params = Params(config)
    assert count_parameters(config) == params.size == sum(math.prod(t.shape) for t in table)
    assert len({t.name for t in table}) == len(table)
    for i in range(config.n_layer):   # q, k, v side by side: one (3C, C) matrix
        q = params.offsets[f"layer{i}.attn_wq"]
        assert params.offsets[f"layer{i}.attn_wk"] == q + config.n_embd ** 2
        assert params.offsets[f"layer{i}.attn_wv"] == q + 2 * config.n_embd ** 2
    mask = params.decay_mask()
    assert mask.sum() == sum(math.prod(t.shape) for t in table if len(t.shape) == 2)


def test_count_of_an_absurd_gpt2_without_building_it():
    """V·C + T·C + 2C (final LN) + L·(12C² + 13C): a billion layers counted, not listed."""
    config = GPTConfig(vocab_size=V, n_embd=C, n_head=2, n_layer=10**9, block_size=T, **PRESETS["gpt2"])
    assert count_parameters(config) == V * C + T * C + 2 * C + 10**9 * (12 * C * C + 13 * C)


def test_matmul_params_count_each_product_once():
    default = config_of()
    assert matmul_params(default) == 2 * 12 * C * C + V * C                 # layers + lm_head
    assert matmul_params(config_of(tie_weights=True)) == matmul_params(default)   # wte is the head
    assert matmul_params(config_of(bias=True)) == matmul_params(default)    # biases are elementwise
    H = (2 * 4 * C) // 3
    assert matmul_params(config_of(mlp="swiglu")) == 2 * (4 * C * C + 3 * H * C) + V * C


@pytest.mark.parametrize("length,window", [(1, 0), (5, 0), (5, 2), (5, 5), (5, 9), (7, 1)])
def test_attention_pairs_count_the_window(length, window):
    pairs = sum(1 for p in range(length) for s in range(length)
                if s <= p and (window == 0 or s > p - window))
    assert attention_pairs(length, window) == 2 * pairs


def test_training_flops_with_a_window():
    config = config_of(attn_window=2)
    assert training_flops(config, [5]) == 6 * matmul_params(config) * 5 + 6 * 2 * C * 2 * (1 + 2 + 2 + 2 + 2)


def test_default_init_draws_exactly_as_before():
    """One N(0, std²) draw of the whole vector, in order: the default golden numbers stay put."""
    config = config_of()
    params = Params.init(config, np.random.default_rng(5), std=0.08)
    np.testing.assert_array_equal(params.flat, np.random.default_rng(5).normal(0.0, 0.08, size=params.size))


def test_microgpt_init_draws_the_matrices_in_order_and_sets_the_rest():
    config = config_of(norm="layernorm", norm_weights=True, bias=True, final_norm=True, mlp="swiglu")
    params = Params.init(config, np.random.default_rng(5), std=0.08)
    matrices = [t.name for t in params.table if len(t.shape) == 2]
    drawn = np.concatenate([params[name].ravel() for name in matrices])
    np.testing.assert_array_equal(drawn, np.random.default_rng(5).normal(0.0, 0.08, size=drawn.size))
    for t in params.table:
        if t.init == "ones":
            assert (params[t.name] == 1.0).all(), t.name
        elif t.init == "zeros":
            assert (params[t.name] == 0.0).all(), t.name


def test_gpt2_init_rules():
    """N(0, 0.02²) matrices, residual projections N(0, (0.02/√(2L))²), gains 1, biases 0."""
    config = GPTConfig(vocab_size=V, n_embd=64, n_head=2, n_layer=2, block_size=T, **PRESETS["gpt2"])
    params = Params.init(config, np.random.default_rng(0), std=0.08)    # gpt2 ignores init_std
    assert params["layer0.mlp_fc1"].std() == pytest.approx(0.02, rel=0.03)
    assert params["layer1.attn_wq"].std() == pytest.approx(0.02, rel=0.05)
    assert params["layer0.mlp_fc2"].std() == pytest.approx(0.01, rel=0.03)
    assert params["layer1.attn_wo"].std() == pytest.approx(0.01, rel=0.05)
    assert (params["layer1.mlp_norm_g"] == 1).all() and (params["final_norm_b"] == 0).all()
    assert (params["layer0.attn_bq"] == 0).all() and (params["layer1.mlp_b2"] == 0).all()
    scalenorm = Params.init(replace(config, norm="scalenorm"), np.random.default_rng(0))
    assert scalenorm["layer0.attn_norm_g"].tolist() == [8.0]


def test_init_descriptions():
    gpt2 = GPTConfig(vocab_size=V, n_embd=16, n_head=2, n_layer=12, block_size=T, **PRESETS["gpt2"])
    table = {t.name: t for t in tensor_table(gpt2)}
    assert init_description(table["wte"], gpt2, 0.08) == "N(0, 0.02²)"
    assert init_description(table["layer3.attn_wo"], gpt2, 0.08) == "N(0, 0.0041²)"
    assert init_description(table["layer3.attn_norm_g"], gpt2, 0.08) == "1"
    assert init_description(table["layer3.attn_bo"], gpt2, 0.08) == "0"
    scale = tensor_table(replace(gpt2, norm="scalenorm"))[2]
    assert (scale.name, init_description(scale, gpt2, 0.08)) == ("layer0.attn_norm_g", "√C = 4")
    default = config_of()
    assert {init_description(t, default, 0.08) for t in tensor_table(default)} == {"N(0, 0.08²)"}


@pytest.mark.parametrize("n_embd", [6, 7])
def test_sinusoidal_positions_formula(n_embd):
    table = sinusoidal_positions(5, n_embd)
    assert table.shape == (5, n_embd) and table.dtype == np.float64
    for p in range(5):
        for j in range(n_embd):
            i = j // 2
            angle = p / 10000 ** (2 * i / n_embd)
            assert table[p, j] == pytest.approx(math.sin(angle) if j % 2 == 0 else math.cos(angle), abs=1e-15)
