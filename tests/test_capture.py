"""The capture API: what it records agrees with the model, stage by stage."""

import numpy as np
import pytest

from microgpt.scalar_gpt import RMSNORM_EPS, ScalarDecoder, ScalarGPT
from microgpt.viz.capture import capture_forward

TOKENS = [6, 0, 3, 3, 1]  # BOS (id 6 in the tiny vocabulary) then four characters


@pytest.fixture
def capture(tiny_params):
    return capture_forward(tiny_params, TOKENS)


def rmsnorm(x):
    """Row-wise rmsnorm of a (T, C) array, the numpy way."""
    return x / np.sqrt((x * x).mean(axis=1, keepdims=True) + RMSNORM_EPS)


def test_shapes_follow_the_config(capture, tiny_config):
    T, C, V = len(TOKENS), tiny_config.n_embd, tiny_config.vocab_size
    assert capture["embed.out"].shape == (T, C)
    assert capture["layer1.attn.q"].shape == (T, C)
    assert capture["layer0.mlp.fc1"].shape == (T, 4 * C)
    assert capture["layer1.mlp.rmsnorm.rstd"].shape == (T, 1)
    assert capture["lm_head.logits"].shape == (T, V)
    assert capture.attention(1, 1).shape == (T, T)


def test_logits_are_the_decoders(capture, tiny_params):
    decoder = ScalarDecoder(ScalarGPT(tiny_params))
    expected = np.array([decoder.step(t) for t in TOKENS])
    np.testing.assert_allclose(capture["lm_head.logits"], expected, rtol=0, atol=1e-12)


def test_every_stage_recomputes_from_the_previous_one(capture, tiny_params, tiny_config):
    """Rebuild the forward pass in numpy from captured pieces: each stage must match its capture."""
    hd, T = tiny_config.head_dim, len(TOKENS)
    close = lambda actual, expected: np.testing.assert_allclose(actual, expected, rtol=1e-10, atol=1e-12)
    embedded = tiny_params["wte"][TOKENS] + tiny_params["wpe"][:T]
    close(capture["embed.out"], rmsnorm(embedded))
    close(capture["embed.rmsnorm.mean_square"][:, 0], (embedded ** 2).mean(axis=1))
    x = capture["embed.out"]
    for layer in range(tiny_config.n_layer):
        W = lambda name: tiny_params[f"layer{layer}.{name}"]
        a = f"layer{layer}.attn"
        close(capture[f"{a}.rmsnorm.rstd"][:, 0], 1 / np.sqrt((x ** 2).mean(axis=1) + RMSNORM_EPS))
        for name in "qkv":
            close(capture[f"{a}.{name}"], rmsnorm(x) @ W(f"attn_w{name}").T)
        q, k, v = capture[f"{a}.q"], capture[f"{a}.k"], capture[f"{a}.v"]
        heads = []
        for h in range(tiny_config.n_head):
            cols = slice(h * hd, (h + 1) * hd)
            scores = q[:, cols] @ k[:, cols].T / np.sqrt(hd)
            scores[np.triu_indices(T, 1)] = -np.inf                      # causal: no looking ahead
            weights = np.exp(scores - scores.max(axis=1, keepdims=True))
            weights /= weights.sum(axis=1, keepdims=True)
            captured = capture.attention(layer, h)
            assert np.isnan(captured[np.triu_indices(T, 1)]).all()
            close(np.nan_to_num(captured), weights)
            heads.append(weights @ v[:, cols])
        close(capture[f"{a}.heads"], np.concatenate(heads, axis=1))
        close(capture[f"{a}.out"], x + capture[f"{a}.heads"] @ W("attn_wo").T)
        x = capture[f"{a}.out"]
        m = f"layer{layer}.mlp"
        close(capture[f"{m}.fc1"], rmsnorm(x) @ W("mlp_fc1").T)
        close(capture[f"{m}.relu"], np.maximum(capture[f"{m}.fc1"], 0))
        close(capture[f"{m}.out"], x + capture[f"{m}.relu"] @ W("mlp_fc2").T)
        x = capture[f"{m}.out"]
    close(capture["lm_head.logits"], x @ tiny_params["lm_head"].T)


def test_dead_relus_are_the_units_off_everywhere(capture, tiny_config):
    for layer in range(tiny_config.n_layer):
        relu = capture[f"layer{layer}.mlp.relu"]
        expected = [j for j in range(relu.shape[1]) if (relu[:, j] == 0).all()]
        assert capture.dead_relus(layer).tolist() == expected
        assert capture.relus_off(layer).tolist() == (relu == 0).sum(axis=1).tolist()


def test_a_unit_with_zero_weights_is_dead(tiny_params):
    """fc1 row 3 all zero: its pre-activation is 0 at every position, so its ReLU never opens."""
    params = tiny_params.copy()
    before = set(capture_forward(params, TOKENS).dead_relus(0).tolist())
    params["layer0.mlp_fc1"][3] = 0.0
    assert set(capture_forward(params, TOKENS).dead_relus(0).tolist()) == before | {3}


def test_unknown_name_says_what_was_recorded(capture):
    with pytest.raises(KeyError, match="layer0.attn.q"):
        capture["layer0.attn.query"]


def test_too_many_tokens_is_an_error(tiny_params, tiny_config):
    with pytest.raises(ValueError, match="block_size"):
        capture_forward(tiny_params, [0] * (tiny_config.block_size + 1))


def test_training_path_has_no_recorder(tiny_params):
    assert ScalarGPT(tiny_params).recorder is None


def test_the_pieces_drawings_name_are_the_right_numbers(capture, tiny_params, tiny_config):
    """scores = q·k, scaled = q·k/√HS, proj = attn_wo · heads, fc2 = mlp_fc2 · relu: what ROLES says they are."""
    hd, T = tiny_config.head_dim, len(TOKENS)
    lower = np.tril_indices(T)
    q, k = capture["layer0.attn.q"], capture["layer0.attn.k"]
    for h in range(tiny_config.n_head):
        cols = slice(h * hd, (h + 1) * hd)
        scores = q[:, cols] @ k[:, cols].T
        np.testing.assert_allclose(capture[f"layer0.attn.head{h}.scores"][lower], scores[lower], rtol=1e-12)
        np.testing.assert_allclose(capture[f"layer0.attn.head{h}.scaled"][lower], scores[lower] / np.sqrt(hd),
                                   rtol=1e-12)
        assert (capture[f"layer0.attn.head{h}.softmax.shifted"][lower].reshape(-1) <= 0).all()
    np.testing.assert_allclose(capture["layer0.attn.proj"],
                               capture["layer0.attn.heads"] @ tiny_params["layer0.attn_wo"].T, rtol=1e-12)
    np.testing.assert_allclose(capture["layer0.mlp.fc2"],
                               capture["layer0.mlp.relu"] @ tiny_params["layer0.mlp_fc2"].T, rtol=1e-12, atol=1e-15)
