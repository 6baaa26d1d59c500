"""Record what the model computes in one forward pass, by name and position.

    capture = capture_forward(params, tokens)
    capture.names()                          # "embed.out", "layer0.attn.q", ...
    capture["layer0.attn.q"]                 # (T, C) array: the queries at every position
    capture.attention(layer=0, head=2)       # (T, T) attention weights, NaN above the diagonal
    capture.dead_relus(layer=0)              # MLP units that never fired

Names are the model's name scopes plus what was recorded there
(`ScalarGPT.record`), so they match the clusters of `draw_graph`:

    embed.out                      residual stream after the embedding (and its rmsnorm)  (T, C)
    <scope>.rmsnorm.mean_square    mean(x²) of the rmsnorm input, one per position        (T, 1)
    <scope>.rmsnorm.rstd           1/sqrt(mean(x²) + eps), what x is multiplied by        (T, 1)
    <scope>.rmsnorm.out            the normalised x                                       (T, C)
    layer{i}.attn.q / .k / .v      queries, keys, values                                  (T, C)
    layer{i}.attn.head{h}.scores   q·k for the positions seen so far (.scaled: / √HS)     (T, T)
    layer{i}.attn.head{h}.softmax.*  shift, shifted, exp, total, inv_total: the softmax's pieces
    layer{i}.attn.head{h}.weights  softmax over the positions seen so far                 (T, T)
    layer{i}.attn.heads            the heads' outputs, concatenated, before attn_wo       (T, C)
    layer{i}.attn.proj             attn_wo · heads, the branch added to the stream        (T, C)
    layer{i}.attn.out              residual stream after attention                        (T, C)
    layer{i}.mlp.fc1 / .relu       MLP pre-activations and activations                    (T, 4C)
    layer{i}.mlp.fc2               mlp_fc2 · relu, the branch added to the stream         (T, C)
    layer{i}.mlp.out               residual stream after the MLP                          (T, C)
    lm_head.logits                 the logits for the next token                          (T, V)

where <scope> is embed, layer{i}.attn or layer{i}.mlp. Other components record under
their own names (`scalar_gpt.ROLES` lists them all): layernorm.* and scalenorm.* in
place of rmsnorm.*, norm.affine after a learned gain and bias, .gelu in place of
.relu, and for SwiGLU .gate, .silu and .hidden. With an attention window a query
records the weights of the keys it sees only; `attention()` puts them in place.
Only the numbers (`.data`) are kept, so a capture is small and holds no graph.
"""

from collections import defaultdict

import numpy as np

from microgpt.engine import current_scope


class Capture:
    """The recorded numbers of one forward pass: name -> one row per position."""

    def __init__(self, config, tokens):
        self.config = config            # the GPTConfig of the model that ran
        self.tokens = list(tokens)
        self._rows = defaultdict(list)  # name -> [list of floats per position]

    def record(self, name, values):
        """The recorder `ScalarGPT` calls: keep the data of `values` under scope.name."""
        scope = current_scope()
        self._rows[f"{scope}.{name}" if scope else name].append([v.data for v in values])

    def names(self):
        return list(self._rows)

    def __contains__(self, name):
        return name in self._rows

    def __getitem__(self, name):
        """(T, n) float64 array of `name`; rows of different lengths are padded with NaN."""
        if name not in self._rows:
            raise KeyError(f"nothing recorded as {name!r}; recorded: {', '.join(self._rows)}")
        rows = self._rows[name]
        table = np.full((len(rows), max(map(len, rows))), np.nan)
        for pos, row in enumerate(rows):
            table[pos, :len(row)] = row
        return table

    def attention(self, layer, head):
        """(T, T) weights: row = query position, column = key position; NaN where it cannot look.

        The query at p records weights for the keys it sees, which end at p (and start
        later than 0 with an attention window), so each row is placed to end on the diagonal.
        """
        rows = self._rows[f"layer{layer}.attn.head{head}.weights"]
        table = np.full((len(rows), len(rows)), np.nan)
        for pos, row in enumerate(rows):
            table[pos, pos + 1 - len(row):pos + 1] = row
        return table

    def dead_relus(self, layer):
        """Indices of the MLP units of `layer` whose ReLU was off (input ≤ 0) at every position.

        A dead unit passes no gradient back to mlp_fc1 for this input: while it stays
        off, its weights cannot learn from it.
        """
        return np.flatnonzero((self[f"layer{layer}.mlp.fc1"] <= 0).all(axis=0))

    def relus_off(self, layer):
        """(T,) how many MLP units of `layer` were off (output 0) at each position."""
        return (self[f"layer{layer}.mlp.fc1"] <= 0).sum(axis=1)


def capture_forward(params, tokens):
    """Run the scalar GPT on `tokens` (positions 0, 1, ...) and return the `Capture`."""
    from microgpt.scalar_gpt import KVCache, ScalarGPT

    config = params.config
    if not 1 <= len(tokens) <= config.block_size:
        raise ValueError(f"capture_forward: {len(tokens)} tokens; give 1 to block_size ({config.block_size})")
    model = ScalarGPT(params)
    capture = Capture(config, tokens)
    model.recorder = capture.record
    cache = KVCache(config.n_layer)
    for pos, token_id in enumerate(tokens):
        model.forward_token(token_id, pos, cache)
    return capture
