"""The AdamW update as one compiled pass over the flat vectors (`optim.Adam.step` is the reference)."""

import numpy as np
from numba import njit


@njit(cache=True, nogil=True, error_model="numpy")
def adam_update(theta, m, v, grads, decay_mask, lr, decay, beta1, beta2, correction1, correction2, eps):
    """One AdamW step in place, in one pass: `optim.Adam.step` (the reference) as a loop.

        θ ← θ·decay  where decay_mask (decay = 1 - lr·weight_decay; 1.0 for no decay)
        m ← β1·m + (1-β1)·g        v ← β2·v + (1-β2)·g·g
        θ ← θ - lr · (m / correction1) / (√(v / correction2) + eps),   correctioni = 1 - βi^t
    theta, m, v, grads (P,);  decay_mask (P,) bool. Returns whether theta, m and v
    are all finite afterwards. Each line rounds exactly as the NumPy one does, so the
    two agree bit for bit (multiplying by 1.0 where the mask is off changes no bits).

    error_model="numpy" is what lets this loop vectorise: by default Numba checks every
    float division for a zero divisor (to raise ZeroDivisionError, as Python would), and
    that branch keeps LLVM from using the 4-wide sqrt and divide. With it, x/0 gives inf
    or nan, as in NumPy; the results are otherwise the same (~4x faster at 4,192 weights).
    Every entry is independent, so the backend may update pieces of the vectors on
    several threads at once (nogil): the bits do not depend on how they are split.
    """
    finite = True
    for i in range(theta.shape[0]):
        theta[i] *= decay if decay_mask[i] else 1.0
        m[i] = m[i] * beta1 + (1.0 - beta1) * grads[i]
        v[i] = v[i] * beta2 + (1.0 - beta2) * grads[i] * grads[i]
        theta[i] -= lr * (m[i] / correction1) / (np.sqrt(v[i] / correction2) + eps)
        # x - x is 0 for every finite x and NaN for inf and NaN: one test covers all three arrays
        finite &= (theta[i] - theta[i]) + (m[i] - m[i]) + (v[i] - v[i]) == 0.0
    return finite
