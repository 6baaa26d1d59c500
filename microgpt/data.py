"""From a text file to training batches: documents, the character tokenizer, data order.

A training file holds one document (a name, a word) per line. The tokenizer's
vocabulary is the file's characters, sorted, plus one special token BOS that
marks both the beginning and the end of a document:

    "emma"  ->  [BOS, e, m, m, a, BOS]        cut to block_size + 1 tokens

so the model learns to predict the first character from BOS alone and to emit
BOS when the name is done.
"""

import functools
import hashlib
import os
from dataclasses import asdict, dataclass

import numpy as np

from microgpt.errors import MicrogptError

BOS = "<BOS>"  # how the special token is written when a vocabulary is printed

# A line this long is not a document but a file that is not one-document-per-line
# (a book, minified JSON, a dump). Cutting it to the block would train on its first
# few characters and build a vocabulary from all of it: certainly not what was meant,
# so it is an error. Long *names* are a different matter: they are cut (see `encode_documents`).
MAX_DOCUMENT_CHARS = 100_000


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
    longest = max(range(len(docs)), key=lambda i: len(docs[i]))
    if len(docs[longest]) > MAX_DOCUMENT_CHARS:
        raise MicrogptError(
            f"{path}: document {longest + 1} is {len(docs[longest]):,} characters long, which is not "
            f"one name per line (the limit is {MAX_DOCUMENT_CHARS:,}); split the text into one document per line")
    return docs


def encode_documents(tokenizer, docs, block_size):
    """Every document as [BOS] + ids + [BOS] cut to block_size + 1 tokens, and how many were cut.

    A document of block_size characters or more loses its tail (at least the final
    BOS, so the model never sees it end): the count lets the caller say so.
    """
    encoded = [tokenizer.document(doc, block_size) for doc in docs]
    num_cut = sum(len(doc) + 2 > block_size + 1 for doc in docs)
    return encoded, num_cut


@dataclass(frozen=True)
class DataSource:
    """Which documents a run trains on: enough to find them again and to notice different ones."""

    path: str            # the training file, absolute, so --resume finds it from anywhere
    num_documents: int   # with the seed, this fixes the data order (see `batch_indices`)
    sha256: str          # of the documents themselves (so line endings and blank lines do not matter)

    @classmethod
    def of(cls, path, docs):
        digest = hashlib.sha256("\n".join(docs).encode("utf-8")).hexdigest()
        return cls(os.path.abspath(path), len(docs), digest)

    def to_dict(self):
        return asdict(self)



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
    k, stop = step * batch_size, (step + 1) * batch_size
    while k < stop:                     # a slice per epoch the batch touches (one, but at a boundary)
        epoch, i = divmod(k, num_docs)
        take = min(stop - k, num_docs - i)
        indices += epoch_order(num_docs, seed, epoch)[i:i + take].tolist()
        k += take
    return indices
