"""Sampling from a trained model through any backend's KV-cached decoder.

A document model (names) starts from BOS and stops when it emits BOS again. A text
model continues a prompt for as many characters as asked. Either way the model only
ever sees its last block_size tokens: when the context is full, the window slides
(the KV cache is rebuilt from the last block_size - 1 tokens and the newest one is
fed at the last position), which is what nanoGPT does when it crops its context.
"""

import numpy as np

from microgpt.errors import MicrogptError, UsageError


def sample_next(logits, rng, temperature=1.0, top_k=None):
    """Draw a token id from softmax(logits / temperature), keeping only the top_k most likely."""
    logits = np.asarray(logits, dtype=np.float64)
    if not np.isfinite(logits).all():
        raise MicrogptError("the model's predictions are not finite numbers, so there is nothing to sample: "
                            "this checkpoint is broken (its weights grew too large); train again with a lower --lr")
    with np.errstate(over="ignore"):   # a tiny temperature sends the rest to -inf: exactly what it means
        logits = (logits - logits.max()) / temperature  # shift first: it cannot overflow to inf - inf
    if top_k is not None and top_k < logits.size:
        cutoff = np.partition(logits, -top_k)[-top_k]
        logits = np.where(logits >= cutoff, logits, -np.inf)
    probs = np.exp(logits - logits.max())
    probs /= probs.sum()
    return int(rng.choice(probs.size, p=probs))


def generate(backend, params, tokenizer, rng, temperature=0.5, top_k=None, prompt="", max_new_tokens=None):
    """The prompt and what the model writes after it, as text.

    A document model stops at BOS or after max_new_tokens characters (default
    block_size: the longest document it was trained on); a text model writes
    max_new_tokens characters (default 500).
    """
    check_prompt(tokenizer, prompt)
    block_size = params.config.block_size
    if max_new_tokens is None:
        max_new_tokens = block_size if tokenizer.bos is not None else 500
    context = ([tokenizer.bos] if tokenizer.bos is not None else []) + tokenizer.encode(prompt)
    window = SlidingWindow(backend, params, block_size)
    logits = window.feed(context[-block_size:])
    generated = []
    while len(generated) < max_new_tokens:
        token = sample_next(logits, rng, temperature, top_k)
        if token == tokenizer.bos:
            break
        generated.append(token)
        if len(generated) < max_new_tokens:       # the last token needs no logits after it
            logits = window.step(token, context + generated)
    return prompt + tokenizer.decode(generated)


class SlidingWindow:
    """A decoder that never runs out of context: when its block is full it starts again from the tail."""

    def __init__(self, backend, params, block_size):
        self.block_size = block_size
        self.decoder, self.fed = backend.decoder(params), 0

    def feed(self, tokens):
        """Feed tokens in order; return the logits after the last."""
        for token in tokens:
            logits = self.decoder.step(token)
        self.fed += len(tokens)
        return logits

    def step(self, token, history):
        """Logits after `token`, the last of `history` (everything so far), sliding the window if full."""
        if self.fed == self.block_size:
            self.decoder.reset()
            self.fed = 0
            self.feed(history[-self.block_size:-1])
        return self.feed([token])


def check_prompt(tokenizer, prompt):
    """UsageError unless every character of `prompt` is in the vocabulary (and a text model has one)."""
    unknown = tokenizer.unknown(prompt)
    if unknown:
        raise UsageError(f"the prompt has {len(unknown)} character(s) the model never saw: "
                         f"{', '.join(map(repr, unknown))}; its vocabulary is {''.join(tokenizer.chars)!r}")
    if tokenizer.bos is None and not prompt:
        raise UsageError("a model of a text stream continues a prompt: give one with --prompt")


def generate_many(backend, params, tokenizer, num, seed=42, temperature=0.5, top_k=None, prompt="",
                  max_new_tokens=None):
    """`num` samples from one seeded generator: the same seed gives the same text."""
    rng = np.random.default_rng(seed)
    return [generate(backend, params, tokenizer, rng, temperature, top_k, prompt, max_new_tokens)
            for _ in range(num)]


def default_prompt(tokenizer):
    """What a sample starts from when no prompt is given: BOS alone for documents, a newline for text."""
    if tokenizer.bos is not None or "\n" not in tokenizer.stoi:
        return ""
    return "\n"
