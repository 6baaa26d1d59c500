"""Token and position embedding: a row lookup, and its scatter-add backward."""

import numpy as np
from numba import njit


@njit(cache=True, nogil=True)
def embedding_forward(x, tokens, positions, wte, wpe):
    """x[n] = wte[tokens[n]] + wpe[positions[n]].

    x (N, C) out;  tokens, positions (N,) int;  wte (V, C), wpe (block_size, C).
    """
    for n in range(x.shape[0]):
        for i in range(x.shape[1]):     # element by element: a row expression would allocate
            x[n, i] = wte[tokens[n], i] + wpe[positions[n], i]


@njit(cache=True, nogil=True)
def embedding_backward(dwte, dwpe, dx, tokens, positions):
    """dwte[tokens[n]] += dx[n];  dwpe[positions[n]] += dx[n].

    A lookup copies a row, so its gradient is the upstream gradient added back
    into that row; a token seen twice collects both.
    """
    for n in range(dx.shape[0]):
        for i in range(dx.shape[1]):
            dwte[tokens[n], i] += dx[n, i]
            dwpe[positions[n], i] += dx[n, i]


def embedding_forward_ref(tokens, positions, wte, wpe):
    return wte[tokens] + wpe[positions]


def embedding_backward_ref(dx, tokens, positions, wte_shape, wpe_shape):
    dwte, dwpe = np.zeros(wte_shape), np.zeros(wpe_shape)
    np.add.at(dwte, tokens, dx)
    np.add.at(dwpe, positions, dx)
    return dwte, dwpe
