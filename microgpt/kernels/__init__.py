"""The GPT's layers as compiled kernels: one `*_forward` / `*_backward` pair per layer, one module each.

Shape legend (every kernel names its arrays with these letters):

    N   tokens in the packed batch: the sequences laid end to end, no padding
    T   the longest sequence a kernel may see (block_size): the attention window
    C   n_embd, width of the residual stream
    NH  n_head, attention heads;  HS = C // NH, the head size
    H   the MLP's hidden width (config.n_hidden: mlp_ratio·C, or SwiGLU's smaller width)
    V   vocab_size
    B, T in the usual (B, T, C) layout would pad every sequence to T; here the
    batch is packed to (N, C) instead, so no work is spent on padding and no mask
    is needed: attention simply never looks across a sequence boundary.

Conventions (llm.c's): arguments go outputs first, then inputs, then sizes; a
forward caches what its backward needs (rstd, att, probs); gradients are named
d<array>; a backward *accumulates* into its gradient arrays with `+=`, so a
tensor used twice (the residual stream) sums both contributions, and the
caller zeroes the gradients once per step. Each backward's docstring gives the
derivative it implements.

Beside each kernel is a naive NumPy reference (`*_forward_ref`, `*_backward_ref`),
written for clarity, not speed, returning fresh arrays. The tests hold every
kernel to its reference and to finite differences; the benchmarks time both.

    blas           gemm: C ← op(A)·op(B) + β·C in place (the products of every linear layer)
    embedding      wte[tokens] + wpe[positions]
    rmsnorm        x / sqrt(mean(x²) + eps), optionally times a gain g
    layernorm      (x - mean(x)) / sqrt(var(x) + eps), optionally times g plus b
    scalenorm      s · x / sqrt(Σx² + eps), s learned (one scalar) or the constant √C
    linear         x·Wᵀ
    bias           x·Wᵀ + b: the bias added to linear's output
    relu           max(0, x)
    gelu           0.5·x·(1 + tanh(√(2/π)·(x + 0.044715·x³))), GPT-2's form
    swiglu         a ⊙ silu(z) from u = [a, z] = x·[fc1; gate]ᵀ
    attention      causal multi-head attention, full or over the last W positions,
                   with optional dropout on its weights
    dropout        a residual branch's output times a dropout mask
    cross_entropy  softmax cross-entropy against the next tokens
    adam           the AdamW update of the flat parameter vector

Two choices of the architecture need no kernel of their own: sinusoidal positions
are a fixed (T, C) table (`architecture.sinusoidal_positions`) that
embedding_forward takes in place of wpe (and whose gradient is never used), and
a head tied to the embedding is linear_forward/linear_backward with wte as the
head's matrix and dwte as its gradient (the backward accumulates, so wte's
gradient sums the embedding's and the head's).

Optional parts (a norm's gain and bias) are arguments that default to None: the
call without them compiles to the same code as before they existed. Dropout
masks are drawn by the caller, never inside a kernel, so that both engines use
the same ones; attention takes an empty (0, 0, 0) array, NO_MASK, for none.

Numba policy (docs/06-kernels.md explains each choice; docs/benchmarks.md measures them)
------------
- `@njit(cache=True)` on every kernel: compiled code is stored on disk (in __pycache__,
  or NUMBA_CACHE_DIR), so only the first run of a command compiles.
- Kernels are generic over the dtype: the same source compiles for float64 (the
  default and the reference) and float32 arrays. Sums into Python floats (rmsnorm's
  mean square, softmax's normaliser, the loss) accumulate in float64 either way.
- No `fastmath`: reassociating sums would break the 1e-9 agreement with the scalar
  engine, and its no-NaN assumption would hide a diverging run. Loops are ordered so
  that the innermost one has independent sums along a contiguous row: that vectorises
  without fastmath, and every sum keeps its order.
- Numba's default error_model ("python") checks every float division for a zero
  divisor, and that branch stops a loop from vectorising; `adam_update` opts into
  error_model="numpy" (x/0 gives inf or nan, the bits are otherwise the same).
- Threads: kernels themselves are serial, and release the GIL (`nogil=True` on the
  entry points). The backend runs them on independent shards of the batch side by
  side, one Python thread each (`numba_gpt`, `numba_prepare`); BLAS runs on one
  thread inside each. No `parallel=True`: Numba compiles a prange loop over these
  calls very slowly (~12 s), and a shard is too coarse a task to need it.
- Arrays and sizes are passed as arguments, never read from module globals
  (Numba freezes globals at compile time); the globals kernels read are constants.
- Kernels are defined at module level only; nothing is compiled at import
  (the first call compiles, or loads from the cache).
"""

from microgpt.kernels.adam import adam_update
from microgpt.kernels.attention import (
    NO_MASK, attention_backward, attention_backward_ref, attention_forward, attention_forward_ref)
from microgpt.kernels.bias import bias_backward, bias_backward_ref, bias_forward, bias_forward_ref
from microgpt.kernels.blas import gemm
from microgpt.kernels.cross_entropy import (
    cross_entropy_backward, cross_entropy_backward_ref, cross_entropy_forward, cross_entropy_forward_ref)
from microgpt.kernels.dropout import dropout_backward, dropout_backward_ref, dropout_forward, dropout_forward_ref
from microgpt.kernels.embedding import (
    embedding_backward, embedding_backward_ref, embedding_forward, embedding_forward_ref)
from microgpt.kernels.gelu import gelu_backward, gelu_backward_ref, gelu_forward, gelu_forward_ref
from microgpt.kernels.layernorm import (
    layernorm_backward, layernorm_backward_ref, layernorm_forward, layernorm_forward_ref)
from microgpt.kernels.linear import BLAS_MIN_WORK, linear_backward, linear_backward_ref, linear_forward, linear_forward_ref
from microgpt.kernels.relu import relu_backward, relu_backward_ref, relu_forward, relu_forward_ref
from microgpt.kernels.rmsnorm import rmsnorm_backward, rmsnorm_backward_ref, rmsnorm_forward, rmsnorm_forward_ref
from microgpt.kernels.scalenorm import (
    scalenorm_backward, scalenorm_backward_ref, scalenorm_forward, scalenorm_forward_ref)
from microgpt.kernels.swiglu import swiglu_backward, swiglu_backward_ref, swiglu_forward, swiglu_forward_ref
