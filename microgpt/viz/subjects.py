"""Things worth drawing, each a `Value` with its gradients filled in by `backward()`.

    expression()                         L = (a·b + c)·f, the micrograd warm-up
    neuron()                             tanh(w1·x1 + w2·x2 + b)
    token_loss(model, tokens, pos)       the loss of one prediction of the GPT
    document_loss(model, tokens)         the mean loss over a whole document

`fresh_model()` and `trained_model(run_dir)` give the (model, tokenizer) pair the
last two need.
"""

import os

import numpy as np

from microgpt.engine import Value, name_scope

BUNDLED_NAMES = os.path.join(os.path.dirname(os.path.dirname(__file__)), "assets", "names.txt")


def expression():
    """L = (a·b + c)·f with every value labelled: 7 values, 3 ops."""
    a, b, c, f = Value(2.0, label="a"), Value(-3.0, label="b"), Value(10.0, label="c"), Value(-2.0, label="f")
    e = a * b
    e.label = "e"
    d = e + c
    d.label = "d"
    L = d * f
    L.label = "L"
    L.backward()
    return L


def neuron():
    """o = tanh(w1·x1 + w2·x2 + b): one neuron with two inputs."""
    x1, x2 = Value(2.0, label="x1"), Value(0.0, label="x2")
    w1, w2 = Value(-3.0, label="w1"), Value(1.0, label="w2")
    b = Value(6.8813735870195432, label="b")
    n = x1 * w1 + x2 * w2 + b
    n.label = "n"
    o = n.tanh()
    o.label = "o"
    o.backward()
    return o


def fresh_model(seed=42):
    """A ScalarGPT with the default config, the bundled names' vocabulary and seeded weights."""
    from microgpt.config import GPTConfig
    from microgpt.data import Tokenizer, read_documents
    from microgpt.params import Params
    from microgpt.scalar_gpt import ScalarGPT

    tokenizer = Tokenizer.from_documents(read_documents(BUNDLED_NAMES))
    params = Params.init(GPTConfig(tokenizer.vocab_size), np.random.default_rng(seed))
    return ScalarGPT(params), tokenizer


def trained_model(run_dir):
    """The ScalarGPT and tokenizer of the checkpoint in a `train` run directory."""
    from microgpt.checkpoint import load_checkpoint
    from microgpt.scalar_gpt import ScalarGPT

    checkpoint = load_checkpoint(run_dir)
    return ScalarGPT(checkpoint.params), checkpoint.tokenizer


def token_loss(model, tokens, pos):
    """The cross-entropy of predicting tokens[pos + 1] from tokens[0..pos], after backward.

    The graph holds the token at `pos` going through every layer, plus the keys and
    values of the earlier positions it attends to.
    """
    from microgpt.scalar_gpt import KVCache

    if not 0 <= pos < len(tokens) - 1:
        raise ValueError(f"pos {pos} is out of range: this document has predictions at 0..{len(tokens) - 2}")
    cache = KVCache(model.config.n_layer)
    for p in range(pos + 1):
        logits = model.forward_token(tokens[p], p, cache)
    with name_scope("loss"):
        loss = model.cross_entropy(logits, tokens[pos + 1])
    loss.backward()
    return loss


def document_loss(model, tokens):
    """The mean cross-entropy over every prediction in one document, after backward."""
    loss = model.loss([tokens])
    loss.backward()
    return loss
