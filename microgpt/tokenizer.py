"""The character tokenizer: characters <-> token ids, with an optional BOS token.

The vocabulary is the training file's characters, sorted. A model of documents
(one name per line) adds one special token, BOS, that marks both the beginning and
the end of a document:

    "emma"  ->  [BOS, e, m, m, a, BOS]        cut to block_size + 1 tokens

so it learns to predict the first character from BOS alone and to emit BOS when
the name is done. A model of a text stream (a book) has no documents to mark, so
its vocabulary is the characters alone.
"""

from microgpt.errors import MicrogptError

BOS = "<BOS>"  # how the special token is written when a vocabulary is printed


class Tokenizer:
    """Ids 0..n-1 are the sorted characters; with `bos`, id n is BOS (else `self.bos` is None)."""

    def __init__(self, chars, bos=True):
        self.chars = sorted(set(chars))
        self.stoi = {c: i for i, c in enumerate(self.chars)}
        self.bos = len(self.chars) if bos else None

    @classmethod
    def from_documents(cls, docs):
        return cls(set("".join(docs)))

    @property
    def vocab_size(self):
        return len(self.chars) + (self.bos is not None)

    def unknown(self, text):
        """The characters of `text` that are not in the vocabulary, sorted."""
        return sorted(set(text) - self.stoi.keys())

    def encode(self, text):
        """Token ids of `text`, without BOS. Raises MicrogptError naming every unknown character."""
        unknown = self.unknown(text)
        if unknown:
            raise MicrogptError(f"{len(unknown)} character(s) not in the vocabulary: "
                                f"{', '.join(map(repr, unknown))}; the vocabulary is {''.join(self.chars)!r}")
        return [self.stoi[c] for c in text]

    def decode(self, ids):
        """The text of token ids; BOS is skipped."""
        return "".join(self.chars[i] for i in ids if i != self.bos)

    def document(self, text, block_size):
        """[BOS] + encode(text) + [BOS], cut to block_size + 1 tokens (block_size predictions)."""
        return ([self.bos] + self.encode(text) + [self.bos])[:block_size + 1]

    def describe(self):
        """The vocabulary as a learner reads it, e.g. "abc...z + BOS" (newline and space made visible)."""
        shown = "".join(self.chars).replace("\n", "\\n").replace("\t", "\\t").replace("\r", "\\r")
        return shown + (" + BOS" if self.bos is not None else "")

    def to_dict(self):
        return {"chars": "".join(self.chars), "bos": self.bos is not None}

    @classmethod
    def from_dict(cls, d):
        return cls(d["chars"], bos=d.get("bos", True))   # checkpoints before streams always had BOS
