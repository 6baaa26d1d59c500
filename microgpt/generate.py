"""Sampling names from a trained model through any backend's KV-cached decoder."""

import numpy as np


def sample_next(logits, rng, temperature=1.0, top_k=None):
    """Draw a token id from softmax(logits / temperature), keeping only the top_k most likely."""
    logits = np.asarray(logits, dtype=np.float64) / temperature
    if top_k is not None and top_k < logits.size:
        cutoff = np.partition(logits, -top_k)[-top_k]
        logits = np.where(logits >= cutoff, logits, -np.inf)
    probs = np.exp(logits - logits.max())
    probs /= probs.sum()
    return int(rng.choice(probs.size, p=probs))


def generate(backend, params, tokenizer, rng, temperature=0.5, top_k=None, prompt=""):
    """One document: feed BOS (and the prompt), then sample until BOS or the context is full."""
    decoder = backend.decoder(params)
    block_size = params.config.block_size
    tokens = [tokenizer.bos] + tokenizer.encode(prompt)
    logits = None
    for token in tokens[:block_size]:
        logits = decoder.step(token)
    while len(tokens) <= block_size:
        token = sample_next(logits, rng, temperature, top_k)
        if token == tokenizer.bos:
            break
        tokens.append(token)
        if len(tokens) > block_size:
            break
        logits = decoder.step(token)
    return tokenizer.decode(tokens)


def generate_many(backend, params, tokenizer, num, seed=42, temperature=0.5, top_k=None, prompt=""):
    """`num` documents from one seeded generator: the same seed gives the same names."""
    rng = np.random.default_rng(seed)
    return [generate(backend, params, tokenizer, rng, temperature, top_k, prompt) for _ in range(num)]
