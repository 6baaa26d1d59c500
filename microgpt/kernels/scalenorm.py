"""ScaleNorm: each row scaled to unit Euclidean length, times one scalar s (learned, or the constant √C)."""

import numpy as np
from numba import njit

from microgpt.constants import RMSNORM_EPS


@njit(cache=True, nogil=True)
def scalenorm_forward(out, rnorm, x, s=None):
    """out[n] = s · x[n] · rnorm[n],  rnorm[n] = 1 / sqrt(Σ_i x[n,i]² + eps).

    out (N, C) out;  rnorm (N,) out, cached for backward;  x (N, C);  s (1,) the learned
    scale, or None for the constant √C (which makes the output's root-mean-square about 1,
    as RMSNorm's). The sum of squares accumulates in float64.
    """
    N, C = x.shape
    scale = np.sqrt(C) if s is None else s[0]
    for n in range(N):
        sum_square = 0.0
        for i in range(C):
            sum_square += x[n, i] * x[n, i]
        rnorm[n] = (sum_square + RMSNORM_EPS) ** -0.5
        for i in range(C):
            out[n, i] = scale * x[n, i] * rnorm[n]


@njit(cache=True, nogil=True)
def scalenorm_backward(dx, dout, x, rnorm, s=None, ds=None):
    """dx += rnorm · (dẑ - ẑ · Σ_i dẑ_i·ẑ_i) row by row, with ẑ = x·rnorm and dẑ = s·dout;  ds += Σ dout·ẑ.

    With ẑ = x·r, r = (Σ x² + eps)^(-1/2):  ∂ẑ_i/∂x_j = r·δ_ij - r³·x_i·x_j = r·(δ_ij - ẑ_i·ẑ_j),
    so dx_j = r·(dẑ_j - ẑ_j·Σ_i dẑ_i·ẑ_i)  (RMSNorm's formula with a sum for the mean).
    y = s·ẑ gives dẑ = s·dy and ds = Σ over rows and channels of dy·ẑ.
    dx, dout, x (N, C);  rnorm (N,);  s (1,) or None for √C;  ds (1,) accumulated when s is given.
    """
    N, C = x.shape
    scale = np.sqrt(C) if s is None else s[0]
    for n in range(N):
        dot = 0.0
        for i in range(C):
            dot += dout[n, i] * x[n, i] * rnorm[n]
        if s is not None:
            ds[0] += dot
        for i in range(C):
            dx[n, i] += rnorm[n] * scale * (dout[n, i] - x[n, i] * rnorm[n] * dot)


def scalenorm_forward_ref(x, s=None):
    """Returns out, rnorm."""
    scale = np.sqrt(x.shape[1]) if s is None else s[0]
    rnorm = 1.0 / np.sqrt(np.sum(x * x, axis=1) + RMSNORM_EPS)
    return scale * x * rnorm[:, None], rnorm


def scalenorm_backward_ref(dout, x, rnorm, s=None):
    """Returns dx, ds (ds as if s were learned, shape (1,))."""
    scale = np.sqrt(x.shape[1]) if s is None else s[0]
    z = x * rnorm[:, None]
    dz = scale * dout
    dx = rnorm[:, None] * (dz - z * np.sum(dz * z, axis=1, keepdims=True))
    return dx, np.array([np.sum(dout * z)])
