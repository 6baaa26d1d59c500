"""Adam(W) with bias correction, the learning-rate schedule, and gradient clipping.

Everything works on the flat parameter vector, so one update is a handful of
vectorised NumPy lines whatever engine computed the gradients. This module is the
reference: the Numba backend's compiled update (`kernels.adam_update`) performs
the same arithmetic in the same order and must agree with it bit for bit.
"""

import math

import numpy as np

SCHEDULES = ("linear", "cosine")


def learning_rate(step, steps, lr, warmup=0, schedule="linear", min_lr=0.0):
    """The learning rate at 0-based `step` of a run of `steps`.

    Warm-up: for step < warmup, lr·(step + 1)/warmup, rising linearly to lr.
    Then, with p = (step - warmup)/(steps - warmup) going from 0 towards 1:

        linear   min_lr + (lr - min_lr)·(1 - p)
        cosine   min_lr + (lr - min_lr)·(1 + cos(π·p))/2

    With no warm-up and min_lr 0 the linear schedule is lr·(1 - step/steps), the
    decay microgpt has always used (the same floating-point result, not just close).
    """
    if step < warmup:
        return lr * (step + 1) / warmup
    progress = (step - warmup) / (steps - warmup)
    if schedule == "linear":
        return min_lr + (lr - min_lr) * (1.0 - progress)
    if schedule == "cosine":
        return min_lr + (lr - min_lr) * 0.5 * (1.0 + math.cos(math.pi * progress))
    raise ValueError(f"unknown schedule {schedule!r}; choose one of {', '.join(SCHEDULES)}")


def global_norm(grads):
    """The L2 norm of the whole gradient vector (inf when its square overflows, past ~1e154)."""
    with np.errstate(over="ignore"):
        return float(np.sqrt(grads @ grads))


def clip_grad_norm(grads, max_norm, norm=None):
    """Scale `grads` in place so their global L2 norm is at most `max_norm`; return the norm before.

    max_norm 0 means no clipping. Clipping keeps the direction of the step and
    bounds its size, so one unlucky batch cannot throw the weights far away. Pass
    `norm` if it is already known.
    """
    norm = global_norm(grads) if norm is None else norm
    if max_norm and norm > max_norm:
        grads *= max_norm / norm
    return norm


class Adam:
    """Adam (Kingma & Ba, 2015) with bias-corrected moments and decoupled weight decay (AdamW).

        θ ← θ·(1 - lr·wd)          only where decay_mask is True (AdamW, Loshchilov & Hutter, 2019)
        m ← β1·m + (1-β1)·g            v ← β2·v + (1-β2)·g²
        m̂ = m / (1-β1^t)               v̂ = v / (1-β2^t)          (t = steps taken, from 1)
        θ ← θ - lr · m̂ / (√v̂ + eps)

    Weight decay pulls weights towards 0 by a fixed fraction each step, apart from
    the gradient (so Adam's per-weight scaling does not weaken it). As in nanoGPT it
    applies to matrices only, not to biases or norm gains: `Params.decay_mask()`.
    """

    def __init__(self, size, beta1=0.85, beta2=0.99, eps=1e-8, weight_decay=0.0, decay_mask=None):
        self.beta1, self.beta2, self.eps = beta1, beta2, eps
        self.weight_decay = weight_decay
        self.decay_mask = np.ones(size, dtype=bool) if decay_mask is None else np.asarray(decay_mask, bool)
        self.m = np.zeros(size)   # first moment: running mean of the gradients
        self.v = np.zeros(size)   # second moment: running mean of their squares
        self.t = 0                # updates taken so far

    def corrections(self):
        """(1 - β1^t, 1 - β2^t) for the update about to be taken (t already counts it)."""
        return 1.0 - self.beta1 ** self.t, 1.0 - self.beta2 ** self.t

    def step(self, theta, grads, lr):
        """Update `theta` (a flat float64 array) in place from `grads`.

        Returns whether the new weights and both moments are all finite: a step can
        overflow them (a huge learning rate, a huge gradient) even when the loss and
        gradients were finite, and such a state must never be trained on or saved.
        """
        with np.errstate(over="ignore", invalid="ignore"):   # an overflow is reported, not warned about
            return self._step(theta, grads, lr)

    def _step(self, theta, grads, lr):
        self.t += 1
        b1, b2 = self.beta1, self.beta2
        if self.weight_decay:
            np.multiply(theta, 1.0 - lr * self.weight_decay, out=theta, where=self.decay_mask)
        self.m *= b1
        self.m += (1.0 - b1) * grads
        self.v *= b2
        self.v += (1.0 - b2) * grads * grads
        correction1, correction2 = self.corrections()
        m_hat = self.m / correction1
        v_hat = self.v / correction2
        theta -= lr * m_hat / (np.sqrt(v_hat) + self.eps)
        return bool(np.isfinite(theta).all() and np.isfinite(self.m).all() and np.isfinite(self.v).all())

    def state_dict(self):
        return {"m": self.m, "v": self.v, "t": self.t}

    def load_state_dict(self, state):
        self.m = np.array(state["m"], dtype=np.float64)
        self.v = np.array(state["v"], dtype=np.float64)
        self.t = int(state["t"])
