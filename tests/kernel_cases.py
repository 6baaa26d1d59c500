"""What the kernel tests share: a small packed batch, a case (one layer as forward and backward),
and the finite-difference check every kernel's backward is held to.

A case wraps one layer as out = forward(**inputs) and grads = backward(dout, **inputs).
The backward is checked through the scalar function f(inputs) = Σ dout · forward(inputs),
whose gradient it must be.
"""

from typing import Callable, NamedTuple

import numpy as np

from microgpt.gradcheck import fd_violation

DOC_STARTS = np.array([0, 1, 4, 9])      # documents of 1, 3 and 5 tokens: T = 1 is a corner case
POSITIONS = np.array([0, 0, 1, 2, 0, 1, 2, 3, 4])
N, C, NH, V = 9, 8, 2, 5


class Case(NamedTuple):
    inputs: dict                    # the differentiable inputs, name -> float64 array
    forward: Callable               # **inputs -> out, through the kernel
    forward_ref: Callable           # **inputs -> out, through the NumPy reference
    backward: Callable              # (dout, **inputs) -> {name: grad}, through the kernel
    backward_ref: Callable          # (dout, **inputs) -> {name: grad}, through the reference


def upstream(case):
    """A fixed random upstream gradient shaped like the case's output."""
    return np.random.default_rng(7).normal(size=case.forward(**case.inputs).shape)


def fd_check(case, backward, h=1e-6):
    """max fd_violation over all inputs of `backward` against central differences of Σ dout·forward."""
    dout = upstream(case)
    grads = backward(dout, **case.inputs)
    worst = 0.0
    for name, x in case.inputs.items():
        fd = np.empty_like(x)
        for i in np.ndindex(x.shape):
            saved = x[i]
            x[i] = saved + h
            plus = np.sum(dout * case.forward(**case.inputs))
            x[i] = saved - h
            minus = np.sum(dout * case.forward(**case.inputs))
            x[i] = saved
            fd[i] = (plus - minus) / (2 * h)
        worst = max(worst, fd_violation(grads[name], fd))
    return worst


def assert_close(a, b, rtol=1e-12):
    scale = max(np.abs(b).max(), 1e-300)
    assert np.abs(a - b).max() <= rtol * scale, f"max |diff| {np.abs(a - b).max():.3e} vs scale {scale:.3e}"
