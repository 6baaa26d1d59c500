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

The kernels are compiled (`microgpt.kernels`); the model that strings them together
is plain Python, a dozen calls per layer. Compiling that glue too would save a few
microseconds of calls per step, but it cost three quarters of the first run's
compile time, and it would have to be compiled for every combination of layers.

Every function below works on a range of rows r0..r1 of the packed batch:
- training splits the batch into *shards* of whole sequences and runs forward and
  backward of each shard on its own thread (`shard_loss_and_grads`, called by
  `NumbaBackend.loss_and_grads`); the kernels release Python's GIL, so the shards
  really run side by side. Each shard has its own weight gradients, added in a
  fixed order at the end, so a run is bit-identical from one run to the next;
- the decoder runs the very same forward on one row at a time: step p computes row
  p of every activation, and attention reads the keys and values that the earlier
  steps left in rows 0..p-1 of `qkv`. The activations *are* the KV cache, and the
  layer body (`layer_forward`) is written once for both.

All arrays a step writes live in a `Workspace`, allocated once per model and
dtype, sized for the largest batch seen so far; weights are never copied in
float64: each kernel gets (rows, cols) views of the flat parameter vector.
"""

import itertools
import math
from typing import NamedTuple

import numpy as np
from numba import njit

from microgpt.kernels import (
    NO_MASK, adam_update, attention_backward, attention_forward, cross_entropy_backward,
    cross_entropy_forward, embedding_backward, embedding_forward, linear_backward, linear_forward,
    relu_backward, relu_forward, rmsnorm_backward, rmsnorm_forward)
from microgpt.config import GPTConfig
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


# The components the kernels implement only at their default (microgpt's) choice.
# (mlp_ratio and init are read from the parameters' shapes and values, so any works.)
UNSUPPORTED_COMPONENTS = ("norm", "norm_weights", "embed_norm", "final_norm", "mlp", "pos",
                          "attn_window", "bias", "tie_weights")


def refuse_unsupported(config, training=False):
    """Raise UsageError, naming the first component of `config` the kernels do not implement.

    Dropout matters only to training (`training=True`): evaluation and sampling never drop.
    """
    default = GPTConfig(config.vocab_size)
    fields = UNSUPPORTED_COMPONENTS + (("dropout",) if training else ())
    for field in fields:
        value = getattr(config, field)
        if value != getattr(default, field):
            raise UsageError(f"the numba backend does not implement {field} = {value!r} yet; "
                             f"use --backend scalar, which supports it")


def layout_of(params):
    """The `Layout` of a `Params`: offsets and sizes read from its table of tensors.

    attn_wq, attn_wk and attn_wv must sit one after the other in the flat vector, so
    that together they are one (3C, C) matrix and one product gives q, k and v side
    by side; this is checked, not assumed.
    """
    c, offsets, shapes = params.config, params.offsets, params.shapes
    refuse_unsupported(c)
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


class Weights(NamedTuple):
    """Views of a flat vector laid out like Params.flat (the weights, or gradients alike)."""
    wte: np.ndarray          # (V, C)
    wpe: np.ndarray          # (T, C)
    lm_head: np.ndarray      # (V, C)
    layers: list             # per layer: (attn_wqkv (3C, C), attn_wo (C, C), mlp_fc1 (H, C), mlp_fc2 (C, H))


def weights_of(flat, layout):
    """The `Weights` views of `flat`: no copy, so writing through them writes the vector."""
    C, H = layout.n_embd, layout.n_hidden

    def matrix(offset, rows, cols):
        return flat[offset:offset + rows * cols].reshape(rows, cols)
    layers = [(matrix(qkv, 3 * C, C), matrix(wo, C, C), matrix(fc1, H, C), matrix(fc2, C, H))
              for qkv, wo, fc1, fc2 in zip(layout.attn_wqkv, layout.attn_wo, layout.mlp_fc1, layout.mlp_fc2)]
    return Weights(matrix(layout.wte, layout.vocab_size, C), matrix(layout.wpe, layout.block_size, C),
                   matrix(layout.lm_head, layout.vocab_size, C), layers)


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

class Workspace:
    """Every array a step writes but the weight gradients, for up to `rows` tokens: views of one buffer.

    The forward's arrays are kept for the backward; those with a leading L hold one
    slab per layer. The backward's arrays hold one layer's gradients, reused layer
    after layer. Each shard of a batch uses its own rows of every array.
    """

    def __init__(self, layout, rows, dtype):
        L, C, NH, H, V, T, R = (len(layout.attn_wqkv), layout.n_embd, layout.n_head, layout.n_hidden,
                                layout.vocab_size, layout.block_size, rows)
        shapes = {
            # forward
            "x_embd": (R, C),          # wte[tokens] + wpe[positions], before its rmsnorm
            "x_in": (R, C),            # its rmsnorm: the residual stream entering layer 0
            "rstd0": (R,),
            "x": (R, C),               # the residual stream, updated in place; at the end the input of lm_head
            "branch": (R, C),          # a residual branch's output, before it is added to x
            "xn_attn": (L, R, C),      # rmsnorm of the residual stream entering attention
            "rstd_attn": (L, R),
            "qkv": (L, R, 3 * C),      # queries, keys and values side by side (the decoder's KV cache)
            "kt": (L, C, R),           # the keys transposed, for attention's scores
            "att": (L, R, NH, T),      # attention weights: att[l, t, h, j] for the j-th key of row t
            "heads": (L, R, C),        # attention output, heads side by side, before attn_wo
            "xn_mlp": (L, R, C),       # rmsnorm of the residual stream entering the MLP
            "rstd_mlp": (L, R),
            "hidden": (L, R, H),       # mlp_fc1 output, before relu
            "hidden_relu": (L, R, H),
            "logits": (R, V),
            "probs": (R, V),           # softmax of the logits
            # backward
            "dx": (R, C),              # gradient of the residual stream
            "dxn": (R, C),             # gradient of an rmsnorm's output
            "dqkv": (R, 3 * C),
            "vt": (C, R),              # the values transposed, for attention's backward
            "datt": (R, NH, T),        # gradient of the attention scores
            "dheads": (R, C),
            "dhidden": (R, H),
            "dhidden_relu": (R, H),
            "dlogits": (R, V),
            "dx_embd": (R, C),
        }
        self.rows = rows
        self.memory = np.zeros(sum(math.prod(shape) for shape in shapes.values()), dtype)
        at = 0
        for name, shape in shapes.items():
            setattr(self, name, self.memory[at:at + math.prod(shape)].reshape(shape))
            at += math.prod(shape)


# ------------------------------------------------------------------ forward

@njit(cache=True, nogil=True)
def add_into(out, x):
    """out += x, elementwise, for (N, C) arrays: a residual connection."""
    for n in range(out.shape[0]):
        for i in range(out.shape[1]):
            out[n, i] += x[n, i]


@njit(cache=True, nogil=True)
def copy_into(out, x):
    """out[...] = x for C-contiguous arrays of one shape, whatever their dtypes (float32 into float64)."""
    flat_out, flat_x = out.reshape(-1), x.reshape(-1)
    for i in range(flat_out.shape[0]):
        flat_out[i] = flat_x[i]


def layer_forward(ws, l, w, positions, r0, r1):
    """Layer l on rows r0..r1 of the residual stream ws.x, in place:

        x += attention(rmsnorm(x))·Woᵀ;   x += relu(rmsnorm(x)·W1ᵀ)·W2ᵀ

    Row t attends to rows t - positions[t] .. t of ws.qkv[l]. In a packed batch those
    are its own sequence's rows, computed in this same call; in the decoder (one row
    at a time) the earlier rows were left there by earlier calls: the KV cache.
    """
    wqkv, wo, fc1, fc2 = w.layers[l]
    x, branch = ws.x[r0:r1], ws.branch[r0:r1]
    # attention branch
    xn = ws.xn_attn[l, r0:r1]
    rmsnorm_forward(xn, ws.rstd_attn[l, r0:r1], x)
    linear_forward(ws.qkv[l, r0:r1], xn, wqkv)
    attention_forward(ws.heads[l], ws.att[l], ws.kt[l], ws.qkv[l], positions, r0, r1, 0, NO_MASK)
    linear_forward(branch, ws.heads[l, r0:r1], wo)
    add_into(x, branch)
    # MLP branch
    xn = ws.xn_mlp[l, r0:r1]
    rmsnorm_forward(xn, ws.rstd_mlp[l, r0:r1], x)
    linear_forward(ws.hidden[l, r0:r1], xn, fc1)
    relu_forward(ws.hidden_relu[l, r0:r1], ws.hidden[l, r0:r1])
    linear_forward(branch, ws.hidden_relu[l, r0:r1], fc2)
    add_into(x, branch)


def gpt_forward(ws, w, tokens, positions, r0, r1):
    """Rows r0..r1 of every activation, up to the logits ws.logits[r0:r1]."""
    embedding_forward(ws.x_embd[r0:r1], tokens[r0:r1], positions[r0:r1], w.wte, w.wpe)
    rmsnorm_forward(ws.x_in[r0:r1], ws.rstd0[r0:r1], ws.x_embd[r0:r1])
    copy_into(ws.x[r0:r1], ws.x_in[r0:r1])
    for l in range(len(w.layers)):
        layer_forward(ws, l, w, positions, r0, r1)
    linear_forward(ws.logits[r0:r1], ws.x[r0:r1], w.lm_head)


# ----------------------------------------------------------------- backward

def layer_backward(ws, dw, l, w, positions, r0, r1):
    """The backward of layer_forward on rows r0..r1: ws.dx goes from the gradient of the
    stream after layer l to the gradient before it; weight gradients accumulate into dw.

    Reverse order of the forward; each branch reads dx and adds its own contribution
    back into it (the `+` of the residual connection).
    """
    wqkv, wo, fc1, fc2 = w.layers[l]
    dwqkv, dwo, dfc1, dfc2 = dw.layers[l]
    dx, dxn = ws.dx[r0:r1], ws.dxn[r0:r1]
    # MLP branch: x += relu(xn·W1ᵀ)·W2ᵀ
    dhidden_relu, dhidden = ws.dhidden_relu[r0:r1], ws.dhidden[r0:r1]
    dhidden_relu.fill(0.0)
    linear_backward(dhidden_relu, dfc2, dx, ws.hidden_relu[l, r0:r1], fc2)
    dhidden.fill(0.0)
    relu_backward(dhidden, dhidden_relu, ws.hidden[l, r0:r1])
    dxn.fill(0.0)
    linear_backward(dxn, dfc1, dhidden, ws.xn_mlp[l, r0:r1], fc1)
    rmsnorm_backward(dx, dxn, ws.xn_mlp[l, r0:r1], ws.rstd_mlp[l, r0:r1])
    # attention branch: x += attention(q, k, v)·Woᵀ
    dheads = ws.dheads[r0:r1]
    dheads.fill(0.0)
    linear_backward(dheads, dwo, dx, ws.heads[l, r0:r1], wo)
    dqkv = ws.dqkv[r0:r1]
    dqkv.fill(0.0)
    attention_backward(ws.dqkv, ws.datt, ws.vt, ws.dheads, ws.att[l], ws.qkv[l], positions, r0, r1,
                       0, NO_MASK)
    dxn.fill(0.0)
    linear_backward(dxn, dwqkv, dqkv, ws.xn_attn[l, r0:r1], wqkv)
    rmsnorm_backward(dx, dxn, ws.xn_attn[l, r0:r1], ws.rstd_attn[l, r0:r1])


def gpt_backward(ws, dw, w, batch, r0, r1, dloss):
    """Weight gradients of the loss over rows r0..r1 (whole sequences), accumulated into dw.

    dloss is the gradient of the loss with respect to each token's cross-entropy
    (1/N for the mean over the batch's N tokens). Calls the layers' backwards in
    exactly the reverse order of gpt_forward.
    """
    dlogits, dx = ws.dlogits[r0:r1], ws.dx[r0:r1]
    dlogits.fill(0.0)
    cross_entropy_backward(dlogits, ws.probs[r0:r1], batch.targets[r0:r1], dloss)
    dx.fill(0.0)
    linear_backward(dx, dw.lm_head, dlogits, ws.x[r0:r1], w.lm_head)
    for l in range(len(w.layers) - 1, -1, -1):
        layer_backward(ws, dw, l, w, batch.positions, r0, r1)
    dx_embd = ws.dx_embd[r0:r1]
    dx_embd.fill(0.0)
    rmsnorm_backward(dx_embd, dx, ws.x_in[r0:r1], ws.rstd0[r0:r1])
    embedding_backward(dw.wte, dw.wpe, dx_embd, batch.tokens[r0:r1], batch.positions[r0:r1])


# ------------------------------------------------------------- entry points

def shard_loss_and_grads(dweights, weights, layout, batch, ws, r0, r1):
    """Forward and backward of the rows r0..r1 (whole sequences) of a packed batch, on one thread.

    Returns the loss summed over those rows; their share of the gradient of the batch's
    mean loss is written to dweights (P,). With r0, r1 = 0, N this is the whole step.
    """
    w = weights_of(weights, layout)
    gpt_forward(ws, w, batch.tokens, batch.positions, r0, r1)
    total = cross_entropy_forward(ws.probs[r0:r1], ws.logits[r0:r1], batch.targets[r0:r1])
    dweights.fill(0.0)
    gpt_backward(ws, weights_of(dweights, layout), w, batch, r0, r1, 1.0 / len(batch.tokens))
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


def gpt_loss(weights, layout, batch, ws):
    """The mean loss of a packed batch (forward only)."""
    N = len(batch.tokens)
    gpt_forward(ws, weights_of(weights, layout), batch.tokens, batch.positions, 0, N)
    return cross_entropy_forward(ws.probs[:N], ws.logits[:N], batch.targets) / N


def gpt_decode_step(logits, weights, layout, ws, tokens, positions, pos):
    """Logits (V,) for the token after tokens[pos], from row pos of the forward (rows before it are cached)."""
    gpt_forward(ws, weights_of(weights, layout), tokens, positions, pos, pos + 1)
    copy_into(logits, ws.logits[pos])


# ------------------------------------------------------------------ backend

class Model:
    """What the backend keeps per model (config), allocated once: its Layout, its Workspace,
    each shard's weight gradients, and the weights in the compute dtype."""

    def __init__(self, params, dtype):
        self.layout = layout_of(params)
        self.dtype = DTYPES[dtype]
        self.ws = None                                              # allocated for the first batch
        self.dweights = np.zeros((0, params.size), self.dtype)    # (S, P)
        # float64 computes on params.flat itself; float32 on this copy, refreshed every step
        self.weights32 = np.empty(params.size, np.float32) if self.dtype == np.float32 else None

    def workspace_for(self, rows):
        """The Workspace, reallocated if it has fewer rows: at most a few times a run."""
        if self.ws is None or self.ws.rows < rows:
            self.ws = Workspace(self.layout, rows, self.dtype)
        return self.ws

    def workspace(self):
        """The Workspace, to look at from Python (tests, debugging)."""
        return self.ws

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
        refuse_unsupported(params.config, training="train" in uses)
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
        return gpt_loss(self.weights(model, params), model.layout, packed, model.workspace_for(len(packed.tokens)))

    def loss_and_grads(self, params, batch, masks=None, n_shards=None):
        """The loss and its float64 gradient. The batch is split into n_shards shards of whole
        sequences that run side by side, one thread each (None: as `n_shards` chooses).
        `masks` must be None: the kernels do not implement dropout yet.

        Shard s writes its gradients to dweights[s]; they are then added into grads in shard
        order (pieces of the vector on each thread), as are the losses: the result depends on
        the shards, never on which thread finished first.
        """
        if masks is not None:
            refuse_unsupported(params.config, training=True)
        model = self.model(params)
        packed = pack_batch(batch, params.config.block_size)
        N, grads = len(packed.tokens), np.empty(params.size)
        weights, ws = self.weights(model, params), model.workspace_for(N)
        n_shards = self.n_shards(model.layout, packed) if n_shards is None else n_shards
        if n_shards == 1 and model.dtype == np.float64:     # the one shard writes straight into grads
            return shard_loss_and_grads(grads, weights, model.layout, packed, ws, 0, N) / N, grads
        rows, dweights = shard_rows(packed.doc_starts, n_shards), model.dweights_for(n_shards)
        totals = self.workers.run([(shard_loss_and_grads, (dweights[s], weights, model.layout, packed, ws,
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
    ws = model.workspace_for(len(packed.tokens))
    return lambda flat: gpt_loss(flat.astype(model.dtype, copy=False), model.layout, packed, ws)


class NumbaDecoder:
    """Feeds one token at a time through the compiled model; the activations of earlier rows are the KV cache."""

    def __init__(self, params, dtype="float64"):
        self.layout = layout_of(params)
        self.block_size = params.config.block_size
        self.ws = Workspace(self.layout, self.block_size, DTYPES[dtype])
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
        gpt_decode_step(logits, self.weights, self.layout, self.ws, self.tokens, self.positions, self.pos)
        self.pos += 1
        return logits
