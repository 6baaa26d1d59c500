"""What the tests of the configurable GPT share: small configurations with every component
drawn by hypothesis, and parameters moved off their initial values."""

import numpy as np
from hypothesis import strategies as st

from microgpt.config import INITS, MLPS, NORMS, POSITIONS, GPTConfig
from microgpt.params import Params


@st.composite
def component_configs(draw):
    """A small GPTConfig with every component drawn."""
    n_head = draw(st.sampled_from([1, 2]))
    block_size = draw(st.integers(2, 6))
    return GPTConfig(
        vocab_size=draw(st.integers(3, 7)), n_embd=n_head * draw(st.integers(2, 4)), n_head=n_head,
        n_layer=draw(st.integers(1, 2)), block_size=block_size,
        norm=draw(st.sampled_from(NORMS)), norm_weights=draw(st.booleans()),
        embed_norm=draw(st.booleans()), final_norm=draw(st.booleans()),
        mlp=draw(st.sampled_from(MLPS)), mlp_ratio=draw(st.integers(1, 3)),
        pos=draw(st.sampled_from(POSITIONS)), attn_window=draw(st.integers(0, block_size)),
        bias=draw(st.booleans()), tie_weights=draw(st.booleans()),
        dropout=draw(st.sampled_from([0.0, 0.25])), init=draw(st.sampled_from(INITS))).validate()


def perturbed_params(config, seed):
    """Params initialised by their rules, then every entry moved a little, so that gains are not 1
    and biases not 0 (a gain or bias that is never used would then change nothing)."""
    rng = np.random.default_rng(seed)
    params = Params.init(config, rng, std=0.3)
    params.flat += rng.normal(0.0, 0.2, size=params.size)
    return params
