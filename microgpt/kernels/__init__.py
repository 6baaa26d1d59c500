"""The GPT's layers as compiled kernels: one `*_forward` / `*_backward` pair per layer, one module each.

Shape legend (every kernel names its arrays with these letters):

    N   tokens in the packed batch: the sequences laid end to end, no padding
    T   the longest sequence a kernel may see (block_size): the attention window
    C   n_embd, width of the residual stream
    NH  n_head, attention heads;  HS = C // NH, the head size
    H   the MLP's hidden width (4C)
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
    rmsnorm        x / sqrt(mean(x²) + eps)
    linear         x·Wᵀ
    relu           max(0, x)
    attention      causal multi-head attention over a window of key rows
    cross_entropy  softmax cross-entropy against the next tokens
    adam           the AdamW update of the flat parameter vector

Numba policy (docs/kernels.md explains each choice with its measurements)
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
    attention_backward, attention_backward_ref, attention_forward, attention_forward_ref)
from microgpt.kernels.blas import gemm
from microgpt.kernels.cross_entropy import (
    cross_entropy_backward, cross_entropy_backward_ref, cross_entropy_forward, cross_entropy_forward_ref)
from microgpt.kernels.embedding import (
    embedding_backward, embedding_backward_ref, embedding_forward, embedding_forward_ref)
from microgpt.kernels.linear import BLAS_MIN_WORK, linear_backward, linear_backward_ref, linear_forward, linear_forward_ref
from microgpt.kernels.relu import relu_backward, relu_backward_ref, relu_forward, relu_forward_ref
from microgpt.kernels.rmsnorm import rmsnorm_backward, rmsnorm_backward_ref, rmsnorm_forward, rmsnorm_forward_ref
