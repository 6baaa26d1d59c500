"""Things worth drawing, each a `Value` with its gradients filled in by `backward()`.

    expression()                         L = (a·b + c)·f, the micrograd warm-up
    neuron()                             tanh(w1·x1 + w2·x2 + b)
    token_loss(model, tokens, pos)       the loss of one prediction of the GPT
    document_loss(model, tokens)         the mean loss over a whole document

`fresh_model()` and `trained_model(run_dir)` give the (model, tokenizer) pair the
last two need. Their model labels the values it computes by their role ("q·k",
"1/√head_dim", "Σ exp (normaliser)", ...; see `scalar_gpt.ROLES`), which a model
built for training never does. `tensor_info(model, tokenizer)` describes the
parameter tables for `draw_graph(tensors=...)`.
"""

import os

import numpy as np

from microgpt.engine import Value, creation_mark, name_scope

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

    tokenizer = Tokenizer.from_documents(read_documents(BUNDLED_NAMES))
    params = Params.init(GPTConfig(tokenizer.vocab_size), np.random.default_rng(seed))
    return labelled_model(params), tokenizer


def trained_model(run_dir):
    """The ScalarGPT and tokenizer of the checkpoint in a `train` run directory."""
    from microgpt.checkpoint import load_checkpoint

    checkpoint = load_checkpoint(run_dir)
    return labelled_model(checkpoint.params), checkpoint.tokenizer


def labelled_model(params):
    """A ScalarGPT whose recorder labels every value it records by its role (`label_by_role`)."""
    from microgpt.scalar_gpt import ScalarGPT

    model = ScalarGPT(params)
    model.recorder = label_by_role
    return model


def label_by_role(name, values):
    """A recorder for ScalarGPT: give each unlabelled value the role of `name` ("scores" -> "q·k")."""
    from microgpt.scalar_gpt import ROLES

    role = ROLES.get(name, name)
    for value in values:
        if not value.label:
            value.label = role


def tensor_info(model, tokenizer):
    """{tensor: (shape, row names or None)} for `draw_graph(tensors=...)`: token tables name rows by token."""
    tokens = [tokenizer.decode([i]) or "BOS" for i in range(tokenizer.vocab_size)]
    return {name: ((len(rows), len(rows[0])), tokens if name in ("wte", "lm_head") else None)
            for name, rows in model.w.items()}


def position_losses(model, tokens, count, marks=None):
    """The losses of predictions 0..count-1 of a document, each [tokens[p] -> tokens[p + 1]].

    If `marks` is a list, the creation mark where each position begins is appended
    to it, so that a drawing can page the graph by position (`graph.draw_pages`).
    """
    from microgpt.scalar_gpt import KVCache

    cache = KVCache(model.config.n_layer)
    losses = []
    for pos in range(count):
        if marks is not None:
            marks.append(creation_mark())
        logits = model.forward_token(tokens[pos], pos, cache)
        with name_scope("loss"):
            losses.append(model.cross_entropy(logits, tokens[pos + 1]))
    return losses


def token_loss(model, tokens, pos, marks=None):
    """The cross-entropy of predicting tokens[pos + 1] from tokens[0..pos], after backward.

    The graph holds the token at `pos` going through every layer, plus the keys and
    values of the earlier positions it attends to.
    """
    if not 0 <= pos < len(tokens) - 1:
        raise ValueError(f"pos {pos} is out of range: this document has predictions at 0..{len(tokens) - 2}")
    loss = position_losses(model, tokens, pos + 1, marks)[pos]
    loss.backward()
    return loss


def document_loss(model, tokens, marks=None):
    """The mean cross-entropy over every prediction in one document, after backward."""
    losses = position_losses(model, tokens, len(tokens) - 1, marks)
    with name_scope("loss"):
        loss = Value.sum(losses) * (1.0 / len(losses))
        model.record("loss.mean", [loss])
    loss.backward()
    return loss
