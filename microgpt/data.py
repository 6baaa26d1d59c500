"""Training data: a text file read as documents (one per line) or as one character stream.

Two sources behind one interface, so the training loop and both engines never
learn which one fed them:

    data = load_data("data/names.txt", block_size=16)       # mode "auto" picks for you
    data.mode                     # "lines" (names.txt) or "text" (shakespeare.txt)
    data.tokenizer                # characters <-> ids (with BOS for documents)
    data.batch(step, batch_size, seed)   # list of token sequences, a pure function of its arguments
    data.eval_sample("val", 4096) # a fixed list of sequences holding ~4,096 predictions

A sequence is a 1-D integer array of 2..block_size + 1 tokens that gives len - 1
predictions. From a file of **lines** it is a document, [BOS] + chars + [BOS], cut to
the block. From a **text** it is a window of block_size + 1 characters at a seeded
random offset: a stream has no documents, so no BOS either.

Both keep the whole file as one flat array of token ids (documents laid out as
BOS d0 BOS d1 BOS ... BOS), and a sequence is a view into it: no copy per step,
and no Python object per character, whatever the size of the file.

**Validation.** Part of the data is held out and never trained on: the last
`val_fraction` of a text, or a sample of the documents (val_fraction of them, at
most MAX_VAL_DOCUMENTS). The split depends on the file alone, not on the run's
seed, so runs with different seeds are measured on the same held-out data.
"""

import functools
import hashlib
import math
import os
from dataclasses import asdict, dataclass

import numpy as np

from microgpt.errors import MicrogptError, UsageError
from microgpt.textfile import MAX_TEXT_BYTES, read_text, smallest_uint, text_from_string
from microgpt.tokenizer import Tokenizer

MODES = ("lines", "text")
MAX_VAL_DOCUMENTS = 2_000
SPLIT_SEED = 20_240_401         # fixes which documents are held out, whatever the run's seed
MAX_DOCUMENT_CHARS = 100_000    # a longer "line" is a book or a dump, not a document
AUTO_MAX_LINE = 1_000           # auto: a file with a line longer than this is read as text
CHUNK_CHARS = 1 << 20           # splitting and laying out work through the file this many characters at a time
POSITION = np.int32             # positions in a file: it is at most MAX_TEXT_BYTES (1 GiB) long


@dataclass(frozen=True)
class DataSpec:
    """Which data a run trains on: enough to find it again and to notice different data."""

    path: str              # the training file, absolute, so --resume finds it from anywhere
    mode: str              # "lines" or "text"
    val_fraction: float    # how much is held out for validation (0: nothing)
    size: int              # documents (lines) or characters (text) in the whole file
    sha256: str            # of the UTF-8 text the model sees: the documents joined by "\n", or the stream

    def to_dict(self):
        return asdict(self)


# ------------------------------------------------------------------ loading

def load_data(path, block_size, mode="auto", val_fraction=0.1, progress=False):
    """The data source for `path`: `Documents` or `TextStream`. See `choose_mode` for "auto".

    The chosen mode and the reason are in `.mode` and `.mode_reason`.
    """
    if mode not in ("auto",) + MODES:
        raise UsageError(f"unknown data mode {mode!r}; choose auto, lines or text")
    if not 0 <= val_fraction <= 0.5:
        raise UsageError(f"--val-fraction must be between 0 and 0.5, got {val_fraction}")
    text = read_text(path, progress=progress)
    lines = Lines.of(text) if mode != "text" else None     # per-line positions: only when lines may be read
    reason = "as asked"
    if mode == "auto":
        mode, reason = choose_mode(lines)
    if mode == "lines":
        return Documents.build(text, lines, block_size, val_fraction, reason)
    return TextStream.build(text, block_size, val_fraction, reason)


def documents_from_strings(docs, block_size, val_fraction=0.0):
    """A `Documents` source from a list of strings, one document each, instead of a file.

    They are joined by newlines and read as a file of lines would be (so each is
    stripped, and a blank one is dropped).
    """
    text = text_from_string("\n".join(docs))
    return Documents.build(text, Lines.of(text), block_size, val_fraction)


def read_documents(path):
    """Every document of a file of lines, as strings (nothing held out): for examples and quick looks."""
    text = read_text(path)
    docs = Documents.build(text, Lines.of(text), block_size=1, val_fraction=0.0)
    return [docs.text(d) for d in range(len(docs))]


@dataclass
class Lines:
    """Where the non-blank lines of a text are, stripped of surrounding whitespace, and how they look."""

    starts: np.ndarray     # (D,) position of each line's first non-space character
    ends: np.ndarray       # (D,) one past its last
    blank_between: int     # blank lines with text both before and after them
    longest: int           # characters in the longest stripped line

    @classmethod
    def of(cls, text):
        """Split at "\n" only: U+2028 or U+0085 inside a name is part of the name, not a line break."""
        ids, newline = text.ids, text.id_of("\n")
        breaks = _positions(ids == newline) if newline >= 0 else np.zeros(0, POSITION)
        starts = np.concatenate(([0], breaks + 1)).astype(POSITION)
        ends = np.concatenate((breaks, [ids.size])).astype(POSITION)
        del breaks
        is_space = np.array([c.isspace() for c in text.alphabet])
        nonempty = ends > starts
        messy = np.zeros(starts.size, dtype=bool)          # a line that begins or ends with whitespace
        messy[nonempty] = is_space[ids[starts[nonempty]]] | is_space[ids[ends[nonempty] - 1]]
        if messy.any():
            starts[messy], ends[messy] = _strip(ids, is_space, starts[messy], ends[messy])
        kept = ends > starts
        blank_between = 0
        if kept.any():
            first, last = np.argmax(kept), kept.size - 1 - np.argmax(kept[::-1])
            blank_between = int((~kept[first:last + 1]).sum())
        starts, ends = starts[kept], ends[kept]
        return cls(starts, ends, blank_between, int((ends - starts).max(initial=0)))


def _positions(mask):
    """np.flatnonzero(mask) as POSITION integers, found a chunk at a time (no int64 array the size of the answer)."""
    return np.concatenate([np.flatnonzero(mask[lo:lo + CHUNK_CHARS]).astype(POSITION) + lo
                           for lo in range(0, mask.size, CHUNK_CHARS)] or [np.zeros(0, POSITION)])


def _strip(ids, is_space, starts, ends):
    """(first, one past last) non-space position of each line [start, end); equal for a blank line.

    Gathers the lines' characters a chunk at a time, so the temporaries stay small
    whatever the size of the file.
    """
    first, last = starts.copy(), starts.copy()
    for lo, hi in chunks_of_ranges(ends - starts):
        positions = concatenated_ranges(starts[lo:hi], ends[lo:hi])      # the lines' characters
        bounds = np.concatenate(([0], np.cumsum(ends[lo:hi] - starts[lo:hi])))
        solid = np.flatnonzero(~is_space[ids[positions]])                # indices into positions
        i, j = np.searchsorted(solid, bounds[:-1]), np.searchsorted(solid, bounds[1:])
        has_text = i < j
        solid = np.append(solid, 0)                                      # so i and j - 1 always index something
        first[lo:hi] = np.where(has_text, positions[solid[i]], starts[lo:hi])
        last[lo:hi] = np.where(has_text, positions[solid[j - 1]] + 1, starts[lo:hi])
    return first, last


def choose_mode(lines):
    """("lines" or "text", why) for a file: text if blank lines make paragraphs or a line is long.

    A list of names or words has no blank lines between its entries and no long
    lines; prose, plays and code have both.
    """
    if lines.longest > AUTO_MAX_LINE:
        return "text", (f"its longest line has {lines.longest:,} characters, longer than a document "
                        f"(over {AUTO_MAX_LINE:,}); --data lines reads one document per line")
    if lines.blank_between:
        return "text", (f"{lines.blank_between:,} blank lines divide it into paragraphs; "
                        f"--data lines reads one document per line")
    return "lines", (f"{lines.starts.size:,} lines of at most {lines.longest:,} characters and no blank lines "
                     f"between them; --data text reads it as one stream")


# ----------------------------------------------------------- the two sources

class Source:
    """What both sources share: the tokens, the tokenizer, the split, and the fixed evaluation samples."""

    mode = None

    def __init__(self, tokens, tokenizer, block_size, spec, mode_reason):
        self.tokens = tokens              # (M,) token ids of the whole file, as the model sees them
        self.tokenizer = tokenizer
        self.block_size = block_size
        self.spec = spec
        self.mode_reason = mode_reason
        self._samples = {}

    def eval_sample(self, split, num_tokens):
        """A fixed list of sequences from `split` ("val" or "train") holding about num_tokens predictions.

        The same call always returns the same sequences, so an evaluation curve moves
        only because the model does. The train sample matches the size of the val one.
        num_tokens None: the whole split, every character predicted once.
        """
        if split == "train" and num_tokens is not None and self.spec.val_fraction:
            num_tokens = sum(len(s) - 1 for s in self.eval_sample("val", num_tokens))
        key = (split, num_tokens)
        if key not in self._samples:
            self._samples[key] = self._whole(split) if num_tokens is None else self._sample(split, num_tokens)
        return self._samples[key]

    def retokenized(self, tokenizer):
        """This data with its tokens in `tokenizer`'s ids (a trained model's vocabulary).

        Raises MicrogptError naming the characters `tokenizer` does not know.
        """
        unknown = tokenizer.unknown(self.tokenizer.chars)
        if unknown:
            shown = ", ".join(map(repr, unknown[:10])) + (f" and {len(unknown) - 10} more" if len(unknown) > 10 else "")
            raise MicrogptError(f"{self.spec.path} has {len(unknown)} character(s) the model never saw: {shown}; "
                                f"it can only be measured on text made of {tokenizer.describe()!r}")
        lookup = np.array([tokenizer.stoi[c] for c in self.tokenizer.chars]
                          + ([tokenizer.bos] if self.tokenizer.bos is not None else []), dtype=np.int64)
        copy = object.__new__(type(self))
        copy.__dict__.update(self.__dict__, tokens=lookup[self.tokens].astype(self.tokens.dtype),
                             tokenizer=tokenizer, _samples={})
        copy.__dict__.pop("_hashes", None)      # cached from the old ids
        return copy

    def fingerprint(self):
        """SHA-256 of the UTF-8 text the model sees (documents joined by newlines, or the stream)."""
        codes = np.array([ord(c) for c in self.tokenizer.chars] + [ord("\n")], dtype=np.uint32)  # BOS -> "\n"
        body = self.tokens[1:-1] if self.mode == "lines" else self.tokens
        ascii_only = codes.max() < 128                        # then each character is its own UTF-8 byte
        if ascii_only:
            codes = codes.astype(np.uint8)
        digest = hashlib.sha256()
        for lo in range(0, body.size, CHUNK_CHARS):
            chunk = codes[body[lo:lo + CHUNK_CHARS]]
            digest.update(chunk.tobytes() if ascii_only else chunk.tobytes().decode("utf-32-le").encode("utf-8"))
        return digest.hexdigest()


class Documents(Source):
    """A file of documents, one per line (names, words): each sequence is [BOS] + doc + [BOS], cut."""

    mode = "lines"

    def __init__(self, tokens, starts, lengths, tokenizer, block_size, spec, mode_reason=""):
        super().__init__(tokens, tokenizer, block_size, spec, mode_reason)
        self.starts = starts      # (D,) where document d's leading BOS sits in tokens
        self.lengths = lengths    # (D,) characters of document d
        self.val_docs, self.train_docs = split_documents(starts.size, spec.val_fraction)
        # where each document's sequence ends, cut to the block: a batch is then just slicing
        self.ends = starts + np.minimum(lengths + 2, block_size + 1)

    @classmethod
    def build(cls, text, lines, block_size, val_fraction, mode_reason=""):
        if lines.starts.size == 0:
            raise MicrogptError(f"{text.path} has no documents (it is blank); put one document per line")
        if lines.longest > MAX_DOCUMENT_CHARS:
            raise MicrogptError(
                f"{text.path}: a line of {lines.longest:,} characters is not a document (the limit is "
                f"{MAX_DOCUMENT_CHARS:,}); read the file as one stream with --data text")
        tokens, starts, lengths, tokenizer = _lay_out_documents(text, lines)
        spec = DataSpec(_absolute(text.path), "lines", val_fraction, int(starts.size), "")
        docs = cls(tokens, starts, lengths, tokenizer, block_size, spec, mode_reason)
        docs.spec = DataSpec(spec.path, "lines", val_fraction, spec.size, docs.fingerprint())
        return docs

    def __len__(self):
        return self.starts.size

    def sequence(self, d):
        """[BOS] + document d + [BOS], cut to block_size + 1 tokens: a view of `tokens`."""
        return self.tokens[self.starts[d]:self.ends[d]]

    def text(self, d):
        """Document d as a string."""
        start = self.starts[d] + 1
        return self.tokenizer.decode(self.tokens[start:start + self.lengths[d]].tolist())

    def batch(self, step, batch_size, seed):
        """The documents of 0-based `step`: the next batch_size of the training documents' epoch order."""
        docs = self.train_docs[batch_indices(self.train_docs.size, seed, step, batch_size)]
        tokens = self.tokens
        return [tokens[a:b] for a, b in zip(self.starts[docs].tolist(), self.ends[docs].tolist())]

    def num_cut(self):
        """How many documents are longer than the context (block_size - 1 characters) and lose their end."""
        return int((self.lengths + 2 > self.block_size + 1).sum())

    def _whole(self, split):
        return [self.sequence(d) for d in (self.val_docs if split == "val" else self.train_docs)]

    def _sample(self, split, num_tokens):
        docs = self.val_docs
        if split == "train":    # each document gives at least one prediction: num_tokens of them are enough
            picks = min(self.train_docs.size, num_tokens)
            docs = self.train_docs[np.random.default_rng(SPLIT_SEED + 1).choice(self.train_docs.size, picks,
                                                                                 replace=False)]
        predictions = np.cumsum(np.minimum(self.lengths[docs] + 1, self.block_size))
        count = int(np.searchsorted(predictions, num_tokens)) + 1
        return [self.sequence(d) for d in docs[:count]]

    @functools.cached_property
    def _hashes(self):
        """{split: sorted hashes of its documents}: to tell a sample that copies a document from a new one."""
        hashes = document_hashes(self.tokens, self.starts + 1, self.lengths)
        return {"train": np.sort(hashes[self.train_docs]), "val": np.sort(hashes[self.val_docs])}

    def membership(self, text):
        """"train" or "val" if `text` is one of that split's documents, else "new"."""
        try:
            ids = np.array(self.tokenizer.encode(text), dtype=self.tokens.dtype)
        except MicrogptError:
            return "new"
        if ids.size == 0:
            return "new"
        key = document_hashes(ids, np.zeros(1, np.int64), np.array([ids.size]))[0]
        for split, hashes in self._hashes.items():
            i = np.searchsorted(hashes, key)
            if i < hashes.size and hashes[i] == key:
                return split
        return "new"

    def describe(self):
        held = (f"{self.val_docs.size:,} held out for validation" if self.val_docs.size
                else "none held out for validation")
        return f"{len(self):,} documents, {held}"

    def check_fits(self, batch_size):
        """UsageError unless there are at least batch_size training documents."""
        if batch_size > self.train_docs.size:
            raise UsageError(f"--batch-size {batch_size} is more than the {self.train_docs.size:,} training "
                             f"documents of {self.spec.path}; use at most {self.train_docs.size:,}")


class TextStream(Source):
    """One long text read as a stream of characters: each sequence is a window of block_size + 1."""

    mode = "text"

    def __init__(self, tokens, tokenizer, block_size, spec, mode_reason=""):
        super().__init__(tokens, tokenizer, block_size, spec, mode_reason)
        # nanoGPT's split, to the character: the first int(N·(1 - f)) train, the rest validate
        self.num_train = int(tokens.size * (1.0 - spec.val_fraction))
        self.num_val = tokens.size - self.num_train

    @classmethod
    def build(cls, text, block_size, val_fraction, mode_reason=""):
        tokenizer = Tokenizer(text.alphabet, bos=False)
        spec = DataSpec(_absolute(text.path), "text", val_fraction, int(text.ids.size), "")
        stream = cls(text.ids, tokenizer, block_size, spec, mode_reason)
        stream.check_length()
        stream.spec = DataSpec(spec.path, "text", val_fraction, spec.size, stream.fingerprint())
        return stream

    def __len__(self):
        return self.tokens.size

    def check_length(self):
        """MicrogptError unless both parts of the split hold at least one window of block_size + 1."""
        window = self.block_size + 1
        needed = max(2 * window, math.ceil(window / self.spec.val_fraction) if self.spec.val_fraction else 0)
        if self.num_train < window or (self.spec.val_fraction and self.num_val < window) or len(self) < 2 * window:
            held = (f" with {self.spec.val_fraction:g} of it held out for validation"
                    if self.spec.val_fraction else "")
            raise MicrogptError(
                f"{self.spec.path} is {len(self):,} characters long; training on windows of {window} "
                f"(block_size {self.block_size} + 1){held} needs at least {needed:,}; use a longer text, "
                f"a smaller --block-size{' or a larger --val-fraction' if self.spec.val_fraction else ''}")

    def batch(self, step, batch_size, seed):
        """batch_size windows of block_size + 1 characters at seeded offsets in the training part."""
        offsets = window_offsets(self.num_train - self.block_size, seed, step, batch_size)
        return [self.tokens[o:o + self.block_size + 1] for o in offsets]

    def _bounds(self, split):
        return (self.num_train, len(self)) if split == "val" else (0, self.num_train)

    def _whole(self, split):
        """Consecutive windows over the split, overlapping by one token: each character after the
        first is predicted exactly once (the last window may be shorter)."""
        lo, hi = self._bounds(split)
        return [self.tokens[o:min(o + self.block_size + 1, hi)] for o in range(lo, hi - 1, self.block_size)]

    def _sample(self, split, num_tokens):
        """Windows spread evenly over the split (non-overlapping while there is room)."""
        lo, hi = self._bounds(split)
        window = self.block_size + 1
        count = max(1, min(math.ceil(num_tokens / self.block_size), (hi - lo) // window))
        offsets = lo + np.linspace(0, hi - lo - window, count).round().astype(np.int64)
        return [self.tokens[o:o + window] for o in offsets]

    def describe(self):
        held = (f"the last {self.num_val:,} held out for validation" if self.num_val
                else "none held out for validation")
        return f"{len(self):,} characters, {held}"

    def check_fits(self, batch_size):
        """Any batch size fits a stream: windows may overlap."""


# ------------------------------------------------------------------ helpers

def _lay_out_documents(text, lines):
    """tokens = BOS d0 BOS d1 ... BOS (in the documents' own vocabulary), starts, lengths, tokenizer.

    The file itself, with every run of characters outside the documents (a newline,
    stripped spaces, blank lines) replaced by one BOS: a mask and a compaction per
    chunk of lines, no Python object per character and no index per character.
    """
    bos = len(text.alphabet)                                  # a placeholder until the vocabulary is known
    tokens = np.empty(text.ids.size + 2, dtype=smallest_uint(bos + 1))
    tokens[0] = bos
    at, starts, previous_in_doc = 1, np.empty_like(lines.starts), False
    for lo, hi, first, last in _line_chunks(lines, text.ids.size):
        edges = np.zeros(hi - lo + 1, dtype=np.int8)
        edges[lines.starts[first:last] - lo] += 1
        edges[lines.ends[first:last] - lo] -= 1
        in_doc = np.cumsum(edges[:-1], dtype=np.int8).astype(bool)
        before = np.concatenate(([previous_in_doc], in_doc[:-1]))
        keep = in_doc | before                              # document characters, and the first of each gap
        kept = np.where(in_doc, text.ids[lo:hi], tokens.dtype.type(bos))[keep]
        tokens[at:at + kept.size] = kept
        position = np.cumsum(keep) - 1                      # where each kept character lands, from `at`
        starts[first:last] = at + position[lines.starts[first:last] - lo] - 1   # the BOS before each document
        at += kept.size
        previous_in_doc = bool(in_doc[-1]) if in_doc.size else previous_in_doc
    if previous_in_doc:                                     # the file ends inside a document: close it
        tokens[at], at = bos, at + 1
    tokens = tokens[:at]
    present = np.zeros(bos + 1, dtype=bool)
    for lo in range(0, tokens.size, CHUNK_CHARS):
        present |= np.bincount(tokens[lo:lo + CHUNK_CHARS], minlength=bos + 1) > 0
    present = present[:bos]
    tokenizer = Tokenizer([c for c, used in zip(text.alphabet, present) if used])
    lookup = np.append(np.cumsum(present) - 1, tokenizer.bos).astype(tokens.dtype)   # alphabet id -> token id
    for lo in range(0, tokens.size, CHUNK_CHARS):
        tokens[lo:lo + CHUNK_CHARS] = lookup[tokens[lo:lo + CHUNK_CHARS]]
    return tokens, starts, lines.ends - lines.starts, tokenizer


def _line_chunks(lines, size):
    """(lo, hi, first, last): file positions lo..hi holding exactly the documents first..last-1, in order."""
    first, lo = 0, 0
    while lo < size:
        hi = min(size, lo + CHUNK_CHARS)
        last = int(np.searchsorted(lines.starts, lines.starts.dtype.type(hi), side="left"))   # same dtype: no copy
        if last > first and lines.ends[last - 1] > hi:      # never cut a document in two
            hi = int(lines.ends[last - 1])
        yield lo, hi, first, last
        first, lo = last, hi


def _absolute(path):
    """An absolute path for a file (so --resume finds it from anywhere); "<string>" stays as it is."""
    return os.path.abspath(path) if os.path.exists(path) else path


def concatenated_ranges(starts, ends):
    """The concatenation of range(s, e) for each pair, as one int64 array."""
    lengths = ends - starts
    offsets = np.repeat(starts - np.concatenate(([0], np.cumsum(lengths)[:-1])), lengths)
    return offsets + np.arange(lengths.sum())


HASH_BASE = np.uint64(0x100000001B3)      # odd, so it has an inverse modulo 2^64


def document_hashes(tokens, starts, lengths):
    """A 64-bit hash of each token run tokens[s : s + length]: Σ_k (x_k + 1)·B^k mod 2^64, k from 0.

    The runs come in order (each starts at or after the end of the one before), as
    documents do in the token array.

    Computed for all runs at once, a chunk at a time: with a running sum
    C[i] = Σ_{j<i} (x_j + 1)·B^j over the chunk, a run's hash is (C[e] - C[s])·B^(-s),
    and NumPy's uint64 arithmetic wraps modulo 2^64 by itself. (Adding 1 makes runs
    that differ only by trailing zeros differ.)
    """
    inverse = np.uint64(pow(int(HASH_BASE), -1, 1 << 64))
    hashes = np.zeros(starts.size, dtype=np.uint64)
    for lo, hi in chunks_of_ranges(lengths):
        origin, stop = int(starts[lo]), int(starts[hi - 1] + lengths[hi - 1])
        values = tokens[origin:stop].astype(np.uint64) + np.uint64(1)
        running = np.concatenate((np.zeros(1, np.uint64), np.cumsum(values * _powers(HASH_BASE, stop - origin))))
        s = starts[lo:hi] - origin
        hashes[lo:hi] = (running[s + lengths[lo:hi]] - running[s]) * _powers(inverse, stop - origin + 1)[s]
    return hashes


def _powers(base, n):
    """base^0, base^1, ..., base^(n-1) modulo 2^64."""
    powers = np.full(n, base, dtype=np.uint64)
    powers[:1] = 1
    return np.cumprod(powers)


def chunks_of_ranges(lengths):
    """(lo, hi) runs of consecutive ranges holding about CHUNK_CHARS characters each."""
    ends = np.cumsum(lengths)
    lo = 0
    while lo < lengths.size:
        hi = max(lo + 1, int(np.searchsorted(ends, ends[lo] - lengths[lo] + CHUNK_CHARS, side="right")))
        yield lo, hi
        lo = hi


def split_documents(num_docs, val_fraction):
    """(validation documents, training documents) as index arrays.

    The validation documents are a seeded sample: val_fraction of them, at least one
    when val_fraction > 0, at most MAX_VAL_DOCUMENTS. The training documents keep the
    file's order (the epoch order shuffles them).
    """
    num_val = 0 if val_fraction == 0 else min(max(1, round(num_docs * val_fraction)), MAX_VAL_DOCUMENTS)
    if num_val >= num_docs:
        raise MicrogptError(f"{num_docs} document(s) cannot be split into training and validation; "
                            f"use more documents, or --val-fraction 0 to train on all of them")
    val = np.random.default_rng(SPLIT_SEED).choice(num_docs, size=num_val, replace=False)
    training = np.ones(num_docs, dtype=bool)
    training[val] = False
    return val, _positions(training)


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


OFFSETS_PER_DRAW = 1024     # window offsets are drawn for this many steps at a time


@functools.lru_cache(maxsize=4)
def _offset_block(num_offsets, seed, block, batch_size):
    """Offsets for steps block·OFFSETS_PER_DRAW .. (block + 1)·OFFSETS_PER_DRAW - 1, fixed by (seed, block)."""
    offsets = np.random.default_rng([seed, block, batch_size]).integers(
        0, num_offsets, size=(OFFSETS_PER_DRAW, batch_size))
    offsets.flags.writeable = False
    return offsets


def window_offsets(num_offsets, seed, step, batch_size):
    """The batch_size window offsets (each in 0..num_offsets-1) of 0-based `step`.

    A pure function of (seed, step), drawn a thousand steps at a time because
    building a generator costs as much as a small training step.
    """
    block, row = divmod(step, OFFSETS_PER_DRAW)
    return _offset_block(num_offsets, seed, block, batch_size)[row]
