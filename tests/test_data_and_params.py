"""Reading documents, the tokenizer, the data order, and the parameter layout."""

import filecmp

import numpy as np
import pytest

from microgpt.config import GPTConfig, TrainConfig
from microgpt.data import Tokenizer, batch_indices, read_documents
from microgpt.errors import MicrogptError, UsageError
from microgpt.params import Params, param_shapes

from tests.conftest import REPO_ROOT


def test_documents_tokenizer_round_trip(names_file):
    docs = read_documents(names_file)
    tok = Tokenizer.from_documents(docs)
    assert tok.vocab_size == len(set("".join(docs))) + 1
    assert tok.bos == tok.vocab_size - 1
    for doc in docs:
        assert tok.decode(tok.encode(doc)) == doc


def test_document_is_bos_chars_bos_cut_to_block_plus_one():
    tok = Tokenizer("abc")
    assert tok.document("cab", block_size=16) == [3, 2, 0, 1, 3]
    assert tok.document("abcabc", block_size=4) == [3, 0, 1, 2, 0]


def test_unknown_character_is_named():
    with pytest.raises(MicrogptError, match="'z'"):
        Tokenizer("abc").encode("az")


def test_crlf_and_blank_lines(tmp_path):
    path = tmp_path / "n.txt"
    path.write_bytes(b"ann\r\n\r\n  bob  \r\n\n")
    assert read_documents(path) == ["ann", "bob"]


def test_data_order_covers_every_document_once_per_epoch():
    seen = [i for step in range(10) for i in batch_indices(20, seed=3, step=step, batch_size=2)]
    assert sorted(seen) == list(range(20))
    next_epoch = [i for step in range(10, 20) for i in batch_indices(20, 3, step, 2)]
    assert sorted(next_epoch) == list(range(20)) and next_epoch != seen


def test_params_layout_and_views(tiny_config):
    params = Params.init(tiny_config, np.random.default_rng(0))
    shapes = param_shapes(tiny_config)
    assert list(shapes)[:2] == ["wte", "wpe"] and list(shapes)[-1] == "lm_head"
    assert shapes["layer1.mlp_fc1"] == (32, 8) and shapes["layer1.mlp_fc2"] == (8, 32)
    assert params.size == sum(np.prod(s) for s in shapes.values())
    params["layer0.attn_wq"][2, 3] = 7.0       # a view: writes reach the flat vector
    assert params.flat[params.offsets["layer0.attn_wq"] + 2 * 8 + 3] == 7.0
    assert params.flat.dtype == np.float64


def test_init_is_seeded_normal(tiny_config):
    a = Params.init(tiny_config, np.random.default_rng(5), std=0.08)
    b = Params.init(tiny_config, np.random.default_rng(5), std=0.08)
    np.testing.assert_array_equal(a.flat, b.flat)
    assert a.flat.std() == pytest.approx(0.08, rel=0.1)


@pytest.mark.parametrize("kwargs,message", [
    (dict(n_embd=10, n_head=4), "divisible"),
    (dict(n_layer=0), "n_layer"),
    (dict(block_size=0), "block_size"),
])
def test_gpt_config_validation(kwargs, message):
    with pytest.raises(UsageError, match=message):
        GPTConfig(vocab_size=5, **kwargs).validate()


@pytest.mark.parametrize("kwargs,message", [
    (dict(steps=0), "steps"),
    (dict(lr=0.0), "learning rate"),
    (dict(lr=float("nan")), "learning rate"),
    (dict(batch_size=0), "batch"),
])
def test_train_config_validation(kwargs, message):
    with pytest.raises(UsageError, match=message):
        TrainConfig(**kwargs).validate()


def test_bundled_names_match_the_data_folder():
    assert filecmp.cmp(f"{REPO_ROOT}/data/names.txt", f"{REPO_ROOT}/microgpt/assets/names.txt", shallow=False)
    docs = read_documents(f"{REPO_ROOT}/data/names.txt")
    assert len(docs) == 32_000 and len(set(docs)) == 32_000
    assert set("".join(docs)) == set("abcdefghijklmnopqrstuvwxyz")
