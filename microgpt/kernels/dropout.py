"""Dropout on a residual branch's output: multiply by a mask the caller drew."""

from numba import njit


@njit(cache=True, nogil=True)
def dropout_forward(out, x, mask):
    """out = x ⊙ mask, elementwise (out may be x itself).  out, x, mask (N, C).

    mask holds inverted-dropout factors in {0, 1/(1-p)}, drawn outside the kernel so
    that both engines see the same ones; the expected output is then x.
    """
    for n in range(x.shape[0]):
        for i in range(x.shape[1]):
            out[n, i] = x[n, i] * mask[n, i]


@njit(cache=True, nogil=True)
def dropout_backward(dx, dout, mask):
    """dx += dout ⊙ mask: the derivative of x·m with respect to x is m.  dx, dout, mask (N, C)."""
    for n in range(dout.shape[0]):
        for i in range(dout.shape[1]):
            dx[n, i] += dout[n, i] * mask[n, i]


def dropout_forward_ref(x, mask):
    return x * mask


def dropout_backward_ref(dout, mask):
    return dout * mask
