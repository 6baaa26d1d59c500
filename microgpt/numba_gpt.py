"""The GPT as compiled kernels: batched loss-and-gradients on shards in parallel, and a KV-cached decoder.

The same model as `scalar_gpt`, on arrays (legend in `microgpt.kernels`; the
components and their formulas in `microgpt.architecture`):

    x = norm(wte[tokens] + wpe[positions])                        (N, C)   the norm if embed_norm
    for each layer:                                               `layer_forward`
        xn = norm(x);  qkv = xn·[Wq; Wk; Wv]ᵀ (+ b)               (N, 3C): q, k, v side by side
        x  = x + m ⊙ (attention(q, k, v)·Woᵀ (+ bo))              causal, per sequence, over the window
        xn = norm(x);  x = x + m ⊙ (act(xn·W1ᵀ (+ b1))·W2ᵀ (+ b2))  hidden (N, H)
    logits = norm(x)·lm_headᵀ                                     (N, V)   the norm if final_norm
    loss   = mean cross-entropy of logits against the next tokens

norm is rmsnorm, layernorm or scalenorm (with a learned gain, and layernorm's
bias, when norm_weights); act is relu, gelu or swiglu, whose gate makes fc1 one
(2H, C) product [fc1; gate]; the biases exist with config.bias; m are dropout
masks (training only). wpe is the fixed sinusoidal table for pos = "sinusoidal",
and lm_head is wte itself when the weights are tied.

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

from microgpt.architecture import sinusoidal_positions
from microgpt.flops import matmul_params
from microgpt.kernels import (
    NO_MASK, adam_update, attention_backward, attention_forward, bias_backward, bias_forward,
    cross_entropy_backward, cross_entropy_forward, dropout_backward, dropout_forward, embedding_backward,
    embedding_forward, gelu_backward, gelu_forward, layernorm_backward, layernorm_forward, linear_backward,
    linear_forward, relu_backward, relu_forward, rmsnorm_backward, rmsnorm_forward, scalenorm_backward,
    scalenorm_forward, swiglu_backward, swiglu_forward)
from microgpt.errors import UsageError

DTYPES = {"float64": np.float64, "float32": np.float32}

# A shard of the batch must have at least this many multiply-adds in its matrix products
# (~0.1 ms) to be worth a thread of its own: handing a call to a thread costs ~20-50 µs here.
SHARD_MIN_WORK = 4_000_000
# Vectors shorter than this (Adam's, the gradient's) are updated on one thread: handing
# pieces to other threads costs more than it saves.
THREADED_VECTOR_MIN_SIZE = 1 << 17


# ------------------------------------------------------------------ layout

# Tensors of the table that sit one after the other and are read as one, under the
# first one's name or a name of their own: one product then computes them all.
FUSED = {"attn_wq": ("attn_wqkv", ("attn_wq", "attn_wk", "attn_wv")),    # (3C, C)
         "attn_bq": ("attn_bqkv", ("attn_bq", "attn_bk", "attn_bv")),    # (3C,)
         "mlp_fc1": ("mlp_fc1", ("mlp_fc1", "mlp_gate")),                # (2H, C) with swiglu, else (H, C)
         "mlp_b1": ("mlp_b1", ("mlp_b1", "mlp_bgate"))}                  # (2H,) with swiglu, else (H,)
FOLLOWERS = {name for _, group in FUSED.values() for name in group[1:]}


class Layout(NamedTuple):
    """Where each tensor the kernels read sits in the flat parameter vector (read from `Params`), and the sizes."""
    config: object           # the GPTConfig: which components the model has, and the sizes
    tensors: dict            # name -> (start, stop, shape) in the vector: wte, wpe, the norms' weights, lm_head
    layers: list             # per layer, the same for its tensors, named without "layer{i}.", fused as in FUSED
    positions_table: dict    # dtype -> the (T, C) sinusoidal table (pos = "sinusoidal"), else empty

    @property
    def vocab_size(self):
        """V"""
        return self.config.vocab_size

    @property
    def n_embd(self):
        """C"""
        return self.config.n_embd

    @property
    def n_hidden(self):
        """H, the MLP's hidden width"""
        return self.config.n_hidden

    @property
    def block_size(self):
        """T"""
        return self.config.block_size


def fused_entry(params, prefix, group):
    """(start, stop, shape) of the tensors of `group` present in params, read as one: rows stacked.

    They must sit one after the other in the flat vector; this is checked, not assumed.
    """
    names = [prefix + name for name in group if prefix + name in params.offsets]
    start = at = params.offsets[names[0]]
    for name in names:
        if params.offsets[name] != at:
            raise ValueError(f"{', '.join(names)} are not adjacent in the parameter vector: "
                             f"the kernels read them as one tensor")
        at += math.prod(params.shapes[name])
    shape = params.shapes[names[0]]
    return start, at, (sum(params.shapes[name][0] for name in names),) + shape[1:]


def layout_of(params):
    """The `Layout` of a `Params`: every offset and shape read from its table of tensors."""
    config = params.config
    tensors, layers = {}, [{} for _ in range(config.n_layer)]
    for tensor in params.table:
        layer, _, name = tensor.name.rpartition(".")             # "layer0", "attn_wq"; "", "wte"
        if name in FOLLOWERS:
            continue                                             # read as part of the tensor before it
        entries = layers[int(layer[len("layer"):])] if layer else tensors
        if name in FUSED:
            fused_name, group = FUSED[name]
            entries[fused_name] = fused_entry(params, layer + ".", group)
        else:
            start = params.offsets[tensor.name]
            entries[name] = (start, start + math.prod(tensor.shape), tensor.shape)
    table = {}
    if config.pos == "sinusoidal":
        table64 = sinusoidal_positions(config.block_size, config.n_embd)
        table = {dtype: table64.astype(dtype) for dtype in DTYPES.values()}
    return Layout(config, tensors, layers, table)


class LayerWeights(NamedTuple):
    """One block's tensors as the kernels read them (views of a flat vector); None where the config has none."""
    attn_norm_g: np.ndarray = None   # (C,), or (1,) for scalenorm's scale
    attn_norm_b: np.ndarray = None   # (C,) layernorm's bias
    attn_wqkv: np.ndarray = None     # (3C, C): attn_wq, attn_wk, attn_wv stacked
    attn_bqkv: np.ndarray = None     # (3C,): attn_bq, attn_bk, attn_bv
    attn_wo: np.ndarray = None       # (C, C)
    attn_bo: np.ndarray = None       # (C,)
    mlp_norm_g: np.ndarray = None
    mlp_norm_b: np.ndarray = None
    mlp_fc1: np.ndarray = None       # (H, C); with swiglu (2H, C): mlp_fc1 then mlp_gate
    mlp_b1: np.ndarray = None        # (H,); with swiglu (2H,): mlp_b1 then mlp_bgate
    mlp_fc2: np.ndarray = None       # (C, H)
    mlp_b2: np.ndarray = None        # (C,)


class Weights(NamedTuple):
    """Views of a flat vector laid out like Params.flat (the weights, or gradients alike)."""
    wte: np.ndarray          # (V, C)
    wpe: np.ndarray          # (T, C): learned, or the sinusoidal table (for gradients: a scratch, discarded)
    layers: list             # a LayerWeights per layer
    lm_head: np.ndarray      # (V, C): wte itself when the weights are tied
    embd_norm_g: np.ndarray = None
    embd_norm_b: np.ndarray = None
    final_norm_g: np.ndarray = None
    final_norm_b: np.ndarray = None


def weights_of(flat, layout, wpe=None):
    """The `Weights` views of `flat`: no copy, so writing through them writes the vector.

    wpe: the (T, C) array that stands for wpe when positions are sinusoidal (not in the
    vector): None for the table itself, a scratch array for its gradient.
    """
    tensors = {name: flat[start:stop].reshape(shape) for name, (start, stop, shape) in layout.tensors.items()}
    if "wpe" not in tensors:
        tensors["wpe"] = layout.positions_table[flat.dtype.type] if wpe is None else wpe
    tensors.setdefault("lm_head", tensors["wte"])            # tied: the head is the embedding
    layers = [LayerWeights(**{name: flat[start:stop].reshape(shape) for name, (start, stop, shape) in layer.items()})
              for layer in layout.layers]
    return Weights(layers=layers, **tensors)


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
    return n_tokens * matmul_params(layout.config)      # one multiply-add per weight in a product, per token


# --------------------------------------------------------------- workspace

class NormRows(NamedTuple):
    """A norm's arrays on some rows: y = norm(x) (· g + b), and what its backward reads."""
    x: np.ndarray            # (N, C) its input; None when the backward does not read it
    xn: np.ndarray           # (N, C) its output
    rstd: np.ndarray         # (N,) 1/sqrt(mean(x²) + eps); layernorm: of the variance; scalenorm: of Σx²
    mean: np.ndarray         # (N,) layernorm's μ; None for the other norms


def keeps_norm_input(config):
    """Whether a norm's backward reads its input x: every norm but RMSNorm without a gain,
    whose backward needs only its output x̂ and rstd."""
    return config.norm != "rmsnorm" or config.norm_weights


class Workspace:
    """Every array a step writes but the weight gradients, for up to `rows` tokens: views of one buffer.

    The forward's arrays are kept for the backward; those with a leading L hold one
    slab per layer. The backward's arrays hold one layer's gradients, reused layer
    after layer. Each shard of a batch uses its own rows of every array. Only the
    arrays the config's components use are there.
    """

    def __init__(self, layout, rows, dtype):
        c = layout.config
        L, C, NH, H, V, T, R = (len(layout.layers), layout.n_embd, c.n_head, layout.n_hidden,
                                layout.vocab_size, layout.block_size, rows)
        fc1_width = 2 * H if c.mlp == "swiglu" else H         # swiglu: [a | z], fc1's and the gate's outputs

        def norm(site, lead=()):                              # the arrays of the norm at `site`
            shapes = {f"xn_{site}": lead + (R, C), f"rstd_{site}": lead + (R,)}
            if c.norm == "layernorm":
                shapes[f"mean_{site}"] = lead + (R,)
            return shapes

        def block_norm(site):                                 # a norm in each layer, whose input changes
            kept = {f"x_{site}": (L, R, C)} if keeps_norm_input(c) else {}
            return {**kept, **norm(site, (L,))}

        shapes = {
            # forward
            "x_embd": (R, C),          # wte[tokens] + wpe[positions], before its norm
            **(norm("embd") if c.embed_norm else {}),
            "x": (R, C),               # the residual stream, updated in place; at the end the input of the head
            "branch": (R, C),          # a residual branch's output, before it is added to x
            **block_norm("attn"),      # the norm of the residual stream entering attention
            "qkv": (L, R, 3 * C),      # queries, keys and values side by side (the decoder's KV cache)
            "kt": (L, C, R),           # the keys transposed, for attention's scores
            "att": (L, R, NH, T),      # attention weights: att[l, t, h, j] for the j-th key of row t
            "heads": (L, R, C),        # attention output, heads side by side, before attn_wo
            **block_norm("mlp"),       # the norm of the residual stream entering the MLP
            "fc1": (L, R, fc1_width),  # xn·W1ᵀ (+ b1), before the activation
            "hidden": (L, R, H),       # the activation's output, the input of mlp_fc2
            **(norm("final") if c.final_norm else {}),
            "logits": (R, V),
            "probs": (R, V),           # softmax of the logits
            # backward
            "dx": (R, C),              # gradient of the residual stream
            "dxn": (R, C),             # gradient of a norm's output
            **({"dbranch": (R, C)} if c.dropout > 0 else {}),    # gradient of a branch before its mask
            "dqkv": (R, 3 * C),
            "vt": (C, R),              # the values transposed, for attention's backward
            "datt": (R, NH, T),        # gradient of the attention scores
            "dheads": (R, C),
            "dfc1": (R, fc1_width),
            "dhidden": (R, H),
            "dlogits": (R, V),
            **({"dx_embd": (R, C)} if c.embed_norm else {}),
        }
        self.rows, self.config = rows, c
        self.memory = np.zeros(sum(math.prod(shape) for shape in shapes.values()), dtype)
        at = 0
        for name, shape in shapes.items():
            setattr(self, name, self.memory[at:at + math.prod(shape)].reshape(shape))
            at += math.prod(shape)
        # each norm's arrays, all rows: (site, None) for the embedding's and the final norm,
        # (site, l) for layer l's; the input is the one the backward reads (if it reads it)
        keep = keeps_norm_input(c)
        self.norms = {}
        if c.embed_norm:
            self.norms["embd", None] = NormRows(self.x_embd if keep else None, self.xn_embd, self.rstd_embd,
                                                getattr(self, "mean_embd", None))
        if c.final_norm:
            self.norms["final", None] = NormRows(self.x if keep else None, self.xn_final, self.rstd_final,
                                                 getattr(self, "mean_final", None))
        for site in ("attn", "mlp"):
            for l in range(L):
                self.norms[site, l] = NormRows(*(None if a is None else a[l] for a in (
                    getattr(self, f"x_{site}", None), getattr(self, f"xn_{site}"), getattr(self, f"rstd_{site}"),
                    getattr(self, f"mean_{site}", None))))

    def norm_rows(self, site, r0, r1, l=None):
        """The NormRows of the norm at `site` ("embd", "attn", "mlp", "final") on rows r0..r1 (of layer l)."""
        x, xn, rstd, mean = self.norms[site, l]
        return NormRows(x if x is None else x[r0:r1], xn[r0:r1], rstd[r0:r1], mean if mean is None else mean[r0:r1])


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


def norm_forward(norm, rows, x, g, b):
    """rows.xn = norm(x) (· g + b) for the config's `norm`; x (N, C), g the gain (scalenorm: the scale s),
    b layernorm's bias, both None without norm weights. A kernel is called without the weights it
    does not have, so the default RMSNorm runs exactly the code it always did."""
    weights = () if g is None else (g,) if b is None else (g, b)
    if norm == "rmsnorm":
        rmsnorm_forward(rows.xn, rows.rstd, x, *weights)
    elif norm == "layernorm":
        layernorm_forward(rows.xn, rows.mean, rows.rstd, x, *weights)
    else:
        scalenorm_forward(rows.xn, rows.rstd, x, *weights)


def block_norm_forward(ws, site, l, x, r0, r1, g, b):
    """The norm of the residual stream x (rows r0..r1) entering `site` of layer l; returns its NormRows.
    Its input is copied aside first when its backward needs it: x itself is changed in place."""
    rows = ws.norm_rows(site, r0, r1, l)
    if rows.x is not None:
        copy_into(rows.x, x)
    norm_forward(ws.config.norm, rows, x, g, b)
    return rows


# config.mlp -> the activation's (forward, backward) kernels; swiglu's input is [a | z], two halves
ACTIVATIONS = {"relu": (relu_forward, relu_backward), "gelu": (gelu_forward, gelu_backward),
               "swiglu": (swiglu_forward, swiglu_backward)}


def activation_forward(mlp, hidden, fc1):
    """hidden (N, H) = relu(fc1) or gelu(fc1), or swiglu's a ⊙ silu(z) from fc1 = [a | z] (N, 2H)."""
    ACTIVATIONS[mlp][0](hidden, fc1)


def add_branch(x, branch, b, mask):
    """x += mask ⊙ (branch + b): a residual branch's output (N, C), with its bias (C,) and dropout
    mask (N, C) when there are any, added to the stream x (N, C)."""
    if b is not None:
        bias_forward(branch, b)
    if mask is not None:
        dropout_forward(branch, branch, mask)
    add_into(x, branch)


def layer_masks(masks, l, r0, r1):
    """Layer l's dropout masks for rows r0..r1: attention's (whole: the kernel indexes it by row,
    (N, NH, T)), and the two branches' rows (N, C); NO_MASK, None, None without dropout."""
    if masks is None:
        return NO_MASK, None, None
    return masks.attn[l], masks.attn_out[l][r0:r1], masks.mlp_out[l][r0:r1]


def linear_bias_forward(out, x, w, b):
    """out = x·wᵀ (+ b): out (N, OUT), x (N, IN), w (OUT, IN), b (OUT,) or None."""
    linear_forward(out, x, w)
    if b is not None:
        bias_forward(out, b)


def layer_forward(ws, l, w, positions, r0, r1, masks=None):
    """Layer l on rows r0..r1 of the residual stream ws.x, in place:

        x += m ⊙ (attention(norm(x))·Woᵀ + bo);   x += m ⊙ (act(norm(x)·W1ᵀ + b1)·W2ᵀ + b2)

    Row t attends to rows t - positions[t] .. t of ws.qkv[l] (the last attn_window of
    them with a window). In a packed batch those are its own sequence's rows, computed in
    this same call; in the decoder (one row at a time) the earlier rows were left there
    by earlier calls: the KV cache. masks: the step's DropoutMasks (rows of the whole
    packed batch), or None.
    """
    lw, c = w.layers[l], ws.config
    x, branch = ws.x[r0:r1], ws.branch[r0:r1]
    attn_mask, attn_out, mlp_out = layer_masks(masks, l, r0, r1)
    # attention branch
    norm = block_norm_forward(ws, "attn", l, x, r0, r1, lw.attn_norm_g, lw.attn_norm_b)
    linear_bias_forward(ws.qkv[l, r0:r1], norm.xn, lw.attn_wqkv, lw.attn_bqkv)
    attention_forward(ws.heads[l], ws.att[l], ws.kt[l], ws.qkv[l], positions, r0, r1, c.attn_window, attn_mask)
    linear_forward(branch, ws.heads[l, r0:r1], lw.attn_wo)
    add_branch(x, branch, lw.attn_bo, attn_out)
    # MLP branch
    norm = block_norm_forward(ws, "mlp", l, x, r0, r1, lw.mlp_norm_g, lw.mlp_norm_b)
    linear_bias_forward(ws.fc1[l, r0:r1], norm.xn, lw.mlp_fc1, lw.mlp_b1)
    activation_forward(c.mlp, ws.hidden[l, r0:r1], ws.fc1[l, r0:r1])
    linear_forward(branch, ws.hidden[l, r0:r1], lw.mlp_fc2)
    add_branch(x, branch, lw.mlp_b2, mlp_out)


def gpt_forward(ws, w, tokens, positions, r0, r1, masks=None):
    """Rows r0..r1 of every activation, up to the logits ws.logits[r0:r1]."""
    c = ws.config
    x_embd = ws.x_embd[r0:r1]
    embedding_forward(x_embd, tokens[r0:r1], positions[r0:r1], w.wte, w.wpe)
    if c.embed_norm:
        norm = ws.norm_rows("embd", r0, r1)
        norm_forward(c.norm, norm, x_embd, w.embd_norm_g, w.embd_norm_b)
        x_embd = norm.xn
    copy_into(ws.x[r0:r1], x_embd)
    for l in range(len(w.layers)):
        layer_forward(ws, l, w, positions, r0, r1, masks)
    x = ws.x[r0:r1]
    if c.final_norm:
        norm = ws.norm_rows("final", r0, r1)
        norm_forward(c.norm, norm, x, w.final_norm_g, w.final_norm_b)
        x = norm.xn
    linear_forward(ws.logits[r0:r1], x, w.lm_head)


# ----------------------------------------------------------------- backward

def norm_backward(norm, dx, dout, rows, g, dg, db):
    """dx += the gradient through the norm whose arrays are `rows`, from dout (N, C) at its output;
    the gain's and bias's gradients accumulate into dg and db (None without norm weights)."""
    if norm == "rmsnorm":
        extra = () if g is None else (rows.x, g, dg)
        rmsnorm_backward(dx, dout, rows.xn, rows.rstd, *extra)
    elif norm == "layernorm":
        extra = () if g is None else (g, dg, db)
        layernorm_backward(dx, dout, rows.x, rows.mean, rows.rstd, *extra)
    else:
        extra = () if g is None else (g, dg)
        scalenorm_backward(dx, dout, rows.x, rows.rstd, *extra)


def activation_backward(mlp, dfc1, dhidden, fc1):
    """dfc1 += the gradient through activation_forward, from dhidden (N, H) at its output; fc1 its input."""
    ACTIVATIONS[mlp][1](dfc1, dhidden, fc1)


def branch_backward(ws, dx, db, mask, r0, r1):
    """The gradient (N, C) at a residual branch's output before its mask, from dx at the stream:
    dx itself, or dx ⊙ m with dropout; the branch's bias gradient accumulates into db."""
    dbranch = dx
    if mask is not None:
        dbranch = ws.dbranch[r0:r1]
        dbranch.fill(0.0)
        dropout_backward(dbranch, dx, mask)
    if db is not None:
        bias_backward(db, dbranch)
    return dbranch


def layer_backward(ws, dw, l, w, positions, r0, r1, masks=None):
    """The backward of layer_forward on rows r0..r1: ws.dx goes from the gradient of the
    stream after layer l to the gradient before it; weight gradients accumulate into dw.

    Reverse order of the forward; each branch reads dx and adds its own contribution
    back into it (the `+` of the residual connection).
    """
    lw, dlw, c = w.layers[l], dw.layers[l], ws.config
    dx, dxn = ws.dx[r0:r1], ws.dxn[r0:r1]
    attn_mask, attn_out, mlp_out = layer_masks(masks, l, r0, r1)
    # MLP branch: x += m ⊙ (act(xn·W1ᵀ + b1)·W2ᵀ + b2)
    dbranch = branch_backward(ws, dx, dlw.mlp_b2, mlp_out, r0, r1)
    dhidden, dfc1 = ws.dhidden[r0:r1], ws.dfc1[r0:r1]
    dhidden.fill(0.0)
    linear_backward(dhidden, dlw.mlp_fc2, dbranch, ws.hidden[l, r0:r1], lw.mlp_fc2)
    dfc1.fill(0.0)
    activation_backward(c.mlp, dfc1, dhidden, ws.fc1[l, r0:r1])
    if dlw.mlp_b1 is not None:
        bias_backward(dlw.mlp_b1, dfc1)
    norm = ws.norm_rows("mlp", r0, r1, l)
    dxn.fill(0.0)
    linear_backward(dxn, dlw.mlp_fc1, dfc1, norm.xn, lw.mlp_fc1)
    norm_backward(c.norm, dx, dxn, norm, lw.mlp_norm_g, dlw.mlp_norm_g, dlw.mlp_norm_b)
    # attention branch: x += m ⊙ (attention(q, k, v)·Woᵀ + bo)
    dbranch = branch_backward(ws, dx, dlw.attn_bo, attn_out, r0, r1)
    dheads = ws.dheads[r0:r1]
    dheads.fill(0.0)
    linear_backward(dheads, dlw.attn_wo, dbranch, ws.heads[l, r0:r1], lw.attn_wo)
    dqkv = ws.dqkv[r0:r1]
    dqkv.fill(0.0)
    attention_backward(ws.dqkv, ws.datt, ws.vt, ws.dheads, ws.att[l], ws.qkv[l], positions, r0, r1,
                       c.attn_window, attn_mask)
    if dlw.attn_bqkv is not None:
        bias_backward(dlw.attn_bqkv, dqkv)
    norm = ws.norm_rows("attn", r0, r1, l)
    dxn.fill(0.0)
    linear_backward(dxn, dlw.attn_wqkv, dqkv, norm.xn, lw.attn_wqkv)
    norm_backward(c.norm, dx, dxn, norm, lw.attn_norm_g, dlw.attn_norm_g, dlw.attn_norm_b)


def gpt_backward(ws, dw, w, batch, r0, r1, dloss, masks=None):
    """Weight gradients of the loss over rows r0..r1 (whole sequences), accumulated into dw.

    dloss is the gradient of the loss with respect to each token's cross-entropy
    (1/N for the mean over the batch's N tokens). Calls the layers' backwards in
    exactly the reverse order of gpt_forward. With tied weights dw.lm_head is dw.wte:
    the head's gradient and the embedding's add up there.
    """
    c = ws.config
    dlogits, dx = ws.dlogits[r0:r1], ws.dx[r0:r1]
    dlogits.fill(0.0)
    cross_entropy_backward(dlogits, ws.probs[r0:r1], batch.targets[r0:r1], dloss)
    dx.fill(0.0)
    if c.final_norm:
        norm, dxn = ws.norm_rows("final", r0, r1), ws.dxn[r0:r1]
        dxn.fill(0.0)
        linear_backward(dxn, dw.lm_head, dlogits, norm.xn, w.lm_head)
        norm_backward(c.norm, dx, dxn, norm, w.final_norm_g, dw.final_norm_g, dw.final_norm_b)
    else:
        linear_backward(dx, dw.lm_head, dlogits, ws.x[r0:r1], w.lm_head)
    for l in range(len(w.layers) - 1, -1, -1):
        layer_backward(ws, dw, l, w, batch.positions, r0, r1, masks)
    dx_embd = dx
    if c.embed_norm:
        dx_embd = ws.dx_embd[r0:r1]
        dx_embd.fill(0.0)
        norm_backward(c.norm, dx_embd, dx, ws.norm_rows("embd", r0, r1), w.embd_norm_g, dw.embd_norm_g,
                      dw.embd_norm_b)
    embedding_backward(dw.wte, dw.wpe, dx_embd, batch.tokens[r0:r1], batch.positions[r0:r1])


# ------------------------------------------------------------- entry points

def shard_loss_and_grads(dweights, w, layout, batch, ws, r0, r1, masks=None):
    """Forward and backward of the rows r0..r1 (whole sequences) of a packed batch, on one thread.

    Returns the loss summed over those rows; their share of the gradient of the batch's
    mean loss is written to dweights (P,). With r0, r1 = 0, N this is the whole step.
    w: the `Weights`;  masks: the step's DropoutMasks, or None.
    """
    gpt_forward(ws, w, batch.tokens, batch.positions, r0, r1, masks)
    total = cross_entropy_forward(ws.probs[r0:r1], ws.logits[r0:r1], batch.targets[r0:r1])
    dweights.fill(0.0)
    dpe = None if "wpe" in layout.tensors else np.zeros_like(w.wpe)   # the fixed table's gradient: discarded
    gpt_backward(ws, weights_of(dweights, layout, dpe), w, batch, r0, r1, 1.0 / len(batch.tokens), masks)
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


def gpt_loss(weights, layout, batch, ws, masks=None):
    """The mean loss of a packed batch (forward only); with dropout `masks`, the training loss."""
    N = len(batch.tokens)
    gpt_forward(ws, weights_of(weights, layout), batch.tokens, batch.positions, 0, N, masks)
    return cross_entropy_forward(ws.probs[:N], ws.logits[:N], batch.targets) / N


def gpt_decode_step(logits, weights, layout, ws, tokens, positions, pos):
    """Logits (V,) for the token after tokens[pos], from row pos of the forward (rows before it are cached)."""
    gpt_forward(ws, weights_of(weights, layout), tokens, positions, pos, pos + 1)
    copy_into(logits, ws.logits[pos])


# ------------------------------------------------------------------ backend

class Model:
    """What the backend keeps per model (config), allocated once: its Layout, its Workspace,
    each shard's weight gradients, the weights in the compute dtype, and their views."""

    def __init__(self, params, dtype):
        self.layout = layout_of(params)
        self.dtype = DTYPES[dtype]
        self.ws = None                                              # allocated for the first batch
        self.dweights = np.zeros((0, params.size), self.dtype)    # (S, P)
        # float64 computes on params.flat itself; float32 on this copy, refreshed every step
        self.weights32 = np.empty(params.size, np.float32) if self.dtype == np.float32 else None
        self.views, self.views_of = None, None      # weights_of(views_of), kept while it is the same vector

    def workspace_for(self, rows):
        """The Workspace, reallocated if it has fewer rows: at most a few times a run."""
        if self.ws is None or self.ws.rows < rows:
            self.ws = Workspace(self.layout, rows, self.dtype)
        return self.ws

    def weights_views(self, flat):
        """weights_of(flat), made again only when flat is another vector: the weights change in
        place from step to step, and views of them stay valid."""
        if self.views_of is not flat:
            self.views, self.views_of = weights_of(flat, self.layout), flat
        return self.views

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
        """The loss and its float64 gradient; `masks` (a `DropoutMasks` for the packed batch) applies
        dropout, None trains without. The batch is split into n_shards shards of whole sequences
        that run side by side, one thread each (None: as `n_shards` chooses).

        Shard s writes its gradients to dweights[s]; they are then added into grads in shard
        order (pieces of the vector on each thread), as are the losses: the result depends on
        the shards, never on which thread finished first.
        """
        model = self.model(params)
        packed = pack_batch(batch, params.config.block_size)
        N, grads = len(packed.tokens), np.empty(params.size)
        weights, ws = model.weights_views(self.weights(model, params)), model.workspace_for(N)
        n_shards = self.n_shards(model.layout, packed) if n_shards is None else n_shards
        if n_shards == 1 and model.dtype == np.float64:     # the one shard writes straight into grads
            return shard_loss_and_grads(grads, weights, model.layout, packed, ws, 0, N, masks) / N, grads
        rows, dweights = shard_rows(packed.doc_starts, n_shards), model.dweights_for(n_shards)
        totals = self.workers.run([(shard_loss_and_grads, (dweights[s], weights, model.layout, packed, ws,
                                                           rows[s], rows[s + 1], masks))
                                   for s in range(len(rows) - 1)])
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


def flat_loss(params, batch, dtype="float64", masks=None):
    """loss(flat): the mean loss of `batch` for weights `flat` laid out like params.flat (for finite
    differences); with dropout `masks`, the training loss those masks give."""
    model, packed = Model(params, dtype), pack_batch(batch, params.config.block_size)
    ws = model.workspace_for(len(packed.tokens))
    return lambda flat: gpt_loss(flat.astype(model.dtype, copy=False), model.layout, packed, ws, masks)


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
