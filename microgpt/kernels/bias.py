"""A linear layer's bias, added after linear_forward: out += b on every row."""

import numpy as np
from numba import njit


@njit(cache=True, nogil=True)
def bias_forward(out, b):
    """out[n] += b for every row n, in place (out holds x·Wᵀ from linear_forward).  out (N, OUT);  b (OUT,)."""
    for n in range(out.shape[0]):
        for o in range(out.shape[1]):
            out[n, o] += b[o]


@njit(cache=True, nogil=True)
def bias_backward(db, dout):
    """db += Σ_n dout[n]: every row adds the same b, so b's gradient sums over the rows.

    db (OUT,);  dout (N, OUT). The sum runs over n in order, per column.
    """
    for n in range(dout.shape[0]):
        for o in range(dout.shape[1]):
            db[o] += dout[n, o]


def bias_forward_ref(x, b):
    return x + b


def bias_backward_ref(dout):
    return dout.sum(axis=0)
