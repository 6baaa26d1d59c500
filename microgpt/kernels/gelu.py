"""GELU in the tanh form GPT-2 uses, elementwise."""

import numpy as np
from numba import njit

GELU_K = np.sqrt(2.0 / np.pi)   # √(2/π)
GELU_CUBIC = 0.044715           # the cubic term's coefficient


@njit(cache=True, nogil=True)
def gelu_forward(out, x):
    """out = 0.5·x·(1 + tanh(√(2/π)·(x + 0.044715·x³))), elementwise.  out, x (N, H)."""
    for n in range(x.shape[0]):
        for j in range(x.shape[1]):
            a = x[n, j]
            out[n, j] = 0.5 * a * (1.0 + np.tanh(GELU_K * (a + GELU_CUBIC * a * a * a)))


@njit(cache=True, nogil=True)
def gelu_backward(dx, dout, x):
    """dx += dout · gelu'(x), elementwise, with u = √(2/π)·(x + 0.044715·x³) and t = tanh(u):

        gelu'(x) = 0.5·(1 + t) + 0.5·x·(1 - t²)·√(2/π)·(1 + 3·0.044715·x²)

    (the product rule on 0.5·x·(1 + t), with tanh' = 1 - tanh² and du/dx from the cubic).
    It reads the input x, not the output.  dx, dout, x (N, H).
    """
    for n in range(x.shape[0]):
        for j in range(x.shape[1]):
            a = x[n, j]
            t = np.tanh(GELU_K * (a + GELU_CUBIC * a * a * a))
            slope = 0.5 * (1.0 + t) + 0.5 * a * (1.0 - t * t) * GELU_K * (1.0 + 3.0 * GELU_CUBIC * a * a)
            dx[n, j] += dout[n, j] * slope


def gelu_forward_ref(x):
    return 0.5 * x * (1.0 + np.tanh(GELU_K * (x + GELU_CUBIC * x ** 3)))


def gelu_backward_ref(dout, x):
    t = np.tanh(GELU_K * (x + GELU_CUBIC * x ** 3))
    return dout * (0.5 * (1.0 + t) + 0.5 * x * (1.0 - t ** 2) * GELU_K * (1.0 + 3.0 * GELU_CUBIC * x ** 2))
