"""A linear layer without bias, out = x·Wᵀ, as in nn.Linear: loops for small products, BLAS for large."""

import numpy as np
from numba import njit

from microgpt.kernels.blas import gemm

# Matrix products smaller than this many multiply-adds run as plain loops: for a
# 16x16 weight, calling BLAS costs more than the arithmetic (see docs/benchmarks.md).
BLAS_MIN_WORK = 32 * 32 * 32


@njit(cache=True, nogil=True)
def linear_forward(out, x, w):
    """out = x @ wᵀ, i.e. out[n] = W·x[n] for each token.

    out (N, OUT) out;  x (N, IN);  w (OUT, IN) as in nn.Linear.
    """
    N, IN = x.shape
    OUT = w.shape[0]
    if N * IN * OUT >= BLAS_MIN_WORK:
        gemm(out, x, w, False, True, 0.0)
        return
    # Loop over out[n, :] += x[n, i] · wᵀ[i, :]: the innermost loop then has no running sum
    # to wait on and runs along contiguous rows, so it vectorises even without fastmath.
    # Each out[n, o] is still summed over i in order 0..IN-1.
    wt = np.ascontiguousarray(w.T)      # (IN, OUT)
    for n in range(N):
        out[n] = 0.0
        for i in range(IN):
            xi = x[n, i]
            for o in range(OUT):
                out[n, o] += xi * wt[i, o]


@njit(cache=True, nogil=True)
def linear_backward(dx, dw, dout, x, w):
    """dx += dout @ w;  dw += doutᵀ @ x.

    out[n,o] = Σ_i w[o,i]·x[n,i], so ∂out[n,o]/∂x[n,i] = w[o,i] and
    ∂out[n,o]/∂w[o,i] = x[n,i]; the weight's gradient sums over all N tokens.
    dx (N, IN), dw (OUT, IN), dout (N, OUT), x (N, IN), w (OUT, IN).
    """
    N, IN = x.shape
    OUT = w.shape[0]
    if N * IN * OUT >= BLAS_MIN_WORK:
        gemm(dx, dout, w, False, False, 1.0)
        gemm(dw, dout, x, True, False, 1.0)
        return
    for n in range(N):
        for o in range(OUT):
            g = dout[n, o]
            for i in range(IN):     # innermost loops run along rows: contiguous, vectorisable
                dx[n, i] += g * w[o, i]
                dw[o, i] += g * x[n, i]


def linear_forward_ref(x, w):
    return x @ w.T


def linear_backward_ref(dout, x, w):
    return dout @ w, dout.T @ x
