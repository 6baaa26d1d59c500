"""Data sources: a file of documents and a character stream, their splits, batches and samples."""

import hashlib
import os
import tracemalloc

import numpy as np
import pytest

from microgpt import data as data_module
from microgpt.data import (MAX_VAL_DOCUMENTS, batch_indices, choose_mode, documents_from_strings, load_data,
                           read_documents, Lines)
from microgpt.errors import MicrogptError, UsageError
from microgpt.textfile import text_from_string
from microgpt.tokenizer import Tokenizer
from tests.conftest import NAMES, REPO_ROOT

SHAKESPEARE = f"{REPO_ROOT}/data/shakespeare.txt"


def write(tmp_path, content, name="d.txt"):
    path = tmp_path / name
    path.write_bytes(content.encode("utf-8") if isinstance(content, str) else content)
    return path


# ---------------------------------------------------------------- documents

def test_documents_are_stripped_non_blank_lines(tmp_path):
    path = write(tmp_path, "\ufeffann\r\n\r\n  bob  \r\n\n na\u2028me \n")
    assert read_documents(path) == ["ann", "bob", "na\u2028me"]   # U+2028 is inside a name, not a break


def test_documents_are_laid_out_bos_separated_and_sequences_are_views(tmp_path):
    docs = load_data(write(tmp_path, "ab\nc\nabcab\n"), block_size=4, mode="lines", val_fraction=0.0)
    tok = docs.tokenizer
    assert tok.chars == ["a", "b", "c"] and tok.bos == 3
    assert docs.tokens.tolist() == [3, 0, 1, 3, 2, 3, 0, 1, 2, 0, 1, 3]
    assert [docs.sequence(d).tolist() for d in range(3)] == [[3, 0, 1, 3], [3, 2, 3], [3, 0, 1, 2, 0]]
    assert docs.sequence(2).base is not None                  # a view: no copy per step
    assert docs.num_cut() == 1 and [docs.text(d) for d in range(3)] == ["ab", "c", "abcab"]


def test_the_fingerprint_is_the_documents_joined_by_newlines(tmp_path):
    """The definition older checkpoints used, so their runs still resume."""
    path = write(tmp_path, "zoë\n\n  emma \r\nli\n")
    docs = load_data(path, 8, mode="lines")
    assert docs.spec.sha256 == hashlib.sha256("zoë\nemma\nli".encode()).hexdigest()
    assert docs.spec.path == os.path.abspath(path) and docs.spec.size == 3


def test_the_validation_split_is_fixed_by_the_file_not_the_seed():
    docs = documents_from_strings([f"n{i}" for i in range(1000)], 8, val_fraction=0.1)
    again = documents_from_strings([f"n{i}" for i in range(1000)], 8, val_fraction=0.1)
    assert docs.val_docs.size == 100 and np.array_equal(docs.val_docs, again.val_docs)
    assert set(docs.val_docs).isdisjoint(docs.train_docs) and docs.train_docs.size == 900
    for seed in (0, 1):
        picked = {d for step in range(50) for d in docs.train_docs[batch_indices(900, seed, step, 18)]}
        assert picked == set(docs.train_docs.tolist())         # an epoch: each training document once


def test_the_validation_split_is_capped():
    docs = documents_from_strings([f"{i:05d}" for i in range(30_000)], 8, val_fraction=0.5)
    assert docs.val_docs.size == MAX_VAL_DOCUMENTS


def test_no_split_trains_on_every_document_in_the_old_order():
    docs = documents_from_strings(NAMES, 16)
    assert docs.val_docs.size == 0 and docs.train_docs.tolist() == list(range(len(NAMES)))
    tok = Tokenizer.from_documents(NAMES)
    for step in range(10):
        expected = [tok.document(NAMES[i], 16) for i in batch_indices(len(NAMES), 7, step, 3)]
        assert [s.tolist() for s in docs.batch(step, 3, 7)] == expected


def test_too_few_documents_to_split():
    with pytest.raises(MicrogptError, match="1 document.* cannot be split"):
        documents_from_strings(["emma"], 8, val_fraction=0.1)


def test_eval_samples_are_fixed_and_the_same_size():
    docs = documents_from_strings(NAMES * 20, 16, val_fraction=0.2)
    val, train = docs.eval_sample("val", 40), docs.eval_sample("train", 40)
    val_predictions = sum(len(s) - 1 for s in val)
    assert 40 <= val_predictions < 40 + 16
    assert sum(len(s) - 1 for s in train) >= val_predictions
    assert docs.eval_sample("val", 40) is val                  # computed once
    whole = docs.eval_sample("val", None)
    assert len(whole) == docs.val_docs.size


def test_membership_tells_training_validation_and_new_names():
    docs = documents_from_strings(NAMES, 16, val_fraction=0.2)
    val_name, train_name = docs.text(docs.val_docs[0]), docs.text(docs.train_docs[0])
    assert (docs.membership(val_name), docs.membership(train_name)) == ("val", "train")
    assert docs.membership("zzzz") == "new" and docs.membership("emm") == "new"


def test_a_line_too_long_for_a_document(tmp_path):
    path = write(tmp_path, "a" * (data_module.MAX_DOCUMENT_CHARS + 1) + "\nb\n")
    with pytest.raises(MicrogptError, match="is not a document.*--data text"):
        load_data(path, 8, mode="lines")


# ---------------------------------------------------------------- a stream

@pytest.fixture(scope="module")
def shakespeare():
    return load_data(SHAKESPEARE, block_size=64)


def test_shakespeare_is_a_stream_split_as_nanogpt_splits_it(shakespeare):
    assert shakespeare.mode == "text" and "blank lines divide it into paragraphs" in shakespeare.mode_reason
    assert shakespeare.tokenizer.vocab_size == 65 and shakespeare.tokenizer.bos is None
    assert (shakespeare.num_train, shakespeare.num_val) == (1_003_854, 111_540)   # int(0.9·n) to train
    with open(SHAKESPEARE, "rb") as f:                          # no BOM, no CR: the file's own hash
        assert shakespeare.spec.sha256 == hashlib.sha256(f.read()).hexdigest()


def test_windows_are_block_plus_one_from_the_training_part_only(shakespeare):
    for step in (0, 1, 1023, 1024, 5000):
        batch = shakespeare.batch(step, 12, seed=42)
        assert len(batch) == 12 and all(len(w) == 65 for w in batch)
        assert all(w.base is not None for w in batch)
    tokens = shakespeare.tokens
    for w in shakespeare.batch(3, 12, seed=42):
        start = int((w.__array_interface__["data"][0] - tokens.__array_interface__["data"][0]) // tokens.itemsize)
        assert 0 <= start and start + 65 <= shakespeare.num_train


def test_windows_are_a_pure_function_of_seed_and_step(shakespeare):
    same = [w.tolist() for w in shakespeare.batch(2000, 4, seed=7)]
    shakespeare.batch(10, 4, seed=7)                              # another step in between changes nothing
    assert [w.tolist() for w in shakespeare.batch(2000, 4, seed=7)] == same
    assert [w.tolist() for w in shakespeare.batch(2001, 4, seed=7)] != same
    assert [w.tolist() for w in shakespeare.batch(2000, 4, seed=8)] != same


def test_the_whole_validation_split_predicts_each_character_once(shakespeare):
    whole = shakespeare.eval_sample("val", None)
    assert sum(len(w) - 1 for w in whole) == shakespeare.num_val - 1
    joined = np.concatenate([whole[0]] + [w[1:] for w in whole[1:]])
    np.testing.assert_array_equal(joined, shakespeare.tokens[shakespeare.num_train:])


def test_the_eval_sample_comes_from_its_split(shakespeare):
    val = shakespeare.eval_sample("val", 4096)
    assert len(val) == 64 and sum(len(w) - 1 for w in val) == 4096
    tokens = shakespeare.tokens
    for w in val:
        start = (w.__array_interface__["data"][0] - tokens.__array_interface__["data"][0]) // tokens.itemsize
        assert start >= shakespeare.num_train


@pytest.mark.parametrize("length, val_fraction, fragment", [
    (100, 0.1, "is 100 characters long; training on windows of 65 (block_size 64 + 1) with 0.1 of it held "
               "out for validation needs at least 650"),
    (100, 0.0, "needs at least 130"),
])
def test_a_text_too_short_for_its_windows(tmp_path, length, val_fraction, fragment):
    path = write(tmp_path, "ab cd\n\nef" * (length // 9) + "x" * (length % 9))
    with pytest.raises(MicrogptError) as info:
        load_data(path, 64, mode="text", val_fraction=val_fraction)
    assert fragment in str(info.value)


def test_text_retokenized_into_a_models_vocabulary(tmp_path):
    text = load_data(write(tmp_path, "abba\n\nbaab\n" * 20), 4, mode="text", val_fraction=0.0)
    model = Tokenizer("\nabcz", bos=False)
    mapped = text.retokenized(model)
    assert model.decode(mapped.tokens[:5].tolist()) == "abba\n"
    with pytest.raises(MicrogptError, match="2 character.* the model never saw: 'a', 'b'"):
        text.retokenized(Tokenizer("\nxyz", bos=False))


# ---------------------------------------------------------------- choosing the mode

@pytest.mark.parametrize("content, mode, fragment", [
    ("emma\nolivia\nava\n", "lines", "3 lines of at most 6 characters and no blank lines"),
    ("To be,\nor not.\n\nThat is\nthe question.\n", "text", "1 blank lines divide it into paragraphs"),
    ("x" * 2000 + "\n", "text", "its longest line has 2,000 characters"),
    ("emma\nava\n\n\n", "lines", "2 lines"),                      # blank lines only at the end
])
def test_auto_mode_says_what_it_chose_and_why(content, mode, fragment):
    chosen, why = choose_mode(Lines.of(text_from_string(content)))
    assert chosen == mode and fragment in why
    assert ("--data text" if mode == "lines" else "--data lines") in why


def test_bad_arguments():
    with pytest.raises(UsageError, match="between 0 and 0.5"):
        load_data(SHAKESPEARE, 8, val_fraction=0.6)
    with pytest.raises(UsageError, match="unknown data mode"):
        load_data(SHAKESPEARE, 8, mode="words")


# ---------------------------------------------------------------- memory

@pytest.mark.parametrize("mode, alphabet, limit", [("text", b"abcdefgh \n", 4), ("lines", b"abcdefgh\n", 12)])
def test_loading_stays_in_bounded_memory(tmp_path, mode, alphabet, limit):
    """8 MB of text, never a Python object per character (which would take ~50x the file)."""
    rng = np.random.default_rng(0)
    path = write(tmp_path, bytes(rng.choice(list(alphabet), size=8_000_000).astype(np.uint8)))
    tracemalloc.start()
    data = load_data(path, 64, mode=mode)
    data.batch(0, 8, 0)
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    assert peak < limit * os.path.getsize(path), f"{mode}: peak {peak / 1e6:.0f} MB for an 8 MB file"


def test_document_hashes_follow_their_formula_and_ignore_where_a_run_sits():
    from microgpt.data import HASH_BASE, document_hashes
    tokens = np.array([5, 1, 2, 3, 9, 1, 2, 3, 0, 7], dtype=np.uint8)
    hashes = document_hashes(tokens, np.array([0, 1, 5, 8]), np.array([1, 3, 3, 2]))
    def reference(run):
        return sum((int(x) + 1) * int(HASH_BASE) ** k for k, x in enumerate(run)) % (1 << 64)
    assert hashes.tolist() == [reference([5]), reference([1, 2, 3]), reference([1, 2, 3]), reference([0, 7])]
    assert hashes[1] == hashes[2] != hashes[3]
