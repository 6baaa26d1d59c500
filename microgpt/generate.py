"""Sampling names from a trained model through any backend's KV-cached decoder."""

import numpy as np

from microgpt.errors import UsageError


def sample_next(logits, rng, temperature=1.0, top_k=None):
    """Draw a token id from softmax(logits / temperature), keeping only the top_k most likely."""
    logits = np.asarray(logits, dtype=np.float64)
    logits = (logits - logits.max()) / temperature  # shift first: a tiny temperature cannot overflow to inf - inf
    if top_k is not None and top_k < logits.size:
        cutoff = np.partition(logits, -top_k)[-top_k]
        logits = np.where(logits >= cutoff, logits, -np.inf)
    probs = np.exp(logits - logits.max())
    probs /= probs.sum()
    return int(rng.choice(probs.size, p=probs))


def generate(backend, params, tokenizer, rng, temperature=0.5, top_k=None, prompt=""):
    """One document: feed BOS and the prompt, then sample until BOS or the context is full."""
    block_size = params.config.block_size
    check_prompt(tokenizer, block_size, prompt)
    decoder = backend.decoder(params)
    tokens = [tokenizer.bos] + tokenizer.encode(prompt)
    for token in tokens:
        logits = decoder.step(token)
    while True:
        token = sample_next(logits, rng, temperature, top_k)
        if token == tokenizer.bos:
            break
        tokens.append(token)
        if len(tokens) > block_size:  # no position left to read it at: the name is as long as it gets
            break
        logits = decoder.step(token)
    return tokenizer.decode(tokens)


def check_prompt(tokenizer, block_size, prompt):
    """UsageError unless every character of `prompt` is in the vocabulary and it leaves room to generate.

    The context holds block_size tokens: BOS, the prompt, and at least one new character.
    """
    unknown = sorted(set(prompt) - set(tokenizer.chars))
    if unknown:
        raise UsageError(f"the prompt has {len(unknown)} character(s) the model never saw: "
                         f"{', '.join(map(repr, unknown))}; its vocabulary is {''.join(tokenizer.chars)!r}")
    if len(prompt) > block_size - 1:
        raise UsageError(f"the prompt is {len(prompt)} characters but the model's context is {block_size} "
                         f"tokens (BOS + at most {block_size - 1} prompt characters); use a shorter prompt")


def generate_many(backend, params, tokenizer, num, seed=42, temperature=0.5, top_k=None, prompt=""):
    """`num` documents from one seeded generator: the same seed gives the same names."""
    rng = np.random.default_rng(seed)
    return [generate(backend, params, tokenizer, rng, temperature, top_k, prompt) for _ in range(num)]
