"""The GPT as compiled kernels: batched loss-and-gradients, and a KV-cached decoder.

The same model as `scalar_gpt`, on arrays (legend in `microgpt.kernels`):

    x = rmsnorm(wte[tokens] + wpe[positions])                     (N, C)
    for each layer:
        xn = rmsnorm(x);  q, k, v = xn·Wqᵀ, xn·Wkᵀ, xn·Wvᵀ        (N, C) each, as one (N, 3C) product
        x  = x + attention(q, k, v)·Woᵀ                           causal, per document
        xn = rmsnorm(x);  x = x + relu(xn·W1ᵀ)·W2ᵀ                hidden (N, 4C)
    logits = x·lm_headᵀ                                           (N, V)
    loss   = mean cross-entropy of logits against the next tokens

A batch of documents is *packed*: their input tokens laid end to end, N in all,
with `doc_starts` marking the boundaries. That is the padded-and-masked batch
with the padding taken out: the loss is the mean over real target tokens, and
no kernel ever computes on a pad.

One Python call runs a whole step (`gpt_loss_and_grads`), because at microgpt
sizes the cost of calling a kernel is larger than its arithmetic. The weights are
never copied: each kernel gets (rows, cols) views of the flat parameter vector,
and the gradients land directly in a flat vector laid out the same way.
"""

import itertools
from typing import NamedTuple

import numpy as np
from numba import njit

from microgpt.kernels import (
    adam_update, attend, attention_backward, attention_forward, cross_entropy_backward, cross_entropy_forward,
    embedding_backward, embedding_forward, linear_backward, linear_forward, relu_backward,
    relu_forward, rmsnorm_backward, rmsnorm_forward)
from microgpt.errors import UsageError


class Layout(NamedTuple):
    """Where each weight sits in the flat parameter vector, and the sizes of the model."""
    vocab_size: int   # V
    n_embd: int       # C
    n_head: int       # NH
    n_layer: int      # L
    block_size: int
    wte: int          # offset of wte (V, C)
    wpe: int          # offset of wpe (block_size, C)
    layer0: int       # offset of layer0.attn_wq; layer i starts at layer0 + i·layer_size
    layer_size: int   # 12·C² numbers: wq, wk, wv, wo (C, C), mlp_fc1 (4C, C), mlp_fc2 (C, 4C)
    lm_head: int      # offset of lm_head (V, C)


LAYER_WEIGHTS = ("attn_wq", "attn_wk", "attn_wv", "attn_wo", "mlp_fc1", "mlp_fc2")


def layout_of(params):
    """The `Layout` of a `Params`, checked against its offsets (the kernels rely on them)."""
    c = params.config
    C = c.n_embd
    layer_size = 12 * C * C
    layout = Layout(c.vocab_size, C, c.n_head, c.n_layer, c.block_size, params.offsets["wte"],
                    params.offsets["wpe"], params.offsets["layer0.attn_wq"], layer_size,
                    params.offsets["lm_head"])
    for i in range(c.n_layer):
        offset = layout.layer0 + i * layer_size
        for name, size in zip(LAYER_WEIGHTS, (C * C,) * 4 + (4 * C * C,) * 2):
            if params.offsets[f"layer{i}.{name}"] != offset:
                raise ValueError(f"layer{i}.{name} is not where the kernels expect it: the parameter layout changed")
            offset += size
    return layout


class Batch(NamedTuple):
    """A packed batch: D documents' input tokens end to end (N in all), with their targets."""
    tokens: np.ndarray       # (N,) input token ids
    positions: np.ndarray    # (N,) position of each token inside its document
    targets: np.ndarray      # (N,) the token that follows each input token
    doc_starts: np.ndarray   # (D+1,) document d is rows doc_starts[d] .. doc_starts[d+1]-1
    longest: int             # T, the most tokens of any one document


def pack_batch(batch, block_size):
    """Pack a list of documents (token lists, [BOS] + chars + [BOS]) into a `Batch`."""
    lengths = [len(doc) - 1 for doc in batch]          # predictions per document
    if not batch or min(lengths) < 1 or max(lengths) > block_size:
        raise ValueError(f"every document needs 2 to block_size + 1 = {block_size + 1} tokens, "
                         f"got lengths {[len(doc) for doc in batch]}")
    # One flat array of every token, split by a kernel: building the three lists in Python
    # cost ~50 µs at batch 32, as much as a tenth of the step.
    flat = np.fromiter(itertools.chain.from_iterable(batch), np.int64, sum(lengths) + len(batch))
    return Batch(*pack_documents(flat, np.array(lengths, dtype=np.int64)), max(lengths))


@njit(cache=True)
def pack_documents(flat, lengths):
    """(tokens, positions, targets, doc_starts) of documents laid end to end in `flat`.

    Document d is lengths[d] + 1 tokens of flat; it gives lengths[d] (input, target) pairs:
    its tokens but the last as inputs, its tokens but the first as targets.
    """
    N = lengths.sum()
    tokens, positions, targets = np.empty(N, np.int64), np.empty(N, np.int64), np.empty(N, np.int64)
    doc_starts = np.zeros(lengths.shape[0] + 1, np.int64)
    at = 0                                  # where document d begins in flat
    for d in range(lengths.shape[0]):
        start = doc_starts[d]
        for p in range(lengths[d]):
            tokens[start + p], targets[start + p] = flat[at + p], flat[at + p + 1]
            positions[start + p] = p
        doc_starts[d + 1] = start + lengths[d]
        at += lengths[d] + 1
    return tokens, positions, targets, doc_starts


class Activations(NamedTuple):
    """What the forward pass keeps for the backward pass. L = n_layer; one slab per layer."""
    x_embd: np.ndarray   # (N, C) wte[tokens] + wpe[positions], before its rmsnorm
    x_in: np.ndarray     # (N, C) its rmsnorm: the residual stream entering layer 0
    rstd0: np.ndarray    # (N,)
    xn_attn: np.ndarray  # (L, N, C) rmsnorm of the residual stream entering attention
    rstd_attn: np.ndarray  # (L, N)
    qkv: np.ndarray      # (L, N, 3C) queries, keys and values side by side
    att: np.ndarray      # (L, NH, N, T) attention weights
    heads: np.ndarray    # (L, N, C) attention output, heads side by side, before attn_wo
    xn_mlp: np.ndarray   # (L, N, C) rmsnorm of the residual stream entering the MLP
    rstd_mlp: np.ndarray  # (L, N)
    hidden: np.ndarray   # (L, N, 4C) mlp_fc1 output, before relu
    hidden_relu: np.ndarray  # (L, N, 4C)
    x: np.ndarray        # (N, C) the final residual stream, input of lm_head
    logits: np.ndarray   # (N, V)
    probs: np.ndarray    # (N, V) softmax of the logits


# ------------------------------------------------------------ weight views

@njit(cache=True)
def matrix(flat, offset, rows, cols):
    """The (rows, cols) view of flat[offset : offset + rows·cols]: no copy."""
    return flat[offset:offset + rows * cols].reshape((rows, cols))


@njit(cache=True)
def embedding_weights(flat, layout):
    """(wte (V, C), wpe (block_size, C), lm_head (V, C)) as views of a flat vector."""
    C = layout.n_embd
    return (matrix(flat, layout.wte, layout.vocab_size, C),
            matrix(flat, layout.wpe, layout.block_size, C),
            matrix(flat, layout.lm_head, layout.vocab_size, C))


@njit(cache=True)
def layer_weights(flat, layout, layer):
    """(attn_wqkv (3C, C), attn_wo, mlp_fc1, mlp_fc2) of one layer as views of a flat vector.

    attn_wq, attn_wk and attn_wv sit one after the other in the flat vector, so
    together they are one (3C, C) matrix: one product gives q, k and v side by side.
    """
    C = layout.n_embd
    at = layout.layer0 + layer * layout.layer_size
    return (matrix(flat, at, 3 * C, C), matrix(flat, at + 3 * C * C, C, C),
            matrix(flat, at + 4 * C * C, 4 * C, C), matrix(flat, at + 8 * C * C, C, 4 * C))


@njit(cache=True)
def split_qkv(qkv, C):
    """The q, k, v column blocks (N, C) of a (N, 3C) array (views, not copies)."""
    return qkv[:, :C], qkv[:, C:2 * C], qkv[:, 2 * C:]


# ---------------------------------------------------------- forward, backward

@njit(cache=True)
def new_activations(layout, N, T):
    """Uninitialised Activations for N tokens, documents of at most T (fields in declaration order)."""
    L, C, NH, V = layout.n_layer, layout.n_embd, layout.n_head, layout.vocab_size
    return Activations(
        np.empty((N, C)), np.empty((N, C)), np.empty(N), np.empty((L, N, C)), np.empty((L, N)),
        np.empty((L, N, 3 * C)), np.zeros((L, NH, N, T)),
        np.empty((L, N, C)), np.empty((L, N, C)), np.empty((L, N)),
        np.empty((L, N, 4 * C)), np.empty((L, N, 4 * C)), np.empty((N, C)), np.empty((N, V)), np.empty((N, V)))


@njit(cache=True)
def gpt_forward(flat, layout, batch):
    """The mean loss of a packed batch, and the Activations its backward needs."""
    N, C = batch.tokens.shape[0], layout.n_embd
    acts = new_activations(layout, N, batch.longest)
    wte, wpe, lm_head = embedding_weights(flat, layout)
    embedding_forward(acts.x_embd, batch.tokens, batch.positions, wte, wpe)
    rmsnorm_forward(acts.x_in, acts.rstd0, acts.x_embd)
    x = acts.x                                  # the residual stream, updated in place
    x[:] = acts.x_in
    branch = np.empty((N, C))                   # a residual branch's output, before it is added
    for l in range(layout.n_layer):
        wqkv, wo, fc1, fc2 = layer_weights(flat, layout, l)
        rmsnorm_forward(acts.xn_attn[l], acts.rstd_attn[l], x)
        linear_forward(acts.qkv[l], acts.xn_attn[l], wqkv)
        q, k, v = split_qkv(acts.qkv[l], C)
        attention_forward(acts.heads[l], acts.att[l], q, k, v, batch.doc_starts)
        linear_forward(branch, acts.heads[l], wo)
        x += branch
        rmsnorm_forward(acts.xn_mlp[l], acts.rstd_mlp[l], x)
        linear_forward(acts.hidden[l], acts.xn_mlp[l], fc1)
        relu_forward(acts.hidden_relu[l], acts.hidden[l])
        linear_forward(branch, acts.hidden_relu[l], fc2)
        x += branch
    linear_forward(acts.logits, x, lm_head)
    loss = cross_entropy_forward(acts.probs, acts.logits, batch.targets)
    return loss, acts


@njit(cache=True)
def gpt_backward(grads, flat, layout, batch, acts):
    """Accumulate d(loss)/d(weights) into `grads` (flat, laid out like `flat`).

    Calls the layers' backwards in exactly the reverse order of gpt_forward.
    `dx` is the gradient of the residual stream: each branch reads it, and adds
    its own contribution back into it (the `+` of the residual connection).
    """
    N, C, V = batch.tokens.shape[0], layout.n_embd, layout.vocab_size
    wte, wpe, lm_head = embedding_weights(flat, layout)
    dwte, dwpe, dlm_head = embedding_weights(grads, layout)
    dlogits = np.zeros((N, V))
    cross_entropy_backward(dlogits, acts.probs, batch.targets)
    dx = np.zeros((N, C))
    linear_backward(dx, dlm_head, dlogits, acts.x, lm_head)
    for l in range(layout.n_layer - 1, -1, -1):
        wqkv, wo, fc1, fc2 = layer_weights(flat, layout, l)
        dwqkv, dwo, dfc1, dfc2 = layer_weights(grads, layout, l)
        # MLP branch: x += relu(xn·W1ᵀ)·W2ᵀ
        dhidden_relu, dhidden = np.zeros((N, 4 * C)), np.zeros((N, 4 * C))
        linear_backward(dhidden_relu, dfc2, dx, acts.hidden_relu[l], fc2)
        relu_backward(dhidden, dhidden_relu, acts.hidden[l])
        dxn = np.zeros((N, C))
        linear_backward(dxn, dfc1, dhidden, acts.xn_mlp[l], fc1)
        rmsnorm_backward(dx, dxn, acts.xn_mlp[l], acts.rstd_mlp[l])
        # attention branch: x += attention(q, k, v)·Woᵀ
        dheads = np.zeros((N, C))
        linear_backward(dheads, dwo, dx, acts.heads[l], wo)
        dqkv = np.zeros((N, 3 * C))
        dq, dk, dv = split_qkv(dqkv, C)
        q, k, v = split_qkv(acts.qkv[l], C)
        attention_backward(dq, dk, dv, dheads, acts.att[l], q, k, v, batch.doc_starts)
        dxn[:] = 0.0
        linear_backward(dxn, dwqkv, dqkv, acts.xn_attn[l], wqkv)
        rmsnorm_backward(dx, dxn, acts.xn_attn[l], acts.rstd_attn[l])
    dx_embd = np.zeros((N, C))
    rmsnorm_backward(dx_embd, dx, acts.x_in, acts.rstd0)
    embedding_backward(dwte, dwpe, dx_embd, batch.tokens, batch.positions)


@njit(cache=True)
def gpt_loss(flat, layout, batch):
    """The mean loss of a packed batch (forward only)."""
    return gpt_forward(flat, layout, batch)[0]


@njit(cache=True)
def gpt_loss_and_grads(grads, flat, layout, batch):
    """Forward and backward in one call: returns the loss, accumulates the gradients into `grads`."""
    loss, acts = gpt_forward(flat, layout, batch)
    gpt_backward(grads, flat, layout, batch, acts)
    return loss


# ----------------------------------------------------------------- decoding

@njit(cache=True)
def gpt_decode_step(logits, keys, values, flat, layout, token, pos):
    """Logits (V,) for the token after `token` at position `pos`, attending over the KV cache.

    keys, values (L, block_size, C): rows 0..pos-1 hold the earlier positions;
    this call writes row pos. The same kernels as gpt_forward, on one row (N = 1).
    """
    C, NH = layout.n_embd, layout.n_head
    wte, wpe, lm_head = embedding_weights(flat, layout)
    x_embd, x, xn = np.empty((1, C)), np.empty((1, C)), np.empty((1, C))
    qkv, heads, branch = np.empty((1, 3 * C)), np.empty((1, C)), np.empty((1, C))
    hidden, hidden_relu = np.empty((1, 4 * C)), np.empty((1, 4 * C))
    rstd, att = np.empty(1), np.empty((NH, 1, pos + 1))
    embedding_forward(x_embd, np.array([token]), np.array([pos]), wte, wpe)
    rmsnorm_forward(x, rstd, x_embd)
    for l in range(layout.n_layer):
        wqkv, wo, fc1, fc2 = layer_weights(flat, layout, l)
        rmsnorm_forward(xn, rstd, x)
        linear_forward(qkv, xn, wqkv)
        q, k, v = split_qkv(qkv, C)
        keys[l, pos] = k[0]
        values[l, pos] = v[0]
        attend(heads, att, q, keys[l], values[l], 0, 0, pos + 1)
        linear_forward(branch, heads, wo)
        x += branch
        rmsnorm_forward(xn, rstd, x)
        linear_forward(hidden, xn, fc1)
        relu_forward(hidden_relu, hidden)
        linear_forward(branch, hidden_relu, fc2)
        x += branch
    linear_forward(logits.reshape((1, layout.vocab_size)), x, lm_head)


# ------------------------------------------------------------------ backend

class NumbaBackend:
    """The backend interface (see `microgpt.backend`) on the compiled kernels."""

    name = "numba"

    def __init__(self, dtype="float64"):
        if dtype != "float64":
            raise UsageError(f"the Numba backend does not compute in {dtype} yet; use float64")
        self.dtype = dtype
        self.layouts = {}     # config -> Layout: computing one costs more than a small step

    def layout(self, params):
        return self.layouts.get(params.config) or self.layouts.setdefault(params.config, layout_of(params))

    def prepare(self, params, notify):
        """Compile (or load from the disk cache) the kernels a run of params.config uses."""

    def loss(self, params, batch):
        return gpt_loss(params.flat, self.layout(params), pack_batch(batch, params.config.block_size))

    def loss_and_grads(self, params, batch):
        grads = np.zeros(params.size)
        packed = pack_batch(batch, params.config.block_size)
        loss = gpt_loss_and_grads(grads, params.flat, self.layout(params), packed)
        return loss, grads

    def step_optimizer(self, optimizer, theta, grads, lr):
        """optimizer.step(theta, grads, lr), with the AdamW update as one compiled pass.

        The same arithmetic in the same order as `optim.Adam.step`, so the same bits;
        NumPy's version makes ~14 passes over the vector, which at the default config
        cost about as much as the whole backward.
        """
        optimizer.t += 1
        correction1, correction2 = optimizer.corrections()
        return adam_update(theta, optimizer.m, optimizer.v, grads, optimizer.decay_mask, lr,
                           1.0 - lr * optimizer.weight_decay, optimizer.beta1, optimizer.beta2,
                           correction1, correction2, optimizer.eps)

    def decoder(self, params):
        return NumbaDecoder(params)


class NumbaDecoder:
    """Feeds one token at a time through the compiled model, keeping the KV cache."""

    def __init__(self, params):
        self.flat = params.flat.copy()      # a snapshot: later training does not change this sequence
        self.layout = layout_of(params)
        c = params.config
        self.keys = np.zeros((c.n_layer, c.block_size, c.n_embd))
        self.values = np.zeros((c.n_layer, c.block_size, c.n_embd))
        self.pos = 0

    def reset(self):
        """Forget every position: the next step is position 0 again (rows are overwritten as it goes)."""
        self.pos = 0

    def step(self, token_id):
        """Logits (V,) as a float64 array for the token after `token_id`."""
        if self.pos >= self.layout.block_size:
            raise IndexError(f"the context is full (block_size {self.layout.block_size})")
        logits = np.empty(self.layout.vocab_size)
        gpt_decode_step(logits, self.keys, self.values, self.flat, self.layout, int(token_id), self.pos)
        self.pos += 1
        return logits
