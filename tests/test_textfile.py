"""Reading text files into character ids: decoding, what is refused, and memory that stays bounded."""

import hashlib
import os
import tracemalloc

import numpy as np
import pytest

from microgpt import textfile
from microgpt.errors import MicrogptError
from microgpt.textfile import read_text, text_from_string


def as_string(text):
    return "".join(text.alphabet[i] for i in text.ids)


@pytest.mark.parametrize("content, expected", [
    ("hello\nworld\n", "hello\nworld\n"),
    ("\ufeffhello", "hello"),                         # a byte-order mark is not text
    ("a\r\nb\r\n", "a\nb\n"),                         # Windows line endings read as LF
    ("a\rb\r\nc", "a\rb\nc"),                         # a lone CR stays (it is not a line ending)
    ("na\u2028me\u0085x", "na\u2028me\u0085x"),        # only \n ends a line; these are characters
    ("héllo wörld ✓", "héllo wörld ✓"),
])
def test_the_ids_spell_the_text(tmp_path, content, expected):
    path = tmp_path / "t.txt"
    path.write_bytes(content.encode("utf-8"))
    text = read_text(path)
    assert as_string(text) == expected
    assert text.alphabet == "".join(sorted(set(expected)))
    assert as_string(text_from_string(content.lstrip("\ufeff"))) == expected


def test_characters_split_across_chunks_decode_whole(tmp_path, monkeypatch):
    """A 3-byte character straddling the boundary of two reads is decoded once, correctly."""
    monkeypatch.setattr(textfile, "CHUNK_BYTES", 4)
    content = "ab✓cd✓✓e" * 3
    path = tmp_path / "t.txt"
    path.write_bytes(content.encode("utf-8"))
    assert as_string(read_text(path)) == content


def test_ids_use_the_smallest_integer_type(tmp_path):
    small, large = tmp_path / "s.txt", tmp_path / "l.txt"
    small.write_text("abc")
    large.write_text("".join(map(chr, range(0x4E00, 0x4E00 + 300))), encoding="utf-8")
    assert read_text(small).ids.dtype == np.uint8 and read_text(large).ids.dtype == np.uint16


@pytest.mark.parametrize("make, fragment", [
    (lambda p: None, "no such file"),
    (lambda p: p.mkdir(), "is a directory"),
    (lambda p: p.write_bytes(b""), "is empty (no characters)"),
    (lambda p: p.write_bytes(b"\xef\xbb\xbf"), "no characters after its byte-order mark"),
    (lambda p: p.write_bytes(b"ab\x00cd"), "a NUL byte at offset 2"),
    (lambda p: p.write_bytes(b"ok\n\xc3\x28"), "not UTF-8 text (a bad byte near offset 3)"),
])
def test_what_is_not_a_text_file_is_refused(tmp_path, make, fragment):
    path = tmp_path / "x.txt"
    make(path)
    with pytest.raises(MicrogptError, match=fragment.replace("(", r"\(").replace(")", r"\)")):
        read_text(path)


def test_a_device_is_refused_without_reading_it():
    """/dev/zero never ends: it must be refused before a single byte is read."""
    with pytest.raises(MicrogptError, match="not a regular file"):
        read_text("/dev/zero")


def test_a_file_over_the_limit_is_refused(tmp_path, monkeypatch):
    monkeypatch.setattr(textfile, "MAX_TEXT_BYTES", 100)
    path = tmp_path / "big.txt"
    path.write_bytes(b"a" * 101)
    with pytest.raises(MicrogptError, match="more than microgpt reads"):
        read_text(path)


def test_memory_stays_a_small_multiple_of_the_file(tmp_path):
    """8 MB of text: a Python object per character would need ~50x that; the ids need 1x."""
    path = tmp_path / "big.txt"
    rng = np.random.default_rng(0)
    path.write_bytes(bytes(rng.choice(list(b"abcdefgh \n"), size=8_000_000).astype(np.uint8)))
    tracemalloc.start()
    text = read_text(path)
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    assert len(text) == 8_000_000 and text.ids.dtype == np.uint8
    assert peak < 4 * os.path.getsize(path), f"peak {peak / 1e6:.0f} MB for an 8 MB file"


def test_shakespeare_reads_as_65_characters():
    from tests.conftest import REPO_ROOT
    text = read_text(f"{REPO_ROOT}/data/shakespeare.txt")
    assert len(text) == 1_115_394 and len(text.alphabet) == 65
    with open(f"{REPO_ROOT}/data/shakespeare.txt", "rb") as f:
        assert hashlib.sha256(f.read()).hexdigest().startswith("86c4e6aa")
