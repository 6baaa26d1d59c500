"""RMSNorm without weights: each row scaled to unit root-mean-square."""

import numpy as np
from numba import njit

from microgpt.constants import RMSNORM_EPS


@njit(cache=True, nogil=True)
def rmsnorm_forward(out, rstd, x):
    """out[n] = x[n] · rstd[n],  rstd[n] = 1 / sqrt(mean(x[n]²) + eps).

    out (N, C) out;  rstd (N,) out, cached for backward;  x (N, C).
    The sum of squares is a Python float, so it accumulates in float64 whatever
    the dtype of x (in a float32 model too: C terms, one rounding at the end).
    """
    N, C = x.shape
    for n in range(N):
        mean_square = 0.0
        for i in range(C):
            mean_square += x[n, i] * x[n, i]
        rstd[n] = (mean_square / C + RMSNORM_EPS) ** -0.5
        for i in range(C):
            out[n, i] = x[n, i] * rstd[n]


@njit(cache=True, nogil=True)
def rmsnorm_backward(dx, dout, out, rstd):
    """dx += rstd · (dout - out · mean(dout · out)), row by row.

    From y = x·r, r = (mean(x²) + eps)^(-1/2):  dy_i/dx_j = r·δ_ij - r³·x_i·x_j / C,
    so dx_j = r·dy_j - r·y_j · Σ_i dy_i·y_i / C. It needs only the cached output y
    and rstd, not x.   dx, dout, out (N, C);  rstd (N,).
    """
    N, C = out.shape
    for n in range(N):
        dot = 0.0
        for i in range(C):
            dot += dout[n, i] * out[n, i]
        dot /= C
        for i in range(C):
            dx[n, i] += rstd[n] * (dout[n, i] - out[n, i] * dot)


def rmsnorm_forward_ref(x):
    rstd = 1.0 / np.sqrt(np.mean(x * x, axis=1) + RMSNORM_EPS)
    return x * rstd[:, None], rstd


def rmsnorm_backward_ref(dout, out, rstd):
    return rstd[:, None] * (dout - out * np.mean(dout * out, axis=1, keepdims=True))
