"""The GPT's layers as compiled kernels: one `*_forward` / `*_backward` pair per layer.

Shape legend (every kernel below names its arrays with these letters):

    N   tokens in the packed batch: the documents laid end to end, no padding
    D   documents in the batch; doc_starts (D+1,) marks where each one begins and ends
    T   tokens in the longest document of the batch (the attention window)
    C   n_embd, width of the residual stream
    NH  n_head, attention heads;  HS = C // NH, the head size
    V   vocab_size
    B, T in the usual (B, T, C) layout would pad every document to T; here the
    batch is packed to (N, C) instead, so no work is spent on padding and no mask
    is needed: attention simply never looks across a document boundary.

Conventions (llm.c's): arguments go outputs first, then inputs, then sizes; a
forward caches what its backward needs (rstd, att, probs); gradients are named
d<array>; a backward *accumulates* into its gradient arrays with `+=`, so a
tensor used twice (the residual stream) sums both contributions, and the
caller zeroes the gradients once per step. Each backward's docstring gives the
derivative it implements.

Beside each kernel is a naive NumPy reference (`*_forward_ref`, `*_backward_ref`),
written for clarity, not speed, returning fresh arrays. The tests hold every
kernel to its reference and to finite differences; the benchmarks time both.

Numba policy
------------
- `@njit(cache=True)` on every kernel: compiled code is stored on disk beside
  this file (in __pycache__), so only the first run of a command compiles.
- float64 throughout and no `fastmath`: reassociating sums would break the
  1e-9 agreement with the scalar engine that the gradient check relies on.
- Numba's default error_model ("python") checks every float division for a zero
  divisor, and that branch stops a loop from vectorising; `adam_update` opts into
  error_model="numpy" (x/0 gives inf or nan, the bits are otherwise the same).
- No `parallel=True` / `prange`: no benchmark here has shown a gain from a
  second thread (the machine is shared), and large products go to BLAS (`@`).
- Arrays and sizes are passed as arguments, never read from module globals
  (Numba freezes globals at compile time); the two globals kernels read,
  RMSNORM_EPS (shared with the scalar engine) and BLAS_MIN_WORK, are constants.
- Kernels are defined at module level only; nothing is compiled at import
  (the first call compiles, or loads from the cache).
"""

import numpy as np
from numba import njit

from microgpt.scalar_gpt import RMSNORM_EPS

# Matrix products smaller than this many multiply-adds run as plain loops: for a
# 16x16 weight, calling BLAS costs more than the arithmetic (see docs/kernels.md).
BLAS_MIN_WORK = 32 * 32 * 32


# ---------------------------------------------------------------- embedding

@njit(cache=True)
def embedding_forward(x, tokens, positions, wte, wpe):
    """x[n] = wte[tokens[n]] + wpe[positions[n]].

    x (N, C) out;  tokens, positions (N,) int;  wte (V, C), wpe (block_size, C).
    """
    for n in range(x.shape[0]):
        for i in range(x.shape[1]):     # element by element: a row expression would allocate
            x[n, i] = wte[tokens[n], i] + wpe[positions[n], i]


@njit(cache=True)
def embedding_backward(dwte, dwpe, dx, tokens, positions):
    """dwte[tokens[n]] += dx[n];  dwpe[positions[n]] += dx[n].

    A lookup copies a row, so its gradient is the upstream gradient added back
    into that row; a token seen twice collects both.
    """
    for n in range(dx.shape[0]):
        for i in range(dx.shape[1]):
            dwte[tokens[n], i] += dx[n, i]
            dwpe[positions[n], i] += dx[n, i]


def embedding_forward_ref(tokens, positions, wte, wpe):
    return wte[tokens] + wpe[positions]


def embedding_backward_ref(dx, tokens, positions, wte_shape, wpe_shape):
    dwte, dwpe = np.zeros(wte_shape), np.zeros(wpe_shape)
    np.add.at(dwte, tokens, dx)
    np.add.at(dwpe, positions, dx)
    return dwte, dwpe


# ------------------------------------------------------------------ rmsnorm

@njit(cache=True)
def rmsnorm_forward(out, rstd, x):
    """out[n] = x[n] · rstd[n],  rstd[n] = 1 / sqrt(mean(x[n]²) + eps).

    out (N, C) out;  rstd (N,) out, cached for backward;  x (N, C).
    """
    N, C = x.shape
    for n in range(N):
        mean_square = 0.0
        for i in range(C):
            mean_square += x[n, i] * x[n, i]
        rstd[n] = (mean_square / C + RMSNORM_EPS) ** -0.5
        for i in range(C):
            out[n, i] = x[n, i] * rstd[n]


@njit(cache=True)
def rmsnorm_backward(dx, dout, out, rstd):
    """dx += rstd · (dout - out · mean(dout · out)), row by row.

    From y = x·r, r = (mean(x²) + eps)^(-1/2):  dy_i/dx_j = r·δ_ij - r³·x_i·x_j / C,
    so dx_j = r·dy_j - r·y_j · Σ_i dy_i·y_i / C. It needs only the cached output y
    and rstd, not x.   dx, dout, out (N, C);  rstd (N,).
    """
    N, C = out.shape
    for n in range(N):
        dot = 0.0
        for i in range(C):
            dot += dout[n, i] * out[n, i]
        dot /= C
        for i in range(C):
            dx[n, i] += rstd[n] * (dout[n, i] - out[n, i] * dot)


def rmsnorm_forward_ref(x):
    rstd = 1.0 / np.sqrt(np.mean(x * x, axis=1) + RMSNORM_EPS)
    return x * rstd[:, None], rstd


def rmsnorm_backward_ref(dout, out, rstd):
    return rstd[:, None] * (dout - out * np.mean(dout * out, axis=1, keepdims=True))


# ------------------------------------------------------------------- linear

@njit(cache=True)
def linear_forward(out, x, w):
    """out = x @ wᵀ, i.e. out[n] = W·x[n] for each token.

    out (N, OUT) out;  x (N, IN);  w (OUT, IN) as in nn.Linear.
    """
    N, IN = x.shape
    OUT = w.shape[0]
    if N * IN * OUT >= BLAS_MIN_WORK:
        out[:] = x @ w.T
        return
    # Loop over out[n, :] += x[n, i] · wᵀ[i, :]: the innermost loop then has no running sum
    # to wait on and runs along contiguous rows, so it vectorises even without fastmath.
    # Each out[n, o] is still summed over i in order 0..IN-1.
    wt = np.ascontiguousarray(w.T)      # (IN, OUT)
    for n in range(N):
        out[n] = 0.0
        for i in range(IN):
            xi = x[n, i]
            for o in range(OUT):
                out[n, o] += xi * wt[i, o]


@njit(cache=True)
def linear_backward(dx, dw, dout, x, w):
    """dx += dout @ w;  dw += doutᵀ @ x.

    out[n,o] = Σ_i w[o,i]·x[n,i], so ∂out[n,o]/∂x[n,i] = w[o,i] and
    ∂out[n,o]/∂w[o,i] = x[n,i]; the weight's gradient sums over all N tokens.
    dx (N, IN), dw (OUT, IN), dout (N, OUT), x (N, IN), w (OUT, IN).
    """
    N, IN = x.shape
    OUT = w.shape[0]
    if N * IN * OUT >= BLAS_MIN_WORK:
        dx += dout @ w
        dw += dout.T @ x
        return
    for n in range(N):
        for o in range(OUT):
            g = dout[n, o]
            for i in range(IN):     # innermost loops run along rows: contiguous, vectorisable
                dx[n, i] += g * w[o, i]
                dw[o, i] += g * x[n, i]


def linear_forward_ref(x, w):
    return x @ w.T


def linear_backward_ref(dout, x, w):
    return dout @ w, dout.T @ x


# --------------------------------------------------------------------- relu

@njit(cache=True)
def relu_forward(out, x):
    """out = max(0, x), elementwise.  out, x (N, H)."""
    for n in range(x.shape[0]):
        for j in range(x.shape[1]):
            out[n, j] = x[n, j] if x[n, j] > 0.0 else 0.0


@njit(cache=True)
def relu_backward(dx, dout, x):
    """dx += dout where x > 0 (the derivative of max(0, x) is 1 there, else 0)."""
    for n in range(x.shape[0]):
        for j in range(x.shape[1]):     # adding 0.0 rather than branching lets the loop vectorise
            dx[n, j] += dout[n, j] if x[n, j] > 0.0 else 0.0


def relu_forward_ref(x):
    return np.maximum(x, 0.0)


def relu_backward_ref(dout, x):
    return dout * (x > 0.0)


# ---------------------------------------------------------------- attention

@njit(cache=True)
def attend(out, att, q, k, v, row, start, width):
    """Every head of the query in `row`: softmax over keys start..start+width-1, then the weighted values.

        a_hj = softmax_j(q_h[row]·k_h[start+j] / √HS)  for j < width,   written to att[h, row, j]
        out_h[row] = Σ_j a_hj · v_h[start+j]
    out, q (R, C);  att (NH, R, ≥ width);  k, v (rows, C), head h in columns h·HS .. (h+1)·HS.
    Shared by the batched forward (row = t, keys of t's document) and the decoder
    (row = 0, keys from the cache).

    Why the loops run keys outside and heads inside: a head is only HS wide (4 at the
    default config), so a loop per head is mostly loop overhead; one pass over a key's
    row serves all heads, and their independent sums overlap in the CPU. Each head
    still sums its own HS products in order, so every score is bit-identical to a
    per-head loop. Arrays are indexed in place, not sliced: in a loop this hot, building
    a view costs as much as the arithmetic around it.
    """
    n_head = att.shape[0]
    hs = q.shape[1] // n_head
    scale = 1.0 / np.sqrt(hs)
    for j in range(width):                      # scores: one pass over each key's row
        for h in range(n_head):
            score = 0.0
            for i in range(h * hs, (h + 1) * hs):
                score += q[row, i] * k[start + j, i]
            att[h, row, j] = score * scale
    for h in range(n_head):                     # softmax of each head's scores
        top = -np.inf
        for j in range(width):
            top = max(top, att[h, row, j])
        total = 0.0
        for j in range(width):                  # subtracting the max only guards against overflow
            att[h, row, j] = np.exp(att[h, row, j] - top)
            total += att[h, row, j]
        inv_total = 1.0 / total
        for j in range(width):
            att[h, row, j] *= inv_total
    out[row, :] = 0.0
    for j in range(width):                      # rows of v in turn: contiguous reads
        for h in range(n_head):
            a = att[h, row, j]
            for i in range(h * hs, (h + 1) * hs):
                out[row, i] += a * v[start + j, i]


@njit(cache=True)
def attention_forward(out, att, q, k, v, doc_starts):
    """Causal multi-head self-attention inside each document of a packed batch.

    For each document, head h and position t:
        a[h,t,u] = softmax_u(q_h[t]·k_h[u] / √HS)  over u = start..t
        out_h[t] = Σ_u a[h,t,u] · v_h[u]
    out (N, C) out;  att (NH, N, T) out, row t holding the weights of keys start..t;
    q, k, v (N, C) with head h in columns h·HS .. (h+1)·HS;  doc_starts (D+1,).
    """
    for d in range(doc_starts.shape[0] - 1):
        start, end = doc_starts[d], doc_starts[d + 1]
        for t in range(start, end):
            attend(out, att, q, k, v, t, start, t - start + 1)


@njit(cache=True)
def attention_backward(dq, dk, dv, dout, att, q, k, v, doc_starts):
    """Gradients of causal attention, accumulated into dq, dk, dv (each (N, C)).

    With s[t,u] = q[t]·k[u]/√HS, a = softmax_u(s), out[t] = Σ_u a[t,u]·v[u], per head:
        dv[u]   += Σ_{t ≥ u} a[t,u] · dout[t]
        da[t,u]  = dout[t] · v[u]
        ds[t,u]  = a[t,u] · (da[t,u] - Σ_u' a[t,u']·da[t,u'])      (softmax backward)
        dq[t]   += Σ_{u ≤ t} ds[t,u] · k[u] / √HS
        dk[u]   += Σ_{t ≥ u} ds[t,u] · q[t] / √HS
    A key or value gets gradient from its own position *and every later query*;
    dropping the t > u terms is the classic bug the tests are built to catch.
    As in `attend`, keys run outside and heads inside; each head's sums keep their order.
    """
    n_head = att.shape[0]
    hs = q.shape[1] // n_head
    scale = 1.0 / np.sqrt(hs)
    da = np.empty((n_head, att.shape[2]))   # da[h, j] for the query in hand
    weighted = np.empty(n_head)             # Σ_u a[t,u]·da[t,u], per head
    for d in range(doc_starts.shape[0] - 1):
        start, end = doc_starts[d], doc_starts[d + 1]
        for t in range(start, end):
            weighted[:] = 0.0
            for j in range(t - start + 1):
                u = start + j
                for h in range(n_head):
                    dot = 0.0
                    for i in range(h * hs, (h + 1) * hs):
                        dot += dout[t, i] * v[u, i]
                        dv[u, i] += att[h, t, j] * dout[t, i]
                    da[h, j] = dot
                    weighted[h] += att[h, t, j] * dot
            for j in range(t - start + 1):
                u = start + j
                for h in range(n_head):
                    g = att[h, t, j] * (da[h, j] - weighted[h]) * scale
                    for i in range(h * hs, (h + 1) * hs):
                        dq[t, i] += g * k[u, i]
                        dk[u, i] += g * q[t, i]


def attention_forward_ref(q, k, v, doc_starts, n_head):
    """Returns out (N, C) and the weights as a list per document of (NH, T_d, T_d) arrays."""
    N, C = q.shape
    hs = C // n_head
    out, atts = np.zeros((N, C)), []
    for start, end in zip(doc_starts[:-1], doc_starts[1:]):
        qd, kd, vd = (a[start:end].reshape(end - start, n_head, hs).transpose(1, 0, 2) for a in (q, k, v))  # (NH, T_d, HS)
        scores = qd @ kd.transpose(0, 2, 1) / np.sqrt(hs)                        # (NH, T_d, T_d)
        scores = np.where(np.tril(np.ones((end - start, end - start), bool)), scores, -np.inf)
        a = np.exp(scores - scores.max(axis=2, keepdims=True))
        a /= a.sum(axis=2, keepdims=True)
        out[start:end] = (a @ vd).transpose(1, 0, 2).reshape(end - start, C)
        atts.append(a)
    return out, atts


def attention_backward_ref(dout, atts, q, k, v, doc_starts, n_head):
    """Returns dq, dk, dv (N, C) from the per-document weights of attention_forward_ref."""
    N, C = q.shape
    hs = C // n_head
    dq, dk, dv = np.zeros((N, C)), np.zeros((N, C)), np.zeros((N, C))
    for a, start, end in zip(atts, doc_starts[:-1], doc_starts[1:]):
        heads = lambda x: x[start:end].reshape(end - start, n_head, hs).transpose(1, 0, 2)  # (NH, T_d, HS)
        merge = lambda x: x.transpose(1, 0, 2).reshape(end - start, C)
        qd, kd, vd, dod = heads(q), heads(k), heads(v), heads(dout)
        da = dod @ vd.transpose(0, 2, 1)                                         # (NH, T_d, T_d)
        ds = a * (da - (a * da).sum(axis=2, keepdims=True)) / np.sqrt(hs)
        dq[start:end] = merge(ds @ kd)
        dk[start:end] = merge(ds.transpose(0, 2, 1) @ qd)
        dv[start:end] = merge(a.transpose(0, 2, 1) @ dod)
    return dq, dk, dv


# ------------------------------------------------------------ cross-entropy

@njit(cache=True)
def cross_entropy_forward(probs, logits, targets):
    """Mean over the N tokens of -log softmax(logits[n])[targets[n]]; returns the loss.

    probs (N, V) out, cached for backward;  logits (N, V);  targets (N,) int.
    Per token: loss = log Σ_j exp(l_j - max) - (l_target - max).
    """
    N, V = logits.shape
    total = 0.0
    for n in range(N):
        top = -np.inf                   # a loop, not logits[n].max(): a view per row costs more
        for j in range(V):
            top = max(top, logits[n, j])
        norm = 0.0
        for j in range(V):
            probs[n, j] = np.exp(logits[n, j] - top)
            norm += probs[n, j]
        inv_norm = 1.0 / norm
        for j in range(V):
            probs[n, j] *= inv_norm
        total += np.log(norm) - (logits[n, targets[n]] - top)
    return total / N


@njit(cache=True)
def cross_entropy_backward(dlogits, probs, targets):
    """dlogits[n] += (probs[n] - onehot(targets[n])) / N: softmax minus the truth, per token."""
    N, V = probs.shape
    for n in range(N):
        for j in range(V):
            dlogits[n, j] += probs[n, j] / N
        dlogits[n, targets[n]] -= 1.0 / N


def cross_entropy_forward_ref(logits, targets):
    shifted = logits - logits.max(axis=1, keepdims=True)
    log_probs = shifted - np.log(np.exp(shifted).sum(axis=1, keepdims=True))
    return -log_probs[np.arange(len(targets)), targets].mean(), np.exp(log_probs)


def cross_entropy_backward_ref(probs, targets):
    dlogits = probs.copy()
    dlogits[np.arange(len(targets)), targets] -= 1.0
    return dlogits / len(targets)


# -------------------------------------------------------------------- adam

@njit(cache=True, error_model="numpy")
def adam_update(theta, m, v, grads, decay_mask, lr, decay, beta1, beta2, correction1, correction2, eps):
    """One AdamW step in place, in one pass: `optim.Adam.step` (the reference) as a loop.

        θ ← θ·decay  where decay_mask (decay = 1 - lr·weight_decay; 1.0 for no decay)
        m ← β1·m + (1-β1)·g        v ← β2·v + (1-β2)·g·g
        θ ← θ - lr · (m / correction1) / (√(v / correction2) + eps),   correctioni = 1 - βi^t
    theta, m, v, grads (P,);  decay_mask (P,) bool. Returns whether theta, m and v
    are all finite afterwards. Each line rounds exactly as the NumPy one does, so the
    two agree bit for bit (multiplying by 1.0 where the mask is off changes no bits).

    error_model="numpy" is what lets this loop vectorise: by default Numba checks every
    float division for a zero divisor (to raise ZeroDivisionError, as Python would), and
    that branch keeps LLVM from using the 4-wide sqrt and divide. With it, x/0 gives inf
    or nan, as in NumPy; the results are otherwise the same (~4x faster at 4,192 weights).
    """
    finite = True
    for i in range(theta.shape[0]):
        theta[i] *= decay if decay_mask[i] else 1.0
        m[i] = m[i] * beta1 + (1.0 - beta1) * grads[i]
        v[i] = v[i] * beta2 + (1.0 - beta2) * grads[i] * grads[i]
        theta[i] -= lr * (m[i] / correction1) / (np.sqrt(v[i] / correction2) + eps)
        # x - x is 0 for every finite x and NaN for inf and NaN: one test covers all three arrays
        finite &= (theta[i] - theta[i]) + (m[i] - m[i]) + (v[i] - v[i]) == 0.0
    return finite
