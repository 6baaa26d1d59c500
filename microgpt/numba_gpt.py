"""The GPT as compiled kernels: batched loss-and-gradients on shards in parallel, and a KV-cached decoder.

The same model as `scalar_gpt`, on arrays (legend in `microgpt.kernels`):

    x = rmsnorm(wte[tokens] + wpe[positions])                     (N, C)
    for each layer:                                               `layer_forward`
        xn = rmsnorm(x);  q, k, v = xn·Wqᵀ, xn·Wkᵀ, xn·Wvᵀ        (N, C) each, as one (N, 3C) product
        x  = x + attention(q, k, v)·Woᵀ                           causal, per sequence
        xn = rmsnorm(x);  x = x + relu(xn·W1ᵀ)·W2ᵀ                hidden (N, H)
    logits = x·lm_headᵀ                                           (N, V)
    loss   = mean cross-entropy of logits against the next tokens

A batch of sequences is *packed*: their input tokens laid end to end, N in all,
with `doc_starts` marking the boundaries and `positions` each token's place in its
sequence. That is the padded-and-masked batch with the padding taken out: the loss
is the mean over real target tokens, and no kernel ever computes on a pad.

Every function below works on a range of rows r0..r1 of the packed batch:
- training splits the batch into *shards* of whole sequences and runs forward and
  backward of each shard on its own thread (`shard_loss_and_grads`, called by
  `NumbaBackend.loss_and_grads`); each shard has its own weight gradients, added in
  a fixed order at the end, so a run is bit-identical from one run to the next;
- the decoder runs the very same forward on one row at a time: step p computes row
  p of every activation, and attention reads the keys and values that the earlier
  steps left in rows 0..p-1 of `qkv`. The activations *are* the KV cache, and the
  layer body (`layer_forward`) is written once for both.

All arrays a step writes live in a `Workspace`, allocated once per model and
dtype, sized for the largest batch seen so far; weights are never copied in
float64: each kernel gets (rows, cols) views of the flat parameter vector.
"""

import itertools
from typing import NamedTuple

import numpy as np
from numba import njit

from microgpt.kernels import (
    adam_update, attention_backward, attention_forward, cross_entropy_backward,
    cross_entropy_forward, embedding_backward, embedding_forward, linear_backward, linear_forward,
    relu_backward, relu_forward, rmsnorm_backward, rmsnorm_forward)
from microgpt.errors import UsageError

DTYPES = {"float64": np.float64, "float32": np.float32}

# A shard of the batch must have at least this many multiply-adds in its matrix products
# (~0.1 ms) to be worth a thread of its own: handing a call to a thread costs ~20-50 µs here.
SHARD_MIN_WORK = 4_000_000
# Vectors shorter than this (Adam's, the gradient's) are updated on one thread: handing
# pieces to other threads costs more than it saves.
THREADED_VECTOR_MIN_SIZE = 1 << 17


# ------------------------------------------------------------------ layout

class Layout(NamedTuple):
    """Where each weight sits in the flat parameter vector (read from `Params`), and the sizes."""
    vocab_size: int          # V
    n_embd: int              # C
    n_head: int              # NH
    n_hidden: int            # H, rows of mlp_fc1
    block_size: int          # T, rows of wpe
    wte: int                 # offset of wte (V, C)
    wpe: int                 # offset of wpe (T, C)
    lm_head: int             # offset of lm_head (V, C)
    attn_wqkv: np.ndarray    # (L,) offset of each layer's attn_wq; attn_wk and attn_wv follow it
    attn_wo: np.ndarray      # (L,) offsets of attn_wo (C, C)
    mlp_fc1: np.ndarray      # (L,) offsets of mlp_fc1 (H, C)
    mlp_fc2: np.ndarray      # (L,) offsets of mlp_fc2 (C, H)


def layout_of(params):
    """The `Layout` of a `Params`: offsets and sizes read from its table of tensors.

    attn_wq, attn_wk and attn_wv must sit one after the other in the flat vector, so
    that together they are one (3C, C) matrix and one product gives q, k and v side
    by side; this is checked, not assumed.
    """
    c, offsets, shapes = params.config, params.offsets, params.shapes
    V, C = shapes["wte"]
    per_layer = {name: np.array([offsets[f"layer{i}.{name}"] for i in range(c.n_layer)], dtype=np.int64)
                 for name in ("attn_wq", "attn_wk", "attn_wv", "attn_wo", "mlp_fc1", "mlp_fc2")}
    if not (np.array_equal(per_layer["attn_wk"], per_layer["attn_wq"] + C * C)
            and np.array_equal(per_layer["attn_wv"], per_layer["attn_wk"] + C * C)):
        raise ValueError("attn_wq, attn_wk and attn_wv are not adjacent in the parameter vector: "
                         "the kernels read them as one (3C, C) matrix")
    return Layout(V, C, c.n_head, shapes["layer0.mlp_fc1"][0] if c.n_layer else 4 * C, shapes["wpe"][0],
                  offsets["wte"], offsets["wpe"], offsets["lm_head"], per_layer["attn_wq"], per_layer["attn_wo"],
                  per_layer["mlp_fc1"], per_layer["mlp_fc2"])


@njit(cache=True)
def matrix(flat, offset, rows, cols):
    """The (rows, cols) view of flat[offset : offset + rows·cols]: no copy."""
    return flat[offset:offset + rows * cols].reshape((rows, cols))


@njit(cache=True)
def embedding_weights(flat, layout):
    """(wte (V, C), wpe (T, C), lm_head (V, C)) as views of a flat vector."""
    C = layout.n_embd
    return (matrix(flat, layout.wte, layout.vocab_size, C), matrix(flat, layout.wpe, layout.block_size, C),
            matrix(flat, layout.lm_head, layout.vocab_size, C))


@njit(cache=True)
def layer_weights(flat, layout, l):
    """(attn_wqkv (3C, C), attn_wo (C, C), mlp_fc1 (H, C), mlp_fc2 (C, H)) of layer l as views."""
    C, H = layout.n_embd, layout.n_hidden
    return (matrix(flat, layout.attn_wqkv[l], 3 * C, C), matrix(flat, layout.attn_wo[l], C, C),
            matrix(flat, layout.mlp_fc1[l], H, C), matrix(flat, layout.mlp_fc2[l], C, H))


# ------------------------------------------------------------------- batch

class Batch(NamedTuple):
    """A packed batch: D sequences' input tokens end to end (N in all), with their targets."""
    tokens: np.ndarray       # (N,) input token ids
    positions: np.ndarray    # (N,) position of each token inside its sequence
    targets: np.ndarray      # (N,) the token that follows each input token
    doc_starts: np.ndarray   # (D+1,) sequence d is rows doc_starts[d] .. doc_starts[d+1]-1
    longest: int             # the most tokens of any one sequence


def pack_batch(batch, block_size):
    """Pack a list of token sequences (lists or 1-D integer arrays, 2..block_size+1 tokens) into a `Batch`."""
    lengths = np.array([len(seq) for seq in batch], dtype=np.int64) - 1      # predictions per sequence
    if not len(batch) or lengths.min() < 1 or lengths.max() > block_size:
        raise ValueError(f"every sequence needs 2 to block_size + 1 = {block_size + 1} tokens, "
                         f"got lengths {[len(seq) for seq in batch]}")
    if all(isinstance(seq, np.ndarray) for seq in batch):      # windows of a token stream: no Python loop
        flat = np.concatenate(batch).astype(np.int64, copy=False)
    else:   # token lists; building three lists in Python cost ~50 µs at batch 32
        flat = np.fromiter(itertools.chain.from_iterable(batch), np.int64, int(lengths.sum()) + len(batch))
    return Batch(*pack_documents(flat, lengths), int(lengths.max()))


@njit(cache=True)
def pack_documents(flat, lengths):
    """(tokens, positions, targets, doc_starts) of sequences laid end to end in `flat`.

    Sequence d is lengths[d] + 1 tokens of flat; it gives lengths[d] (input, target) pairs:
    its tokens but the last as inputs, its tokens but the first as targets.
    """
    N = lengths.sum()
    tokens, positions, targets = np.empty(N, np.int64), np.empty(N, np.int64), np.empty(N, np.int64)
    doc_starts = np.zeros(lengths.shape[0] + 1, np.int64)
    at = 0                                  # where sequence d begins in flat
    for d in range(lengths.shape[0]):
        start = doc_starts[d]
        for p in range(lengths[d]):
            tokens[start + p], targets[start + p] = flat[at + p], flat[at + p + 1]
            positions[start + p] = p
        doc_starts[d + 1] = start + lengths[d]
        at += lengths[d] + 1
    return tokens, positions, targets, doc_starts


def shard_rows(doc_starts, n_shards):
    """(S+1,) row boundaries of n_shards shards of whole sequences with about equal token counts.

    Shard s is rows shard[s] .. shard[s+1]-1. It depends only on the batch and n_shards,
    so a run splits every batch the same way every time.
    """
    N = doc_starts[-1]
    if n_shards == 1:
        return np.array([0, N])
    wanted = np.arange(n_shards + 1) * N / n_shards         # ideal cuts, snapped to sequence starts
    cuts = doc_starts[np.abs(doc_starts[:, None] - wanted[None, :]).argmin(axis=0)]
    return np.unique(cuts)                                  # shards that came out empty are dropped


def matmul_work(layout, n_tokens):
    """Multiply-adds of a forward pass's matrix products over n_tokens tokens (a backward does twice as many)."""
    C, H, L = layout.n_embd, layout.n_hidden, layout.attn_wqkv.shape[0]
    return n_tokens * (L * (4 * C * C + 2 * C * H) + layout.vocab_size * C)


# --------------------------------------------------------------- workspace

class Workspace(NamedTuple):
    """Every array a step writes but the weight gradients, for up to R rows (tokens): views of one buffer.

    The forward's arrays are kept for the backward; those with a leading L hold one
    slab per layer. The backward's arrays hold one layer's gradients, reused layer
    after layer. Each shard of a batch uses its own rows of every array.
    """
    # forward
    x_embd: np.ndarray       # (R, C) wte[tokens] + wpe[positions], before its rmsnorm
    x_in: np.ndarray         # (R, C) its rmsnorm: the residual stream entering layer 0
    rstd0: np.ndarray        # (R,)
    x: np.ndarray            # (R, C) the residual stream, updated in place; at the end the input of lm_head
    branch: np.ndarray       # (R, C) a residual branch's output, before it is added to x
    xn_attn: np.ndarray      # (L, R, C) rmsnorm of the residual stream entering attention
    rstd_attn: np.ndarray    # (L, R)
    qkv: np.ndarray          # (L, R, 3C) queries, keys and values side by side (the decoder's KV cache)
    kt: np.ndarray           # (L, C, R) the keys transposed, for attention's scores
    att: np.ndarray          # (L, R, NH, T) attention weights: att[l, t, h, j] for the j-th key of row t
    heads: np.ndarray        # (L, R, C) attention output, heads side by side, before attn_wo
    xn_mlp: np.ndarray       # (L, R, C) rmsnorm of the residual stream entering the MLP
    rstd_mlp: np.ndarray     # (L, R)
    hidden: np.ndarray       # (L, R, H) mlp_fc1 output, before relu
    hidden_relu: np.ndarray  # (L, R, H)
    logits: np.ndarray       # (R, V)
    probs: np.ndarray        # (R, V) softmax of the logits
    # backward
    dx: np.ndarray           # (R, C) gradient of the residual stream
    dxn: np.ndarray          # (R, C) gradient of an rmsnorm's output
    dqkv: np.ndarray         # (R, 3C)
    vt: np.ndarray           # (C, R) the values transposed, for attention's backward
    datt: np.ndarray         # (R, NH, T) gradient of the attention scores
    dheads: np.ndarray       # (R, C)
    dhidden: np.ndarray      # (R, H)
    dhidden_relu: np.ndarray  # (R, H)
    dlogits: np.ndarray      # (R, V)
    dx_embd: np.ndarray      # (R, C)


class Buffer(NamedTuple):
    """The memory behind a Workspace, as it crosses from Python into compiled code.

    One array rather than a Workspace of 29: every array argument costs ~0.15-0.25 µs to
    pass into a compiled function, so a Workspace would cost ~7 µs a call, a tenth of
    a step at the default config. Inside, `workspace_views` cuts it into the Workspace.
    """
    memory: np.ndarray       # (size,) float64 or float32: the compute dtype
    rows: int                # R


@njit(cache=True)
def cut(memory, at, shape):
    """(the array of `shape` starting at memory[at], the offset after it).

    If memory is too short (when `workspace_views` is only asked for the size), a fresh array.
    """
    size = 1
    for n in shape:
        size *= n
    if at + size <= memory.shape[0]:
        return memory[at:at + size].reshape(shape), at + size
    return np.empty(shape, memory.dtype), at + size


@njit(cache=True)
def workspace_views(buffer, layout):
    """(the Workspace as views of buffer.memory, the size it needs): each array cut in field order."""
    L, C, NH, H, V, T = (layout.attn_wqkv.shape[0], layout.n_embd, layout.n_head, layout.n_hidden,
                         layout.vocab_size, layout.block_size)
    R, memory, at = buffer.rows, buffer.memory, 0
    x_embd, at = cut(memory, at, (R, C))
    x_in, at = cut(memory, at, (R, C))
    rstd0, at = cut(memory, at, (R,))
    x, at = cut(memory, at, (R, C))
    branch, at = cut(memory, at, (R, C))
    xn_attn, at = cut(memory, at, (L, R, C))
    rstd_attn, at = cut(memory, at, (L, R))
    qkv, at = cut(memory, at, (L, R, 3 * C))
    kt, at = cut(memory, at, (L, C, R))
    att, at = cut(memory, at, (L, R, NH, T))
    heads, at = cut(memory, at, (L, R, C))
    xn_mlp, at = cut(memory, at, (L, R, C))
    rstd_mlp, at = cut(memory, at, (L, R))
    hidden, at = cut(memory, at, (L, R, H))
    hidden_relu, at = cut(memory, at, (L, R, H))
    logits, at = cut(memory, at, (R, V))
    probs, at = cut(memory, at, (R, V))
    dx, at = cut(memory, at, (R, C))
    dxn, at = cut(memory, at, (R, C))
    dqkv, at = cut(memory, at, (R, 3 * C))
    vt, at = cut(memory, at, (C, R))
    datt, at = cut(memory, at, (R, NH, T))
    dheads, at = cut(memory, at, (R, C))
    dhidden, at = cut(memory, at, (R, H))
    dhidden_relu, at = cut(memory, at, (R, H))
    dlogits, at = cut(memory, at, (R, V))
    dx_embd, at = cut(memory, at, (R, C))
    return Workspace(x_embd, x_in, rstd0, x, branch, xn_attn, rstd_attn, qkv, kt, att, heads, xn_mlp, rstd_mlp,
                     hidden, hidden_relu, logits, probs, dx, dxn, dqkv, vt, datt, dheads, dhidden, dhidden_relu,
                     dlogits, dx_embd), at


def new_buffer(layout, rows, dtype):
    """A zeroed Buffer for up to `rows` tokens, computing in `dtype`."""
    size = workspace_views(Buffer(np.empty(0, dtype), rows), layout)[1]
    return Buffer(np.zeros(size, dtype), rows)


# ------------------------------------------------------------------ forward

@njit(cache=True)
def add_into(out, x):
    """out += x, elementwise, for (N, C) arrays: a residual connection."""
    for n in range(out.shape[0]):
        for i in range(out.shape[1]):
            out[n, i] += x[n, i]


@njit(cache=True, nogil=True)
def copy_into(out, x):
    """out[...] = x for C-contiguous arrays of one shape, whatever their dtypes (float32 into float64).

    A loop rather than `out[:] = x`: Numba compiles array assignment with a formatted
    shape-mismatch error that costs seconds of compile time per use.
    """
    flat_out, flat_x = out.reshape(-1), x.reshape(-1)
    for i in range(flat_out.shape[0]):
        flat_out[i] = flat_x[i]

@njit(cache=True)
def layer_forward(ws, l, weights, layout, positions, r0, r1):
    """Layer l on rows r0..r1 of the residual stream ws.x, in place:

        x += attention(rmsnorm(x))·Woᵀ;   x += relu(rmsnorm(x)·W1ᵀ)·W2ᵀ

    Row t attends to rows t - positions[t] .. t of ws.qkv[l]. In a packed batch those
    are its own sequence's rows, computed in this same call; in the decoder (one row
    at a time) the earlier rows were left there by earlier calls: the KV cache.
    """
    wqkv, wo, fc1, fc2 = layer_weights(weights, layout, l)
    x, branch = ws.x[r0:r1], ws.branch[r0:r1]
    # attention branch
    xn = ws.xn_attn[l, r0:r1]
    rmsnorm_forward(xn, ws.rstd_attn[l, r0:r1], x)
    linear_forward(ws.qkv[l, r0:r1], xn, wqkv)
    attention_forward(ws.heads[l], ws.att[l], ws.kt[l], ws.qkv[l], positions, r0, r1)
    linear_forward(branch, ws.heads[l, r0:r1], wo)
    add_into(x, branch)
    # MLP branch
    xn = ws.xn_mlp[l, r0:r1]
    rmsnorm_forward(xn, ws.rstd_mlp[l, r0:r1], x)
    linear_forward(ws.hidden[l, r0:r1], xn, fc1)
    relu_forward(ws.hidden_relu[l, r0:r1], ws.hidden[l, r0:r1])
    linear_forward(branch, ws.hidden_relu[l, r0:r1], fc2)
    add_into(x, branch)


@njit(cache=True)
def gpt_forward(ws, weights, layout, tokens, positions, r0, r1):
    """Rows r0..r1 of every activation, up to the logits ws.logits[r0:r1]."""
    wte, wpe, lm_head = embedding_weights(weights, layout)
    embedding_forward(ws.x_embd[r0:r1], tokens[r0:r1], positions[r0:r1], wte, wpe)
    rmsnorm_forward(ws.x_in[r0:r1], ws.rstd0[r0:r1], ws.x_embd[r0:r1])
    copy_into(ws.x[r0:r1], ws.x_in[r0:r1])
    for l in range(layout.attn_wqkv.shape[0]):
        layer_forward(ws, l, weights, layout, positions, r0, r1)
    linear_forward(ws.logits[r0:r1], ws.x[r0:r1], lm_head)


# ----------------------------------------------------------------- backward

@njit(cache=True)
def layer_backward(ws, dweights, l, weights, layout, positions, r0, r1):
    """The backward of layer_forward on rows r0..r1: ws.dx goes from the gradient of the
    stream after layer l to the gradient before it; weight gradients accumulate into dweights.

    Reverse order of the forward; each branch reads dx and adds its own contribution
    back into it (the `+` of the residual connection).
    """
    wqkv, wo, fc1, fc2 = layer_weights(weights, layout, l)
    dwqkv, dwo, dfc1, dfc2 = layer_weights(dweights, layout, l)
    dx, dxn = ws.dx[r0:r1], ws.dxn[r0:r1]
    # MLP branch: x += relu(xn·W1ᵀ)·W2ᵀ
    dhidden_relu, dhidden = ws.dhidden_relu[r0:r1], ws.dhidden[r0:r1]
    dhidden_relu[:] = 0.0
    linear_backward(dhidden_relu, dfc2, dx, ws.hidden_relu[l, r0:r1], fc2)
    dhidden[:] = 0.0
    relu_backward(dhidden, dhidden_relu, ws.hidden[l, r0:r1])
    dxn[:] = 0.0
    linear_backward(dxn, dfc1, dhidden, ws.xn_mlp[l, r0:r1], fc1)
    rmsnorm_backward(dx, dxn, ws.xn_mlp[l, r0:r1], ws.rstd_mlp[l, r0:r1])
    # attention branch: x += attention(q, k, v)·Woᵀ
    dheads = ws.dheads[r0:r1]
    dheads[:] = 0.0
    linear_backward(dheads, dwo, dx, ws.heads[l, r0:r1], wo)
    dqkv = ws.dqkv[r0:r1]
    dqkv[:] = 0.0
    attention_backward(ws.dqkv, ws.datt, ws.vt, ws.dheads, ws.att[l], ws.qkv[l], positions, r0, r1)
    dxn[:] = 0.0
    linear_backward(dxn, dwqkv, dqkv, ws.xn_attn[l, r0:r1], wqkv)
    rmsnorm_backward(dx, dxn, ws.xn_attn[l, r0:r1], ws.rstd_attn[l, r0:r1])


@njit(cache=True)
def gpt_backward(ws, dweights, weights, layout, batch, r0, r1, dloss):
    """Weight gradients of the loss over rows r0..r1 (whole sequences), accumulated into dweights.

    dloss is the gradient of the loss with respect to each token's cross-entropy
    (1/N for the mean over the batch's N tokens). Calls the layers' backwards in
    exactly the reverse order of gpt_forward.
    """
    wte, wpe, lm_head = embedding_weights(weights, layout)
    dwte, dwpe, dlm_head = embedding_weights(dweights, layout)
    dlogits, dx = ws.dlogits[r0:r1], ws.dx[r0:r1]
    dlogits[:] = 0.0
    cross_entropy_backward(dlogits, ws.probs[r0:r1], batch.targets[r0:r1], dloss)
    dx[:] = 0.0
    linear_backward(dx, dlm_head, dlogits, ws.x[r0:r1], lm_head)
    for l in range(layout.attn_wqkv.shape[0] - 1, -1, -1):
        layer_backward(ws, dweights, l, weights, layout, batch.positions, r0, r1)
    dx_embd = ws.dx_embd[r0:r1]
    dx_embd[:] = 0.0
    rmsnorm_backward(dx_embd, dx, ws.x_in[r0:r1], ws.rstd0[r0:r1])
    embedding_backward(dwte, dwpe, dx_embd, batch.tokens[r0:r1], batch.positions[r0:r1])


# ------------------------------------------------------------- entry points
# Called from Python. Sizes and row numbers are always passed in, never written as
# constants: Numba compiles a separate copy of a function for each constant argument.

@njit(cache=True, nogil=True)
def shard_loss_and_grads(dweights, weights, layout, batch, buffer, r0, r1):
    """Forward and backward of the rows r0..r1 (whole sequences) of a packed batch, on one thread.

    Returns the loss summed over those rows; their share of the gradient of the batch's
    mean loss is written to dweights (P,). With r0, r1 = 0, N this is the whole step.
    """
    ws = workspace_views(buffer, layout)[0]
    gpt_forward(ws, weights, layout, batch.tokens, batch.positions, r0, r1)
    total = cross_entropy_forward(ws.probs[r0:r1], ws.logits[r0:r1], batch.targets[r0:r1])
    dweights[:] = 0.0
    gpt_backward(ws, dweights, weights, layout, batch, r0, r1, 1.0 / batch.tokens.shape[0])
    return total


@njit(cache=True, nogil=True)
def add_shards(grads, dweights, n_shards, start, stop):
    """grads[i] = Σ_s dweights[s, i] over the first n_shards shards, in shard order, for i in start..stop.

    grads (P,) float64;  dweights (S, P). A range rather than slices, so that every call
    has the same argument types (NumPy calls a slice of one row contiguous, of two not).
    """
    for i in range(start, stop):
        g = 0.0
        for s in range(n_shards):
            g += dweights[s, i]
        grads[i] = g


@njit(cache=True, nogil=True)
def gpt_loss(weights, layout, batch, buffer):
    """The mean loss of a packed batch (forward only)."""
    ws = workspace_views(buffer, layout)[0]
    r0, r1 = batch.doc_starts[0], batch.doc_starts[-1]      # 0 and N, as values (see above)
    gpt_forward(ws, weights, layout, batch.tokens, batch.positions, r0, r1)
    return cross_entropy_forward(ws.probs[r0:r1], ws.logits[r0:r1], batch.targets) / r1


@njit(cache=True, nogil=True)
def gpt_decode_step(logits, weights, layout, buffer, tokens, positions, pos):
    """Logits (V,) for the token after tokens[pos], from row pos of the forward (rows before it are cached)."""
    ws = workspace_views(buffer, layout)[0]
    gpt_forward(ws, weights, layout, tokens, positions, pos, pos + 1)
    copy_into(logits, ws.logits[pos])


# ------------------------------------------------------------------ backend

class Model:
    """What the backend keeps per model (config), allocated once: its Layout, the Buffer of its
    Workspace, each shard's weight gradients, and the weights in the compute dtype."""

    def __init__(self, params, dtype):
        self.layout = layout_of(params)
        self.dtype = DTYPES[dtype]
        self.buffer = None                                          # allocated for the first batch
        self.dweights = np.zeros((0, params.size), self.dtype)    # (S, P)
        # float64 computes on params.flat itself; float32 on this copy, refreshed every step
        self.weights32 = np.empty(params.size, np.float32) if self.dtype == np.float32 else None

    def buffer_for(self, rows):
        """The Buffer, reallocated if it has fewer rows: at most a few times a run."""
        if self.buffer is None or self.buffer.rows < rows:
            self.buffer = new_buffer(self.layout, rows, self.dtype)
        return self.buffer

    def workspace(self):
        """The Workspace as arrays, to look at from Python (tests, debugging)."""
        return workspace_views(self.buffer, self.layout)[0]

    def dweights_for(self, shards):
        """(shards, P) gradient arrays, one per shard, reallocated if there are fewer."""
        if len(self.dweights) < shards:
            self.dweights = np.zeros((shards, self.dweights.shape[1]), self.dtype)
        return self.dweights



class NumbaBackend:
    """The backend interface (see `microgpt.backend`) on the compiled kernels.

    dtype "float64" (the reference) or "float32": the precision of the forward and
    backward. Params.flat stays the float64 master copy either way: the optimizer
    updates it, checkpoints hold it, and the gradient comes back as float64.
    Threads: see `microgpt.numba_prepare`.
    """

    name = "numba"

    def __init__(self, dtype="float64"):
        if dtype not in DTYPES:
            raise UsageError(f"the Numba backend computes in {' or '.join(DTYPES)}, not {dtype}")
        self.dtype = dtype
        self._workers = None       # the threads it runs on, chosen when first needed
        self.models = {}           # config -> Model

    @property
    def workers(self):
        """The `numba_prepare.Workers` this backend runs on (the first use pins BLAS to one thread)."""
        if self._workers is None:
            from microgpt.numba_prepare import use_threads
            self._workers = use_threads()
        return self._workers

    @workers.setter
    def workers(self, workers):
        self._workers = workers

    def model(self, params):
        model = self.models.get(params.config)
        if model is None:
            model = self.models[params.config] = Model(params, self.dtype)
        return model

    def layout(self, params):
        return self.model(params).layout

    def prepare(self, params, notify, uses=("train", "eval", "sample")):
        """Pin the threads, and load from the disk cache (or compile, after notify(message)) the
        entry points that `uses` of a run of params.config call: "train", "eval", "sample"."""
        from microgpt.numba_prepare import prepare_kernels
        prepare_kernels(self, params, notify, uses)

    def n_shards(self, layout, batch):
        """How many threads to split a packed batch over: as many as there are (and sequences),
        but only as many as get SHARD_MIN_WORK each."""
        return max(1, min(self.workers.count, len(batch.doc_starts) - 1,
                          matmul_work(layout, len(batch.tokens)) // SHARD_MIN_WORK))

    def pieces(self, size):
        """Slices that split a vector of `size` among the threads; one piece if it is too small to share."""
        return self.workers.pieces(size) if size >= THREADED_VECTOR_MIN_SIZE else [slice(0, size)]

    def weights(self, model, params):
        """The weights in the compute dtype: params.flat itself in float64, a fresh float32 copy otherwise."""
        if model.weights32 is None:
            return params.flat
        self.workers.run([(copy_into, (model.weights32[p], params.flat[p])) for p in self.pieces(params.size)])
        return model.weights32

    def loss(self, params, batch):
        model = self.model(params)
        packed = pack_batch(batch, params.config.block_size)
        buffer = model.buffer_for(len(packed.tokens))
        return gpt_loss(self.weights(model, params), model.layout, packed, buffer)

    def loss_and_grads(self, params, batch, n_shards=None):
        """The loss and its float64 gradient. The batch is split into n_shards shards of whole
        sequences that run side by side, one thread each (None: as `n_shards` chooses).

        Shard s writes its gradients to dweights[s]; they are then added into grads in shard
        order (pieces of the vector on each thread), as are the losses: the result depends on
        the shards, never on which thread finished first.
        """
        model = self.model(params)
        packed = pack_batch(batch, params.config.block_size)
        N, grads = len(packed.tokens), np.empty(params.size)
        weights, buffer = self.weights(model, params), model.buffer_for(N)
        n_shards = self.n_shards(model.layout, packed) if n_shards is None else n_shards
        if n_shards == 1 and model.dtype == np.float64:     # the one shard writes straight into grads
            return shard_loss_and_grads(grads, weights, model.layout, packed, buffer, 0, N) / N, grads
        rows, dweights = shard_rows(packed.doc_starts, n_shards), model.dweights_for(n_shards)
        totals = self.workers.run([(shard_loss_and_grads, (dweights[s], weights, model.layout, packed, buffer,
                                                           rows[s], rows[s + 1])) for s in range(len(rows) - 1)])
        self.workers.run([(add_shards, (grads, dweights, len(rows) - 1, p.start, p.stop))
                          for p in self.pieces(params.size)])
        return sum(totals) / N, grads

    def step_optimizer(self, optimizer, theta, grads, lr):
        """optimizer.step(theta, grads, lr), with the AdamW update as one compiled pass.

        The same arithmetic in the same order as `optim.Adam.step`, so the same bits;
        NumPy's version makes ~14 passes over the vector, which at the default config
        cost about as much as the whole backward. Large vectors are updated in pieces
        on several threads (the same bits again: each entry's arithmetic is unchanged).
        """
        optimizer.t += 1
        settings = (lr, 1.0 - lr * optimizer.weight_decay, optimizer.beta1, optimizer.beta2,
                    *optimizer.corrections(), optimizer.eps)
        o = optimizer
        return all(self.workers.run([(adam_update, (theta[p], o.m[p], o.v[p], grads[p], o.decay_mask[p], *settings))
                                     for p in self.pieces(theta.size)]))

    def decoder(self, params):
        return NumbaDecoder(params, self.dtype)


def flat_loss(params, batch, dtype="float64"):
    """loss(flat): the mean loss of `batch` for weights `flat` laid out like params.flat (for finite differences)."""
    model, packed = Model(params, dtype), pack_batch(batch, params.config.block_size)
    buffer = model.buffer_for(len(packed.tokens))
    return lambda flat: gpt_loss(flat.astype(model.dtype, copy=False), model.layout, packed, buffer)


class NumbaDecoder:
    """Feeds one token at a time through the compiled model; the activations of earlier rows are the KV cache."""

    def __init__(self, params, dtype="float64"):
        self.layout = layout_of(params)
        self.block_size = params.config.block_size
        self.buffer = new_buffer(self.layout, self.block_size, DTYPES[dtype])
        # a snapshot of the weights, in the compute dtype: later training does not change this sequence
        self.weights = params.flat.astype(DTYPES[dtype])
        self.tokens = np.zeros(self.block_size, np.int64)
        self.positions = np.arange(self.block_size, dtype=np.int64)
        self.pos = 0

    def reset(self):
        """Forget every position: the next step is position 0 again (its rows are overwritten as it goes)."""
        self.pos = 0

    def step(self, token_id):
        """Logits (V,) as a float64 array for the token after `token_id`."""
        if self.pos >= self.block_size:
            raise IndexError(f"the context is full (block_size {self.block_size})")
        self.tokens[self.pos] = token_id
        logits = np.empty(self.layout.vocab_size)
        gpt_decode_step(logits, self.weights, self.layout, self.buffer, self.tokens, self.positions, self.pos)
        self.pos += 1
        return logits
