"""The character tokenizer, with and without BOS."""

import pytest

from microgpt.errors import MicrogptError
from microgpt.tokenizer import Tokenizer


def test_ids_are_the_sorted_characters_then_bos():
    tok = Tokenizer("cabbage")
    assert tok.chars == ["a", "b", "c", "e", "g"] and tok.bos == 5 and tok.vocab_size == 6
    assert tok.encode("cab") == [2, 0, 1] and tok.decode([2, 0, 1, 5]) == "cab"


def test_document_is_bos_chars_bos_cut_to_block_plus_one():
    tok = Tokenizer("abc")
    assert tok.document("cab", block_size=16) == [3, 2, 0, 1, 3]
    assert tok.document("abcabc", block_size=4) == [3, 0, 1, 2, 0]


def test_a_stream_tokenizer_has_no_bos():
    tok = Tokenizer("ba\n", bos=False)
    assert tok.bos is None and tok.vocab_size == 3 and tok.encode("ab\n") == [1, 2, 0]
    assert tok.describe() == "\\nab"
    assert Tokenizer.from_dict(tok.to_dict()).bos is None


def test_every_unknown_character_is_named():
    with pytest.raises(MicrogptError, match="2 character.* not in the vocabulary: 'y', 'z'"):
        Tokenizer("abc").encode("azy")


def test_older_dicts_without_the_bos_flag_have_bos():
    assert Tokenizer.from_dict({"chars": "ab"}).bos == 2
