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

from microgpt.data import concatenated_ranges


def fit_counts(data):
    """(unigram counts (V,), bigram counts (V, V)) of the predictions in the training split of `data`.

    For documents every [BOS] + doc + [BOS] counts in full (not cut to the block); for
    a stream, every consecutive pair of the training part.
    """
    V = data.tokenizer.vocab_size
    if data.mode == "text":
        tokens = data.tokens[:data.num_train].astype(np.int64)
        prev, nxt = tokens[:-1], tokens[1:]
    else:   # documents: tokens is BOS d0 BOS d1 ... BOS; document d's pairs start at its leading BOS
        tokens = data.tokens.astype(np.int64)
        starts, lengths = data.starts[data.train_docs], data.lengths[data.train_docs]
        positions = concatenated_ranges(starts, starts + lengths + 1)
        prev, nxt = tokens[positions], tokens[positions + 1]
    unigram = np.bincount(nxt, minlength=V).astype(np.float64)
    bigram = np.bincount(prev * V + nxt, minlength=V * V).astype(np.float64).reshape(V, V)
    return unigram, bigram


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

