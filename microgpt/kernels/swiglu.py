"""SwiGLU's gating: h = a ⊙ silu(z), where a and z are the two halves of one product u = x·[fc1; gate]ᵀ."""

import numpy as np
from numba import njit


@njit(cache=True, nogil=True)
def swiglu_forward(h, u):
    """h = a ⊙ silu(z),  a = u[:, :H] (through fc1),  z = u[:, H:] (through gate),  silu(z) = z·σ(z).

    h (N, H) out;  u (N, 2H): one linear layer's output, fc1's rows then gate's.
    """
    H = h.shape[1]
    for n in range(h.shape[0]):
        for j in range(H):
            z = u[n, H + j]
            h[n, j] = u[n, j] * (z / (1.0 + np.exp(-z)))


@njit(cache=True, nogil=True)
def swiglu_backward(du, dh, u):
    """da += dh ⊙ silu(z);  dz += dh ⊙ a ⊙ silu'(z), into du = [da, dz] (N, 2H).

    silu(z) = z·σ(z) and σ' = σ·(1 - σ), so silu'(z) = σ(z) + z·σ(z)·(1 - σ(z)) = σ(z)·(1 + z·(1 - σ(z))).
    du, u (N, 2H);  dh (N, H). It reads the input u, not the output.
    """
    H = dh.shape[1]
    for n in range(dh.shape[0]):
        for j in range(H):
            a, z = u[n, j], u[n, H + j]
            sig = 1.0 / (1.0 + np.exp(-z))
            du[n, j] += dh[n, j] * z * sig
            du[n, H + j] += dh[n, j] * a * sig * (1.0 + z * (1.0 - sig))


def silu_ref(z):
    return z / (1.0 + np.exp(-z))


def swiglu_forward_ref(u):
    H = u.shape[1] // 2
    return u[:, :H] * silu_ref(u[:, H:])


def swiglu_backward_ref(dh, u):
    H = u.shape[1] // 2
    a, z = u[:, :H], u[:, H:]
    sig = 1.0 / (1.0 + np.exp(-z))
    return np.concatenate([dh * silu_ref(z), dh * a * sig * (1.0 + z * (1.0 - sig))], axis=1)
