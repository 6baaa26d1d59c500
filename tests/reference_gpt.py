"""The whole configurable GPT in plain NumPy, one sequence at a time, written from the formulas alone.

A test oracle for the scalar engine: every component computed the obvious way on
(T, C) arrays, with the causal (and windowed) attention as a masked (T, T) matrix
rather than a growing cache. It shares no code with `microgpt.scalar_gpt`.
"""

import numpy as np

from microgpt.architecture import sinusoidal_positions
from microgpt.constants import RMSNORM_EPS


def reference_norm(params, x, prefix):
    """The config's norm of each row of x (T, C), with the weights `prefix`_g, `prefix`_b if any."""
    c = params.config
    if c.norm == "scalenorm":
        s = params[f"{prefix}_g"][0] if c.norm_weights else np.sqrt(c.n_embd)
        return s * x / np.sqrt((x ** 2).sum(axis=1, keepdims=True) + RMSNORM_EPS)
    if c.norm == "layernorm":
        centred = x - x.mean(axis=1, keepdims=True)
        y = centred / np.sqrt((centred ** 2).mean(axis=1, keepdims=True) + RMSNORM_EPS)
    else:
        y = x / np.sqrt((x ** 2).mean(axis=1, keepdims=True) + RMSNORM_EPS)
    if c.norm_weights:
        y = y * params[f"{prefix}_g"]
        if c.norm == "layernorm":
            y = y + params[f"{prefix}_b"]
    return y


def reference_linear(params, x, weight, bias):
    """x·Wᵀ (+ b when the config has biases): (T, in) -> (T, out)."""
    y = x @ params[weight].T
    return y + params[bias] if params.config.bias else y


def allowed_keys(T, window):
    """(T, T) bool: query p may attend to key s (s ≤ p, and s > p - window when window > 0)."""
    p, s = np.arange(T)[:, None], np.arange(T)[None, :]
    return (s <= p) & ((window == 0) | (s > p - window))


def reference_logits(params, tokens, masks=None, first_row=0):
    """Logits (T, V) for the T input `tokens`; `masks` (DropoutMasks) at rows first_row .. first_row + T - 1."""
    c, T = params.config, len(tokens)
    rows, HS = np.arange(first_row, first_row + T), c.head_dim
    positions = params["wpe"][:T] if c.pos == "learned" else sinusoidal_positions(c.block_size, c.n_embd)[:T]
    x = params["wte"][tokens] + positions
    if c.embed_norm:
        x = reference_norm(params, x, "embd_norm")
    allowed = allowed_keys(T, c.attn_window)
    for layer in range(c.n_layer):
        p = f"layer{layer}."
        h = reference_norm(params, x, p + "attn_norm")
        q, k, v = (reference_linear(params, h, p + f"attn_w{n}", p + f"attn_b{n}") for n in "qkv")
        heads = np.empty((T, c.n_embd))
        for head in range(c.n_head):
            cols = slice(head * HS, (head + 1) * HS)
            scores = np.where(allowed, q[:, cols] @ k[:, cols].T / np.sqrt(HS), -np.inf)
            weights = np.exp(scores - scores.max(axis=1, keepdims=True))
            weights /= weights.sum(axis=1, keepdims=True)
            if masks is not None:
                weights = weights * masks.attn[layer][rows, head, :T]
            heads[:, cols] = weights @ v[:, cols]
        branch = reference_linear(params, heads, p + "attn_wo", p + "attn_bo")
        x = x + (branch if masks is None else branch * masks.attn_out[layer][rows])
        h = reference_norm(params, x, p + "mlp_norm")
        a = reference_linear(params, h, p + "mlp_fc1", p + "mlp_b1")
        if c.mlp == "relu":
            hidden = np.maximum(a, 0.0)
        elif c.mlp == "gelu":
            hidden = 0.5 * a * (1.0 + np.tanh(np.sqrt(2.0 / np.pi) * (a + 0.044715 * a ** 3)))
        else:
            z = reference_linear(params, h, p + "mlp_gate", p + "mlp_bgate")
            hidden = a * z / (1.0 + np.exp(-z))
        branch = reference_linear(params, hidden, p + "mlp_fc2", p + "mlp_b2")
        x = x + (branch if masks is None else branch * masks.mlp_out[layer][rows])
    if c.final_norm:
        x = reference_norm(params, x, "final_norm")
    return x @ params["wte" if c.tie_weights else "lm_head"].T


def reference_loss(params, batch, masks=None):
    """Mean cross-entropy over every prediction of the batch (rows laid end to end, as the masks are)."""
    losses, row = [], 0
    for tokens in batch:
        logits = reference_logits(params, list(tokens[:-1]), masks, row)
        shifted = logits - logits.max(axis=1, keepdims=True)
        log_probs = shifted - np.log(np.exp(shifted).sum(axis=1, keepdims=True))
        losses += list(-log_probs[np.arange(len(tokens) - 1), tokens[1:]])
        row += len(tokens) - 1
    return float(np.mean(losses))
