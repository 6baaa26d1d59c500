"""Useful floating-point operations of a training step: the yardstick for "how close to the machine".

A multiply-add is 2 FLOPs. For each token, the forward pass multiplies the input of
every weight matrix by that matrix: 2·P FLOPs, P = the weights in matrix products
(the layers' matrices, SwiGLU's gate among them, and the head; the embedding tables
are looked up, not multiplied, except that a head tied to wte multiplies by it). The
backward does it twice (one product for the input's gradient, one for the weight's),
so a training step costs 6·P FLOPs per token (Kaplan et al., 2020, and nanoGPT's MFU).

Causal attention adds, per layer and per sequence of T tokens, the scores q·k and
the weighted sum of v over the T(T+1)/2 (query, key) pairs of the causal triangle:
2·C·T(T+1) FLOPs forward, three times that for a training step. Padding is not
useful work, so T is each sequence's own length:

    training FLOPs = 6·P·N + 6·L·C·Σ_d T_d(T_d + 1)          N = Σ_d T_d tokens

With an attention window W < T the query at p sees min(p + 1, W) keys, and the
pairs are W(W+1)/2 + W·(T − W) instead.

Elementwise work (norms, softmax, activations, biases, Adam) is not counted: it is a
few percent of the arithmetic and is bound by memory, not by the multipliers.
"""

from math import prod

from microgpt.architecture import tensor_table

EMBEDDINGS = ("wte", "wpe")     # looked up, not multiplied


def matmul_params(config):
    """P: the weights of config that take part in matrix products.

    Every matrix but the embedding tables; with tie_weights, wte is also the head and
    is counted once, for that product. Vectors (gains, biases) are elementwise work.
    """
    matrices = [t for t in tensor_table(config) if len(t.shape) == 2]
    P = sum(prod(t.shape) for t in matrices if t.name not in EMBEDDINGS)
    return P + (config.vocab_size * config.n_embd if config.tie_weights else 0)


def attention_pairs(length, window):
    """Twice the (query, key) pairs of one sequence of `length` tokens with an attention window (0: full)."""
    if window == 0 or window >= length:
        return length * (length + 1)
    return window * (window + 1) + 2 * window * (length - window)


def training_flops(config, lengths):
    """Useful FLOPs of one training step (forward and backward) on sequences of `lengths` predictions each."""
    tokens = sum(lengths)
    causal_pairs = sum(attention_pairs(t, config.attn_window) for t in lengths)
    return 6 * matmul_params(config) * tokens + 6 * config.n_layer * config.n_embd * causal_pairs
