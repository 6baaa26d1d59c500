"""Yardsticks for a loss: what models far simpler than a GPT score on the same data.

    uniform   every token equally likely: ln V. A model at this loss has learned nothing.
    unigram   each token with its frequency in the training split, ignoring context.
    bigram    each token given only the one before it: counts of (previous, next) pairs in
              the training split. The best any model with one character of context can
              do, give or take the smoothing; what attention adds shows as the gap below it.

Both counting models use add-one (Laplace) smoothing, P = (count + 1)/(total + V), so
a pair never seen in training still gets some probability rather than an infinite loss.
They are scored on exactly the predictions the GPT is scored on.
"""

import math

import numpy as np

from microgpt.data import CHUNK_CHARS, concatenated_ranges


def fit_counts(data):
    """(unigram counts (V,), bigram counts (V, V)) of the predictions in the training split of `data`.

    For a stream, every consecutive pair of the training part. For documents, tokens
    is BOS d0 BOS d1 ... BOS, so its consecutive pairs are exactly the pairs of every
    [BOS] + doc + [BOS] (counted in full, not cut to the block): count them all, then
    take away the held-out documents'. Either way a chunk at a time, so a large file
    needs no large temporaries.
    """
    V = data.tokenizer.vocab_size
    end = data.num_train if data.mode == "text" else data.tokens.size
    counts = np.zeros(V * V)
    for lo in range(0, end - 1, CHUNK_CHARS):
        run = data.tokens[lo:min(lo + CHUNK_CHARS + 1, end)].astype(np.int64)
        counts += np.bincount(run[:-1] * V + run[1:], minlength=V * V)
    if data.mode == "lines" and data.val_docs.size:
        starts, lengths = data.starts[data.val_docs], data.lengths[data.val_docs] + 1
        held_out = data.tokens[concatenated_ranges(starts, starts + lengths + 1)].astype(np.int64)
        pairs = np.delete(np.arange(held_out.size - 1), np.cumsum(lengths + 1)[:-1] - 1)  # not across documents
        counts -= np.bincount(held_out[pairs] * V + held_out[pairs + 1], minlength=V * V)
    bigram = counts.reshape(V, V)
    return bigram.sum(axis=0), bigram


def baseline_losses(data, sequences):
    """{"uniform", "unigram", "bigram"} -> mean cross-entropy over the predictions of `sequences`."""
    V = data.tokenizer.vocab_size
    unigram, bigram = fit_counts(data)
    prev = np.concatenate([np.asarray(s[:-1], dtype=np.int64) for s in sequences])
    nxt = np.concatenate([np.asarray(s[1:], dtype=np.int64) for s in sequences])
    p_unigram = (unigram[nxt] + 1.0) / (unigram.sum() + V)
    p_bigram = (bigram[prev, nxt] + 1.0) / (bigram[prev].sum(axis=1) + V)
    return {"uniform": math.log(V),
            "unigram": float(-np.log(p_unigram).mean()),
            "bigram": float(-np.log(p_bigram).mean())}

