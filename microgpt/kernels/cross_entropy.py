"""Softmax cross-entropy of logits against target tokens."""

import numpy as np
from numba import njit


@njit(cache=True, nogil=True)
def cross_entropy_forward(probs, logits, targets):
    """Σ over the N rows of -log softmax(logits[n])[targets[n]]: the *sum*, not the mean.

    probs (N, V) out, cached for backward;  logits (N, V);  targets (N,) int.
    Per token: loss = log Σ_j exp(l_j - max) - (l_target - max). The caller divides by
    the batch's token count: a batch split into shards sums each shard's total.
    """
    N, V = logits.shape
    total = 0.0
    for n in range(N):
        top = -np.inf                   # a loop, not logits[n].max(): a view per row costs more
        for j in range(V):
            top = max(top, logits[n, j])
        norm = 0.0
        for j in range(V):
            probs[n, j] = np.exp(logits[n, j] - top)
            norm += probs[n, j]
        inv_norm = 1.0 / norm
        for j in range(V):
            probs[n, j] *= inv_norm
        total += np.log(norm) - (logits[n, targets[n]] - top)
    return total


@njit(cache=True, nogil=True)
def cross_entropy_backward(dlogits, probs, targets, dloss):
    """dlogits[n] += dloss · (probs[n] - onehot(targets[n])): softmax minus the truth, per token.

    dloss is the gradient of the loss with respect to each token's term: 1/N for a mean over N tokens.
    """
    N, V = probs.shape
    for n in range(N):
        for j in range(V):
            dlogits[n, j] += probs[n, j] * dloss
        dlogits[n, targets[n]] -= dloss


def cross_entropy_forward_ref(logits, targets):
    """The mean loss, and the probabilities."""
    shifted = logits - logits.max(axis=1, keepdims=True)
    log_probs = shifted - np.log(np.exp(shifted).sum(axis=1, keepdims=True))
    return -log_probs[np.arange(len(targets)), targets].mean(), np.exp(log_probs)


def cross_entropy_backward_ref(probs, targets):
    """The gradient of the mean loss."""
    dlogits = probs.copy()
    dlogits[np.arange(len(targets)), targets] -= 1.0
    return dlogits / len(targets)
