"""Matrix products inside compiled code: C = A·op(B) + β·C through BLAS's gemm, with no temporaries.

Numba's `a @ b` calls BLAS too, but it always returns a new array, so `dx += dout @ w`
allocates an (N, IN) temporary, fills it, then adds it in a second pass. gemm can do
that in one: it computes C ← α·op(A)·op(B) + β·C, where op(X) is X or Xᵀ, straight into C.
β = 1 accumulates (a backward's `+=`), β = 0 overwrites (a forward).

BLAS is column-major and our arrays are row-major. A row-major (m, n) matrix is the
same memory as its column-major transpose (n, m), so C = op(A)·op(B) is computed as
Cᵀ = op(B)ᵀ·op(A)ᵀ: B is passed first, and every matrix is described by its row
stride (the leading dimension). Any array whose rows are contiguous works, views
included: a block of rows, or a block of columns such as the keys inside qkv.

We call the same entry point Numba's own `@` uses (`numba_xxgemm`, which reaches the
dgemm/sgemm of SciPy's BLAS), so compiled code that uses it caches like any other.
"""

import numpy as np
from numba import types
from numba.extending import overload
from numba.np.linalg import ensure_blas


def _xxgemm(dtype):
    """Numba's BLAS gemm helper, typed for arrays of `dtype` (float32 or float64)."""
    ptr = types.CPointer(dtype)
    return types.ExternalFunction("numba_xxgemm", types.intc(
        types.char,                                # kind: 's' float32, 'd' float64
        types.char, types.char,                    # transa, transb: 'n' or 't'
        types.intp, types.intp, types.intp,        # m, n, k (column-major)
        ptr, ptr, types.intp,                      # alpha, a, lda
        ptr, types.intp,                           # b, ldb
        ptr, ptr, types.intp))                     # beta, c, ldc


def gemm(c, a, b, transpose_a, transpose_b, beta):
    """c ← op(a) @ op(b) + beta·c, where op(x) is x.T if transpose_x else x.

    c (m, n), op(a) (m, k), op(b) (k, n), all of one dtype, each with contiguous rows.
    This plain NumPy version is the reference (and what runs outside compiled code).
    """
    product = (a.T if transpose_a else a) @ (b.T if transpose_b else b)
    c[...] = product + beta * c if beta else product


@overload(gemm)
def _gemm_blas(c, a, b, transpose_a, transpose_b, beta):
    ensure_blas()
    if c.dtype == types.float64:
        xxgemm, kind, dtype = _xxgemm(types.float64), ord("d"), np.float64
    elif c.dtype == types.float32:
        xxgemm, kind, dtype = _xxgemm(types.float32), ord("s"), np.float32
    else:
        return None

    TRANSPOSE, KEEP = ord("t"), ord("n")        # BLAS's flags, as numbers: no strings in compiled code

    def impl(c, a, b, transpose_a, transpose_b, beta):
        m, n = c.shape
        k = a.shape[0] if transpose_a else a.shape[1]
        size = c.itemsize
        if c.strides[1] != size or a.strides[1] != size or b.strides[1] != size:
            raise ValueError("gemm needs arrays whose rows are contiguous")
        if m == 0 or n == 0:
            return
        if k == 0:                      # BLAS may leave c alone when k = 0; the product is 0
            for i in range(m):
                for j in range(n):
                    c[i, j] *= beta
            return
        scalars = np.empty(2, dtype)    # gemm takes alpha and beta by pointer
        scalars[0], scalars[1] = 1.0, beta
        # row-major c = op(a)·op(b) is column-major cᵀ = op(b)ᵀ·op(a)ᵀ: b goes first
        xxgemm(kind, TRANSPOSE if transpose_b else KEEP, TRANSPOSE if transpose_a else KEEP,
               n, m, k, scalars[0:1].ctypes, b.ctypes, b.strides[0] // size,
               a.ctypes, a.strides[0] // size, scalars[1:2].ctypes, c.ctypes, c.strides[0] // size)

    return impl
