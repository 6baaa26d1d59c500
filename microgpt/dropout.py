"""Dropout masks, drawn outside the engines so that both apply exactly the same ones.

Inverted dropout with probability p keeps a value with probability 1 − p and then
scales it by 1/(1 − p), so its expectation is unchanged and evaluation needs no
rescaling: a mask entry is 0 or 1/(1 − p). The model multiplies

    each attention weight after the softmax     out = Σ_s (a_s·m_s)·v_s
    each residual branch before it is added      x = x + m ⊙ attn_out,  x = x + m ⊙ mlp_out

A batch is packed as N prediction rows (the sequences' input tokens end to end, in
batch order); row n of sequence d at position p is the prediction from tokens 0..p.
Masks are for training only: `loss` (evaluation) and decoding never drop.
"""

from typing import NamedTuple

import numpy as np


class DropoutMasks(NamedTuple):
    """Per layer l, float64 masks with entries in {0, 1/(1 − p)} (N rows, NH heads, T = block_size)."""
    attn: list       # [l] (N, NH, T): row n, head h, key position s within row n's sequence
    attn_out: list   # [l] (N, C): the attention branch's output at row n
    mlp_out: list    # [l] (N, C): the MLP branch's output at row n


def draw_masks(rng, lengths, config):
    """DropoutMasks for a batch whose sequences give `lengths` predictions each; None when config.dropout is 0.

    rng is a NumPy Generator; per layer it draws attn, then attn_out, then mlp_out.
    """
    p = config.dropout
    if p == 0:
        return None
    N, NH, T, C = int(sum(lengths)), config.n_head, config.block_size, config.n_embd

    def mask(shape):
        return (rng.random(shape) >= p) / (1.0 - p)

    attn, attn_out, mlp_out = [], [], []
    for _ in range(config.n_layer):
        attn.append(mask((N, NH, T)))
        attn_out.append(mask((N, C)))
        mlp_out.append(mask((N, C)))
    return DropoutMasks(attn, attn_out, mlp_out)
