"""Numbers that define the model and that both engines must share.

A module of its own, importing nothing, so that the scalar engine and the compiled
kernels can both read it without either importing the other (or Numba).
"""

RMSNORM_EPS = 1e-5   # rmsnorm: x / sqrt(mean(x²) + eps); keeps a zero row finite
