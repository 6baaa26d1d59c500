"""Reading a UTF-8 text file into an array of character ids, in bounded memory.

    text = read_text("data/shakespeare.txt")
    text.alphabet        # '\\n !$&\\',-.3:;?ABC...xyz': the distinct characters, sorted
    text.ids             # (N,) uint8 array: text.ids[i] is the index in `alphabet` of character i

A text is never held as a Python object per character (a list of 200 million
one-character strings needs gigabytes): the file is read in chunks, twice. The
first pass finds the alphabet and the length, the second writes each chunk's ids
into one preallocated array of the smallest integer type that holds them. An ASCII
chunk needs no decoding at all: its bytes are its code points.

What is not a text file is refused with one line saying what to do: a missing path,
a directory, a device or pipe (`/dev/zero` would never end), a file over
MAX_TEXT_BYTES, NUL bytes, bytes that are not UTF-8, and a file with nothing in it.
A UTF-8 byte-order mark at the start is dropped, and Windows line endings (CR LF)
are read as LF, so a file saved on Windows trains exactly like the same text saved
elsewhere.
"""

import codecs
import os
import stat
from dataclasses import dataclass

import numpy as np

from microgpt.errors import MicrogptError

MAX_TEXT_BYTES = 1 << 30        # 1 GiB: the ids alone take as much memory again
CHUNK_BYTES = 1 << 20           # read 1 MiB at a time: counting and lookups make 8-byte temporaries per character
PROGRESS_BYTES = 1 << 26        # show a progress bar for files of 64 MiB and more
BYTE_ORDER_MARK = 0xFEFF
CR, LF = 0x0D, 0x0A


@dataclass
class Text:
    """A text file as ids into its sorted alphabet."""

    path: str
    alphabet: str       # the distinct characters, sorted by code point
    ids: np.ndarray     # (N,) unsigned ints: ids[i] indexes alphabet

    def __len__(self):
        return self.ids.size

    def id_of(self, char):
        """The id of `char`, or -1 if the text does not contain it."""
        return self.alphabet.find(char) if len(char) == 1 else -1


def read_text(path, progress=False):
    """The `Text` of a UTF-8 file. `progress`: show a progress bar (on stderr) for large files."""
    size = check_text_file(path)
    bar = _progress_bar(path, 2 * size) if progress and size >= PROGRESS_BYTES else None
    present, length = np.zeros(0x110000, dtype=bool), 0
    for codes in _code_chunks(path, bar):                       # pass 1: alphabet and length
        seen = np.bincount(codes) > 0                           # counting beats sorting (np.unique) here
        present[:seen.size] |= seen
        length += codes.size
    if length == 0:
        raise MicrogptError(f"{path} is empty (no characters{' after its byte-order mark' if size else ''}); "
                            f"give a file with text in it")
    codepoints = np.flatnonzero(present)
    lookup = np.zeros(0x110000, dtype=smallest_uint(codepoints.size))
    lookup[codepoints] = np.arange(codepoints.size)
    ids, at = np.empty(length, dtype=lookup.dtype), 0
    ascii_table = bytes(lookup[:256].astype(np.uint8)) if lookup.dtype == np.uint8 else None
    for codes in _code_chunks(path, bar):                       # pass 2: the ids
        if ascii_table is not None and codes.dtype == np.uint8:  # bytes.translate: one table lookup a byte, in C
            ids[at:at + codes.size] = np.frombuffer(codes.tobytes().translate(ascii_table), dtype=np.uint8)
        else:
            ids[at:at + codes.size] = lookup[codes]
        at += codes.size
    if bar is not None:
        bar.close()
    alphabet = "".join(map(chr, codepoints))
    return _without_crlf(Text(path, alphabet, ids))


def text_from_string(string, path="<string>"):
    """The `Text` of a Python string (for data made in code rather than read from a file)."""
    codes = np.frombuffer(string.encode("utf-32-le"), dtype=np.uint32)
    codepoints, ids = np.unique(codes, return_inverse=True)
    return _without_crlf(Text(path, "".join(map(chr, codepoints)), ids.astype(smallest_uint(codepoints.size))))


def check_text_file(path):
    """The size in bytes of `path`, after refusing what cannot be a text file we can read."""
    try:
        info = os.stat(path)
    except FileNotFoundError:
        raise MicrogptError(f"{path}: no such file; give the path of a UTF-8 text file") from None
    except OSError as e:
        raise MicrogptError(f"{path}: cannot read it ({e.strerror})") from None
    if stat.S_ISDIR(info.st_mode):
        raise MicrogptError(f"{path} is a directory; give a text file")
    if not stat.S_ISREG(info.st_mode):
        raise MicrogptError(f"{path} is not a regular file (a device, pipe or socket never ends like a "
                            f"text file does); give a text file")
    if info.st_size > MAX_TEXT_BYTES:
        raise MicrogptError(f"{path} is {info.st_size / 2**20:,.0f} MiB, more than microgpt reads "
                            f"({MAX_TEXT_BYTES >> 20:,} MiB); train on a part of it")
    if not os.access(path, os.R_OK):
        raise MicrogptError(f"{path}: cannot read it (permission denied)")
    return info.st_size


def _code_chunks(path, bar):
    """The file's code points, chunk by chunk (uint8 arrays for ASCII chunks, uint32 otherwise)."""
    decoder = codecs.getincrementaldecoder("utf-8")()
    offset, first = 0, True
    try:
        with open(path, "rb") as f:
            while True:
                raw = f.read(CHUNK_BYTES)
                nul = raw.find(b"\0")
                if nul >= 0:
                    raise MicrogptError(f"{path} looks like a binary file (a NUL byte at offset {offset + nul:,}); "
                                        f"give a UTF-8 text file")
                codes = _decode(decoder, raw, offset, path)
                if first and codes.size and codes[0] == BYTE_ORDER_MARK:
                    codes = codes[1:]
                first = first and codes.size == 0
                if codes.size:
                    yield codes
                if bar is not None:
                    bar.update(len(raw))
                if not raw:
                    return
                offset += len(raw)
    except OSError as e:
        raise MicrogptError(f"{path}: cannot read it ({e.strerror})") from None


def _decode(decoder, raw, offset, path):
    """Code points of the next bytes; the decoder keeps a character split across chunks for the next."""
    if raw.isascii() and decoder.getstate()[0] == b"":
        return np.frombuffer(raw, dtype=np.uint8)
    try:
        text = decoder.decode(raw, final=not raw)
    except UnicodeDecodeError as e:
        raise MicrogptError(f"{path} is not UTF-8 text (a bad byte near offset {offset + max(e.start, 0):,}); "
                            f"re-save it as UTF-8") from None
    return np.frombuffer(text.encode("utf-32-le"), dtype=np.uint32)


def _without_crlf(text):
    """`text` with every CR that precedes an LF removed (and CR dropped from the alphabet if it is gone)."""
    cr, lf = text.id_of("\r"), text.id_of("\n")
    if cr < 0 or lf < 0:
        return text
    keep = np.ones(text.ids.size, dtype=bool)
    keep[:-1] = ~((text.ids[:-1] == cr) & (text.ids[1:] == lf))
    if keep.all():
        return text
    ids = text.ids[keep]
    if (ids == cr).any():
        return Text(text.path, text.alphabet, ids)
    ids[ids > cr] -= 1                                   # CR is gone: close the gap it leaves
    return Text(text.path, text.alphabet.replace("\r", ""), ids)


def smallest_uint(n):
    """The smallest unsigned dtype that holds 0..n-1."""
    return next(t for t in (np.uint8, np.uint16, np.uint32) if n <= np.iinfo(t).max + 1)


def _progress_bar(path, total):
    from tqdm import tqdm
    return tqdm(total=total, unit="B", unit_scale=True, desc=f"reading {os.path.basename(path)}",
                leave=False, dynamic_ncols=True)
