"""LayerNorm: each row shifted to mean 0 and scaled to unit variance, then optionally y = x̂·g + b per channel."""

import numpy as np
from numba import njit

from microgpt.constants import RMSNORM_EPS


@njit(cache=True, nogil=True)
def layernorm_forward(out, mean, rstd, x, g=None, b=None):
    """out[n] = (x[n] - μ[n]) · rstd[n] (· g + b),  μ = mean(x[n]),  rstd = 1 / sqrt(mean((x[n] - μ)²) + eps).

    out (N, C) out;  mean, rstd (N,) out, cached for backward;  x (N, C);  g, b (C,) or None.
    eps is the same as RMSNorm's. The two sums are Python floats: float64 whatever the dtype of x.
    """
    N, C = x.shape
    for n in range(N):
        total = 0.0
        for i in range(C):
            total += x[n, i]
        mu = total / C
        var = 0.0
        for i in range(C):
            var += (x[n, i] - mu) * (x[n, i] - mu)
        mean[n] = mu
        rstd[n] = (var / C + RMSNORM_EPS) ** -0.5
        for i in range(C):
            xhat = (x[n, i] - mu) * rstd[n]
            if g is not None:
                xhat = xhat * g[i]
            if b is not None:
                xhat = xhat + b[i]
            out[n, i] = xhat


@njit(cache=True, nogil=True)
def layernorm_backward(dx, dout, x, mean, rstd, g=None, dg=None, db=None):
    """dx += rstd · (dx̂ - mean(dx̂) - x̂ · mean(dx̂ · x̂)) row by row;  dg += Σ_n dout·x̂;  db += Σ_n dout.

    With x̂ = (x - μ)·r, r = (mean((x - μ)²) + eps)^(-1/2):
        ∂x̂_i/∂x_j = r·(δ_ij - 1/C) - r·x̂_i·x̂_j / C
    (the 1/C from μ, the last term from r), so dx_j = r·(dx̂_j - mean(dx̂) - x̂_j·mean(dx̂ ⊙ x̂)).
    The affine part y = x̂ ⊙ g + b gives dx̂ = dy ⊙ g (dy without a gain), dg = Σ_n dy ⊙ x̂, db = Σ_n dy.
    dx, dout, x (N, C);  mean, rstd (N,) from the forward;  g (C,) or None;  dg (C,) accumulated
    when g is given;  db (C,) accumulated when given (the layer had a bias), else None.
    """
    N, C = x.shape
    for n in range(N):
        sum_dxhat = 0.0
        dot = 0.0
        for i in range(C):
            xhat = (x[n, i] - mean[n]) * rstd[n]
            dxhat = dout[n, i]
            if g is not None:
                dg[i] += dout[n, i] * xhat
                dxhat = dxhat * g[i]
            if db is not None:
                db[i] += dout[n, i]
            sum_dxhat += dxhat
            dot += dxhat * xhat
        sum_dxhat /= C
        dot /= C
        for i in range(C):
            xhat = (x[n, i] - mean[n]) * rstd[n]
            dxhat = dout[n, i]
            if g is not None:
                dxhat = dxhat * g[i]
            dx[n, i] += rstd[n] * (dxhat - sum_dxhat - xhat * dot)


def layernorm_forward_ref(x, g=None, b=None):
    """Returns out, mean, rstd."""
    mean = x.mean(axis=1)
    rstd = 1.0 / np.sqrt(np.mean((x - mean[:, None]) ** 2, axis=1) + RMSNORM_EPS)
    out = (x - mean[:, None]) * rstd[:, None]
    if g is not None:
        out = out * g
    if b is not None:
        out = out + b
    return out, mean, rstd


def layernorm_backward_ref(dout, x, mean, rstd, g=None):
    """Returns dx, dg, db (dg and db as if both were present)."""
    xhat = (x - mean[:, None]) * rstd[:, None]
    dxhat = dout if g is None else dout * g
    dx = rstd[:, None] * (dxhat - dxhat.mean(axis=1, keepdims=True)
                          - xhat * np.mean(dxhat * xhat, axis=1, keepdims=True))
    return dx, np.sum(dout * xhat, axis=0), np.sum(dout, axis=0)
