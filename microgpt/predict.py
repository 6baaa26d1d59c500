"""What the model expects next: the probability of every token after a prompt.

The decoder reads BOS (for a model of documents) and the prompt, one token at a time
(filling its KV cache), and its last logits l (V,) give the distribution of the next
token:

    p_i = exp(l_i / T) / Σ_j exp(l_j / T)        T = temperature (1: the model's own)

With `steps > 0` one token is drawn from p, fed back, and the next distribution
read, `steps` times: a sampled name, with what the model believed before each letter.
Any backend's decoder works; the scalar and Numba engines give the same numbers.
"""

from dataclasses import dataclass

import numpy as np

from microgpt.generate import SlidingWindow, check_prompt, default_prompt, next_token_probs, sample_next


@dataclass
class NextToken:
    """The distribution of the token after `context`, and the token drawn from it (if any)."""

    context: str               # the text read so far, after BOS
    probs: np.ndarray          # (V,) probability of each token id coming next; sums to 1
    sampled: int | None = None # the id drawn from probs to continue, None where we stopped

    def ranked(self):
        """Token ids from the most to the least likely (ties in id order)."""
        return np.argsort(-self.probs, kind="stable")


def next_token_distribution(backend, params, tokenizer, prompt=None, steps=0, temperature=1.0, seed=42):
    """[NextToken] after `prompt`, then after each of up to `steps` sampled tokens.

    The prompt defaults to what `sample` starts from (nothing for names, a newline for
    a text). Sampling stops early when BOS is drawn (the name is complete); past the
    context the window slides, as in `generate`. Raises UsageError for a prompt with
    characters outside the vocabulary.
    """
    prompt = default_prompt(tokenizer) if prompt is None else prompt
    check_prompt(tokenizer, prompt)
    rng = np.random.default_rng(seed)
    history = ([tokenizer.bos] if tokenizer.bos is not None else []) + tokenizer.encode(prompt)
    window = SlidingWindow(backend, params, params.config.block_size)
    logits = window.feed(history[-params.config.block_size:])
    found = [NextToken(prompt, next_token_probs(logits, temperature))]
    while len(found) <= steps:
        token = sample_next(logits, rng, temperature)
        found[-1].sampled = token
        if token == tokenizer.bos:
            break
        history.append(token)
        logits = window.step(token, history)
        found.append(NextToken(tokenizer.decode(history), next_token_probs(logits, temperature)))
    return found


def token_name(tokenizer, token_id):
    """How a token is printed: the character itself, '␣' for a space, '⏎' for a newline, BOS for BOS."""
    if token_id == tokenizer.bos:
        return "BOS"
    char = tokenizer.chars[token_id]
    return {" ": "␣", "\n": "⏎", "\t": "⇥"}.get(char, char)


def format_table(predictions, tokenizer, rows=None):
    """Text table: one column per prediction ("after 'em'"), each token with its probability, sorted.

    rank  after 'em'    after 'emm'
       1  m   0.4123    a   0.6130
       2  i   0.1234    ...
    """
    rows = rows or len(predictions[0].probs)
    headers = [f"after {p.context!r}" for p in predictions]
    width = max(12, *(len(h) for h in headers))
    lines = ["rank  " + "  ".join(f"{h:<{width}}" for h in headers).rstrip()]
    ranked = [p.ranked() for p in predictions]
    for r in range(rows):
        cells = [f"{token_name(tokenizer, order[r]):<4}{p.probs[order[r]]:.4f}"
                 for p, order in zip(predictions, ranked)]
        lines.append(f"{r + 1:>4}  " + "  ".join(f"{c:<{width}}" for c in cells).rstrip())
    return "\n".join(lines)
