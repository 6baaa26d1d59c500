"""Useful floating-point operations of a training step: the yardstick for "how close to the machine".

A multiply-add is 2 FLOPs. For each token, the forward pass multiplies the input of
every weight matrix by that matrix: 2·P FLOPs, P = the weights in matrix products
(the layers and lm_head; the embedding tables are looked up, not multiplied). The
backward does it twice (one product for the input's gradient, one for the weight's),
so a training step costs 6·P FLOPs per token (Kaplan et al., 2020, and nanoGPT's MFU).

Causal attention adds, per layer and per sequence of T tokens, the scores q·k and
the weighted sum of v over the T(T+1)/2 (query, key) pairs of the causal triangle:
2·C·T(T+1) FLOPs forward, three times that for a training step. Padding is not
useful work, so T is each sequence's own length:

    training FLOPs = 6·P·N + 6·L·C·Σ_d T_d(T_d + 1)          N = Σ_d T_d tokens

Elementwise work (rmsnorm, softmax, relu, Adam) is not counted: it is a few percent
of the arithmetic and is bound by memory, not by the multipliers.
"""

from math import prod

from microgpt.params import param_shapes

EMBEDDINGS = ("wte", "wpe")     # looked up, not multiplied


def matmul_params(config):
    """P: the weights of config that take part in matrix products (all but the embedding tables)."""
    return sum(prod(shape) for name, shape in param_shapes(config).items() if name not in EMBEDDINGS)


def training_flops(config, lengths):
    """Useful FLOPs of one training step (forward and backward) on sequences of `lengths` predictions each."""
    tokens = sum(lengths)
    causal_pairs = sum(t * (t + 1) for t in lengths)        # twice the (query, key) pairs
    return 6 * matmul_params(config) * tokens + 6 * config.n_layer * config.n_embd * causal_pairs
