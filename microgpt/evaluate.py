"""Measuring a model on held-out data: the loss, forward only, and what it means.

    loss = evaluate(backend, params, data.eval_sample("val", 4096))

The loss of a set of sequences is the mean cross-entropy over all of their
predictions, in nats. Two other ways to say the same number:

    perplexity          e^loss: the model is as unsure as a uniform choice among this many tokens
    bits per character  loss / ln 2: what an ideal coder driven by the model would spend per character
"""

import math

EVAL_BATCH = 32     # sequences per forward pass: big enough to keep the kernels busy, small enough for memory


def evaluate(backend, params, sequences):
    """Mean cross-entropy over every prediction of `sequences` (forward only, batch by batch)."""
    total, count = 0.0, 0
    for lo in range(0, len(sequences), EVAL_BATCH):
        batch = sequences[lo:lo + EVAL_BATCH]
        predictions = sum(len(s) - 1 for s in batch)
        total += backend.loss(params, batch) * predictions
        count += predictions
    return total / count


def perplexity(loss):
    """e^loss (inf when that overflows)."""
    return math.exp(loss) if loss < 700 else math.inf


def bits_per_token(loss):
    """The loss in bits instead of nats."""
    return loss / math.log(2)
