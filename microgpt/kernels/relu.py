"""ReLU, elementwise."""

import numpy as np
from numba import njit


@njit(cache=True, nogil=True)
def relu_forward(out, x):
    """out = max(0, x), elementwise.  out, x (N, H)."""
    for n in range(x.shape[0]):
        for j in range(x.shape[1]):
            out[n, j] = x[n, j] if x[n, j] > 0.0 else 0.0


@njit(cache=True, nogil=True)
def relu_backward(dx, dout, x):
    """dx += dout where x > 0 (the derivative of max(0, x) is 1 there, else 0)."""
    for n in range(x.shape[0]):
        for j in range(x.shape[1]):     # adding 0.0 rather than branching lets the loop vectorise
            dx[n, j] += dout[n, j] if x[n, j] > 0.0 else 0.0


def relu_forward_ref(x):
    return np.maximum(x, 0.0)


def relu_backward_ref(dout, x):
    return dout * (x > 0.0)
