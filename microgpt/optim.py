"""Adam with bias correction, and the learning rate that decays linearly to zero.

Everything works on the flat parameter vector, so one update is a handful of
vectorised NumPy lines whatever engine computed the gradients.
"""

import numpy as np


def linear_decay(lr, step, steps):
    """The learning rate at 0-based `step` of `steps`: lr · (1 - step/steps)."""
    return lr * (1.0 - step / steps)


class Adam:
    """Adam (Kingma & Ba, 2015) with bias-corrected moments.

        m ← β1·m + (1-β1)·g            v ← β2·v + (1-β2)·g²
        m̂ = m / (1-β1^t)               v̂ = v / (1-β2^t)          (t = steps taken, from 1)
        θ ← θ - lr · m̂ / (√v̂ + eps)
    """

    def __init__(self, size, beta1=0.85, beta2=0.99, eps=1e-8):
        self.beta1, self.beta2, self.eps = beta1, beta2, eps
        self.m = np.zeros(size)   # first moment: running mean of the gradients
        self.v = np.zeros(size)   # second moment: running mean of their squares
        self.t = 0                # updates taken so far

    def step(self, theta, grads, lr):
        """Update `theta` (a flat float64 array) in place from `grads`."""
        self.t += 1
        b1, b2 = self.beta1, self.beta2
        self.m *= b1
        self.m += (1.0 - b1) * grads
        self.v *= b2
        self.v += (1.0 - b2) * grads * grads
        m_hat = self.m / (1.0 - b1 ** self.t)
        v_hat = self.v / (1.0 - b2 ** self.t)
        theta -= lr * m_hat / (np.sqrt(v_hat) + self.eps)

    def state_dict(self):
        return {"m": self.m, "v": self.v, "t": self.t}

    def load_state_dict(self, state):
        self.m = np.array(state["m"], dtype=np.float64)
        self.v = np.array(state["v"], dtype=np.float64)
        self.t = int(state["t"])
