"""From a text file to training batches: documents, the character tokenizer, data order.

A training file holds one document (a name, a word) per line. The tokenizer's
vocabulary is the file's characters, sorted, plus one special token BOS that
marks both the beginning and the end of a document:

    "emma"  ->  [BOS, e, m, m, a, BOS]        cut to block_size + 1 tokens

so the model learns to predict the first character from BOS alone and to emit
BOS when the name is done.
"""

import functools
import os

import numpy as np

from microgpt.errors import MicrogptError

BOS = "<BOS>"  # how the special token is written when a vocabulary is printed


def read_documents(path):
    """The non-blank lines of a UTF-8 text file, stripped of surrounding whitespace.

    Windows line endings are fine. Raises `MicrogptError` (one line, saying what
    to do) for a missing path, a directory, a non-text file or a file with no documents.
    """
    if not os.path.exists(path):
        raise MicrogptError(f"{path}: no such file; give a text file with one name per line")
    if os.path.isdir(path):
        raise MicrogptError(f"{path} is a directory; give a text file with one name per line")
    try:
        with open(path, "rb") as f:
            raw = f.read()
    except OSError as e:
        raise MicrogptError(f"{path}: cannot read it ({e.strerror})") from None
    if b"\0" in raw:
        raise MicrogptError(f"{path} looks like a binary file (it has NUL bytes); give a UTF-8 text file")
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as e:
        raise MicrogptError(
            f"{path} is not UTF-8 text (bad byte at offset {e.start}); re-save it as UTF-8") from None
    docs = [line.strip() for line in text.splitlines()]
    docs = [doc for doc in docs if doc]
    if not docs:
        raise MicrogptError(f"{path} has no documents (it is empty or blank); put one name per line")
    return docs


class Tokenizer:
    """Characters <-> token ids. Ids 0..n-1 are the sorted characters; id n is BOS."""

    def __init__(self, chars):
        self.chars = sorted(set(chars))
        self.stoi = {c: i for i, c in enumerate(self.chars)}
        self.bos = len(self.chars)

    @classmethod
    def from_documents(cls, docs):
        return cls(set("".join(docs)))

    @property
    def vocab_size(self):
        return len(self.chars) + 1

    def encode(self, text):
        """Token ids of `text`, without BOS. Raises MicrogptError naming an unknown character."""
        try:
            return [self.stoi[c] for c in text]
        except KeyError as e:
            raise MicrogptError(
                f"character {e.args[0]!r} is not in the vocabulary ({''.join(self.chars)!r})") from None

    def decode(self, ids):
        """The text of token ids; BOS is skipped."""
        return "".join(self.chars[i] for i in ids if i != self.bos)

    def document(self, text, block_size):
        """[BOS] + encode(text) + [BOS], cut to block_size + 1 tokens (block_size predictions)."""
        return ([self.bos] + self.encode(text) + [self.bos])[:block_size + 1]

    def to_dict(self):
        return {"chars": "".join(self.chars)}

    @classmethod
    def from_dict(cls, d):
        return cls(d["chars"])


@functools.lru_cache(maxsize=4)
def epoch_order(num_docs, seed, epoch):
    """A permutation of range(num_docs), fixed by (seed, epoch).

    The data order is a pure function of the seed and the step, so a resumed run
    sees exactly the documents the uninterrupted run would have.
    """
    order = np.random.default_rng([seed, epoch]).permutation(num_docs)
    order.flags.writeable = False  # shared through the cache
    return order


def batch_indices(num_docs, seed, step, batch_size):
    """Indices of the documents of 0-based `step`: the next batch_size in the epoch order."""
    indices = []
    for k in range(step * batch_size, (step + 1) * batch_size):
        epoch, i = divmod(k, num_docs)
        indices.append(int(epoch_order(num_docs, seed, epoch)[i]))
    return indices
