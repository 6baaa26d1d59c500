"""RMSNorm: each row scaled to unit root-mean-square, then optionally by a learned gain per channel."""

import numpy as np
from numba import njit

from microgpt.constants import RMSNORM_EPS


@njit(cache=True, nogil=True)
def rmsnorm_forward(out, rstd, x, g=None):
    """out[n] = x[n] · rstd[n] (· g),  rstd[n] = 1 / sqrt(mean(x[n]²) + eps).

    out (N, C) out;  rstd (N,) out, cached for backward;  x (N, C);  g (C,) the gain, or None.
    The sum of squares is a Python float, so it accumulates in float64 whatever
    the dtype of x (in a float32 model too: C terms, one rounding at the end).
    """
    N, C = x.shape
    for n in range(N):
        mean_square = 0.0
        for i in range(C):
            mean_square += x[n, i] * x[n, i]
        rstd[n] = (mean_square / C + RMSNORM_EPS) ** -0.5
        if g is None:
            for i in range(C):
                out[n, i] = x[n, i] * rstd[n]
        else:
            for i in range(C):
                out[n, i] = x[n, i] * rstd[n] * g[i]


@njit(cache=True, nogil=True)
def rmsnorm_backward(dx, dout, out, rstd, x=None, g=None, dg=None):
    """dx += rstd · (dx̂ - x̂ · mean(dx̂ · x̂)) row by row, with x̂ = x·rstd and dx̂ = dout (· g);  dg += Σ_n dout·x̂.

    From x̂ = x·r, r = (mean(x²) + eps)^(-1/2):  dx̂_i/dx_j = r·δ_ij - r³·x_i·x_j / C,
    so dx_j = r·dx̂_j - r·x̂_j · Σ_i dx̂_i·x̂_i / C. With a gain, y = x̂ ⊙ g gives dx̂ = dy ⊙ g and
    dg = Σ over rows of dy ⊙ x̂.
    Without a gain (g None) the cached output is x̂ itself, so the backward needs only
    out and rstd:  dx, dout, out (N, C);  rstd (N,).
    With a gain, out is not read: x̂ = x·rstd is recomputed from x (N, C), the same
    product as in the forward;  g (C,);  dg (C,) accumulated.
    """
    N, C = dout.shape
    if g is None:
        for n in range(N):
            dot = 0.0
            for i in range(C):
                dot += dout[n, i] * out[n, i]
            dot /= C
            for i in range(C):
                dx[n, i] += rstd[n] * (dout[n, i] - out[n, i] * dot)
        return
    for n in range(N):
        dot = 0.0
        for i in range(C):
            xhat = x[n, i] * rstd[n]
            dg[i] += dout[n, i] * xhat
            dot += dout[n, i] * g[i] * xhat
        dot /= C
        for i in range(C):
            dx[n, i] += rstd[n] * (dout[n, i] * g[i] - x[n, i] * rstd[n] * dot)


def rmsnorm_forward_ref(x, g=None):
    rstd = 1.0 / np.sqrt(np.mean(x * x, axis=1) + RMSNORM_EPS)
    xhat = x * rstd[:, None]
    return (xhat if g is None else xhat * g), rstd


def rmsnorm_backward_ref(dout, out, rstd, x=None, g=None):
    """dx without a gain; (dx, dg) with one (out is then not used: x̂ comes from x)."""
    if g is None:
        return rstd[:, None] * (dout - out * np.mean(dout * out, axis=1, keepdims=True))
    xhat = x * rstd[:, None]
    dxhat = dout * g
    dx = rstd[:, None] * (dxhat - xhat * np.mean(dxhat * xhat, axis=1, keepdims=True))
    return dx, np.sum(dout * xhat, axis=0)
