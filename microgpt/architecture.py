"""The architecture as one table: every parameter tensor, its shape, how it starts, what it does.

`tensor_table(config)` lists the tensors of a `GPTConfig` in the order they sit in
the flat parameter vector; `Params`, both engines, the parameter count, the FLOP
count and the checkpoints all read it, so the layout is written down once. A
tensor is in the table only when its component is switched on (C = n_embd,
V = vocab_size, T = block_size, H = n_hidden):

    wte                   (V, C)   token embedding
    wpe                   (T, C)   position embedding               [pos = learned]
    embd_norm_g, _b       (C,)     gain, bias of the embedding norm [embed_norm, norm_weights]
    per layer i, "layer{i}.":
      attn_norm_g, _b     (C,)     gain, bias of the norm before attention  [norm_weights]
      attn_wq, _wk, _wv   (C, C)   query, key, value projections (adjacent: one (3C, C) matrix)
      attn_bq, _bk, _bv   (C,)     their biases                             [bias]
      attn_wo             (C, C)   output projection
      attn_bo             (C,)                                              [bias]
      mlp_norm_g, _b      (C,)     gain, bias of the norm before the MLP    [norm_weights]
      mlp_fc1             (H, C)   up-projection
      mlp_gate            (H, C)   the gate's projection                    [mlp = swiglu]
      mlp_b1, mlp_bgate   (H,)     their biases                             [bias]
      mlp_fc2             (C, H)   down-projection
      mlp_b2              (C,)                                              [bias]
    final_norm_g, _b      (C,)     gain, bias of the norm before the head   [final_norm, norm_weights]
    lm_head               (V, C)   residual stream -> logits                [not tie_weights]

A norm's bias exists for layernorm only; scalenorm has a single learned scale
`_g` of shape (1,) instead of a per-channel gain.

What each component computes (eps = RMSNORM_EPS; g, b are the gain and bias):

    rmsnorm     y = x·rstd (·g),              rstd = 1/sqrt(mean(x²) + eps)
    layernorm   y = (x − μ)·rstd (·g + b),    μ = mean(x), rstd = 1/sqrt(mean((x − μ)²) + eps)
    scalenorm   y = s·x / sqrt(Σx² + eps),    s learned (starts at √C) or the constant √C
    relu        max(0, a)
    gelu        0.5·a·(1 + tanh(√(2/π)·(a + 0.044715·a³)))          (GPT-2's tanh form)
    swiglu      h = (x·fc1ᵀ) ⊙ silu(x·gateᵀ), silu(z) = z·sigmoid(z); out = h·fc2ᵀ
    sinusoidal  PE[p, 2i] = sin(p / 10000^(2i/C)), PE[p, 2i+1] = cos(p / 10000^(2i/C)), added like wpe
    window W    the query at p attends to keys s with max(0, p − W + 1) ≤ s ≤ p (W = 0: all s ≤ p)
    bias        y = x·Wᵀ + b on every linear layer but lm_head
    tying       logits = x·wteᵀ, no lm_head: wte's gradient sums its two uses
    dropout     inverted dropout on the attention weights and on each residual branch (training only)

Initialisation rules (`Tensor.init`): "normal" N(0, σ²) with σ = init_std (microgpt) or
0.02 (gpt2); "normal_residual" the same for microgpt, 0.02/√(2·n_layer) for gpt2 (the
projections that write into the residual stream: attn_wo, mlp_fc2); "ones", "zeros",
and "sqrt_C" (scalenorm's scale).
"""

import math
from typing import NamedTuple

import numpy as np

GPT2_STD = 0.02      # GPT-2's initial standard deviation of every weight matrix


class Tensor(NamedTuple):
    """One parameter tensor: its name in the flat vector, its shape, how it is initialised, what it is."""
    name: str        # e.g. "layer0.attn_wq"
    shape: tuple     # (rows, cols) for a matrix, (n,) for a gain or bias
    init: str        # "normal", "normal_residual", "ones", "zeros" or "sqrt_C"
    role: str        # a few words, e.g. "query projection"


def norm_tensors(prefix, config, where):
    """The learned weights of the norm called `prefix` (none without norm_weights)."""
    if not config.norm_weights:
        return []
    if config.norm == "scalenorm":
        return [Tensor(f"{prefix}_g", (1,), "sqrt_C", f"scale of the {where} norm")]
    tensors = [Tensor(f"{prefix}_g", (config.n_embd,), "ones", f"gain of the {where} norm")]
    if config.norm == "layernorm":
        tensors.append(Tensor(f"{prefix}_b", (config.n_embd,), "zeros", f"bias of the {where} norm"))
    return tensors


def layer_tensors(i, config):
    """The tensors of block i, in flat-vector order."""
    C, H, p = config.n_embd, config.n_hidden, f"layer{i}."
    bias = config.bias
    swiglu = config.mlp == "swiglu"
    tensors = norm_tensors(p + "attn_norm", config, "attention")
    tensors += [Tensor(p + "attn_wq", (C, C), "normal", "query projection"),
                Tensor(p + "attn_wk", (C, C), "normal", "key projection"),
                Tensor(p + "attn_wv", (C, C), "normal", "value projection")]
    if bias:
        tensors += [Tensor(p + "attn_bq", (C,), "zeros", "query bias"),
                    Tensor(p + "attn_bk", (C,), "zeros", "key bias"),
                    Tensor(p + "attn_bv", (C,), "zeros", "value bias")]
    tensors.append(Tensor(p + "attn_wo", (C, C), "normal_residual", "attention output projection"))
    if bias:
        tensors.append(Tensor(p + "attn_bo", (C,), "zeros", "attention output bias"))
    tensors += norm_tensors(p + "mlp_norm", config, "MLP")
    tensors.append(Tensor(p + "mlp_fc1", (H, C), "normal", "MLP up-projection"))
    if swiglu:
        tensors.append(Tensor(p + "mlp_gate", (H, C), "normal", "MLP gate projection"))
    if bias:
        tensors.append(Tensor(p + "mlp_b1", (H,), "zeros", "MLP up-projection bias"))
        if swiglu:
            tensors.append(Tensor(p + "mlp_bgate", (H,), "zeros", "MLP gate bias"))
    tensors.append(Tensor(p + "mlp_fc2", (C, H), "normal_residual", "MLP down-projection"))
    if bias:
        tensors.append(Tensor(p + "mlp_b2", (C,), "zeros", "MLP down-projection bias"))
    return tensors


def tensor_table(config):
    """Every parameter tensor of `config` (a `GPTConfig`), in the order of the flat vector."""
    C, V = config.n_embd, config.vocab_size
    tensors = [Tensor("wte", (V, C), "normal", "token embedding")]
    if config.pos == "learned":
        tensors.append(Tensor("wpe", (config.block_size, C), "normal", "position embedding"))
    if config.embed_norm:
        tensors += norm_tensors("embd_norm", config, "embedding")
    for i in range(config.n_layer):
        tensors += layer_tensors(i, config)
    if config.final_norm:
        tensors += norm_tensors("final_norm", config, "final")
    if not config.tie_weights:
        tensors.append(Tensor("lm_head", (V, C), "normal", "residual stream -> logits"))
    return tensors


def init_std_of(tensor, config, init_std):
    """The standard deviation a "normal" or "normal_residual" tensor is drawn with."""
    if config.init == "microgpt":
        return init_std
    if tensor.init == "normal_residual":
        return GPT2_STD / math.sqrt(2 * config.n_layer)
    return GPT2_STD


def init_value(tensor, config):
    """The constant a tensor with a constant rule starts at: "ones" 1, "zeros" 0, "sqrt_C" √C."""
    return {"ones": 1.0, "zeros": 0.0, "sqrt_C": math.sqrt(config.n_embd)}[tensor.init]


def init_description(tensor, config, init_std):
    """How `tensor` starts, for a person: "N(0, 0.08²)", "N(0, 0.0041²)", "1", "0", "√C = 4"."""
    if tensor.init.startswith("normal"):
        return f"N(0, {init_std_of(tensor, config, init_std):.2g}²)"
    if tensor.init == "sqrt_C":
        return f"√C = {math.sqrt(config.n_embd):.3g}"
    return f"{init_value(tensor, config):g}"


def sinusoidal_positions(block_size, n_embd):
    """The fixed (T, C) table PE[p, 2i] = sin(p / 10000^(2i/C)), PE[p, 2i+1] = cos(p / 10000^(2i/C))."""
    positions = np.arange(block_size, dtype=np.float64)[:, None]               # (T, 1)
    even = np.arange(0, n_embd, 2, dtype=np.float64)                           # 2i, (ceil(C/2),)
    angles = positions / 10000.0 ** (even / n_embd)                            # (T, ceil(C/2))
    table = np.empty((block_size, n_embd))
    table[:, 0::2] = np.sin(angles)
    table[:, 1::2] = np.cos(angles[:, :n_embd // 2])                           # odd C: no last cos
    return table
