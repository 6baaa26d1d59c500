"""Causal multi-head self-attention, optionally local (the last W positions) and with dropout on its weights."""

import numpy as np
from numba import njit


NO_MASK = np.empty((0, 0, 0))     # the `mask` argument when there is no dropout


@njit(cache=True, nogil=True)
def window_start(p, window):
    """The first key position a query at position p sees: max(0, p - W + 1), or 0 for W = 0."""
    return max(p - window + 1, 0) if window > 0 else 0


@njit(cache=True, nogil=True)
def add_scaled(y, r, c0, a, x, u, c1, n):
    """y[r, c0 + i] += a · x[u, c1 + i] for i < n: one head's row of y plus a times one of x.

    The masked path's inner loop, a function of its own so that the unmasked path keeps
    its types: a float32 weight times a float64 dropout factor is a float64, and a
    variable assigned both ways would be float64 in both branches, changing the bits
    of a float32 model without dropout.
    """
    c0, c1 = max(c0, 0), max(c1, 0)             # never negative: see the note on indices in attention_forward
    for i in range(n):
        y[r, c0 + i] += a * x[u, c1 + i]


@njit(cache=True, nogil=True)
def attention_forward(out, att, kt, qkv, positions, r0, r1, window, mask):
    """Causal multi-head attention of rows r0..r1, each over the rows of its own sequence up to itself.

    Row t is position p = positions[t] of its sequence, whose first row is t - p; key position j
    is row u_j = t - p + j. Row t attends to the positions j = lo .. p, lo = max(0, p - W + 1)
    for a window W = `window` > 0 (the last W positions, itself included), lo = 0 for W = 0
    (all of them). Per head h, with m the dropout mask (m = 1 when `mask` is empty):
        a[t,h,j] = softmax_j(q_h[t]·k_h[u_j] / √HS)       over j = lo .. p
        out_h[t] = Σ_j a[t,h,j] · m[t,h,j] · v_h[u_j]
    In a packed batch the rows of a sequence are all computed in the same call; in the
    decoder (r1 = r0 + 1) the earlier rows were left by earlier calls: the KV cache.

    out (R, C) out, rows r0..r1;  att (R, NH, ≥ T) out, rows r0..r1: a before the mask, at key
    positions lo .. p (the rest is not written);  qkv (R, 3C): q, k, v side by side, head h in
    columns h·HS .. (h+1)·HS of each;  positions (R,);  kt (C, R): the keys transposed, of which
    this call writes columns r0..r1 (the earlier ones must be there);  window: W, 0 for full;
    mask (R, NH, ≥ T): inverted-dropout factors in {0, 1/(1 - dropout)} by row, head and key position,
    or an empty (0, 0, 0) array for none (evaluation, decoding).
    Unlike the other kernels this one takes whole arrays and a row range, because a row
    reads other rows (its keys); all of them have contiguous rows, so the loops vectorise.

    Why kt: a score is a sum over the HS columns of a head, and without fastmath those
    additions wait on each other. Summing instead for all of a query's keys at once,
    att[t,h,:] += q[t,c] · kt[c,:] for each column c, the inner loop runs along
    contiguous rows with independent sums: it vectorises, and each score is still
    summed over c in order.

    Indices: every inner loop reads x[row, start + i] with i counting from 0 and start
    written max(start, 0). The max changes nothing, but it tells LLVM that the index is
    never negative, so Numba's check for negative indices (x[-1] is the last element,
    as in Python) disappears, and with it the branch that kept these loops from
    vectorising: 7-8x faster at block 64. So the loops over a window count j from 0 and
    index key position s0 + j, s0 = max(lo, 0); a loop `for j in range(lo, p + 1)` would
    bring the check back (about 2x slower).
    """
    C = out.shape[1]
    n_head = att.shape[1]
    head_dim = C // n_head
    scale = 1.0 / np.sqrt(head_dim)
    k0 = max(C, 0)                              # where the keys start in a row of qkv
    masked = mask.shape[0] > 0
    for u in range(r0, r1):
        for c in range(C):
            kt[c, u] = qkv[u, k0 + c]
    for t in range(r0, r1):
        lo = window_start(positions[t], window)
        width = positions[t] + 1 - lo           # the number of keys row t sees
        s0 = max(lo, 0)                         # the first one's position in the sequence (att's index)
        first = max(t - positions[t] + lo, 0)   # and its row
        for h in range(n_head):
            for j in range(width):
                att[t, h, s0 + j] = 0.0
            for c in range(h * head_dim, (h + 1) * head_dim):       # scores: q_h[t]·k_h[u] for every key at once
                qc = qkv[t, c]
                for j in range(width):
                    att[t, h, s0 + j] += qc * kt[c, first + j]
            top = -np.inf
            for j in range(width):
                att[t, h, s0 + j] *= scale
                top = max(top, att[t, h, s0 + j])
            total = 0.0
            for j in range(width):              # subtracting the max only guards against overflow
                att[t, h, s0 + j] = np.exp(att[t, h, s0 + j] - top)
                total += att[t, h, s0 + j]
            inv_total = 1.0 / total
            for j in range(width):
                att[t, h, s0 + j] *= inv_total
        for c in range(C):
            out[t, c] = 0.0
        for j in range(width):                  # rows of v in turn: contiguous reads
            u = first + j
            for h in range(n_head):
                a, o, v = att[t, h, s0 + j], max(h * head_dim, 0), max(2 * C + h * head_dim, 0)
                if masked:
                    add_scaled(out, t, o, a * mask[t, h, s0 + j], qkv, u, v, head_dim)
                else:
                    for i in range(head_dim):
                        out[t, o + i] += a * qkv[u, v + i]


@njit(cache=True, nogil=True)
def attention_backward(dqkv, datt, vt, dout, att, qkv, positions, r0, r1, window, mask):
    """Gradients of attention_forward over rows r0..r1, accumulated into dqkv (R, 3C).

    With s = q·k/√HS, a = softmax(s) over the window, out[t] = Σ_j a[t,j]·m[t,j]·v[u_j], per head:
        dv[u_j]  += a[t,j] · m[t,j] · dout[t]           (from every query whose window holds u_j)
        da[t,j]   = m[t,j] · dout[t] · v[u_j]
        ds[t,j]   = a[t,j] · (da[t,j] - Σ_j' a[t,j']·da[t,j'])      (softmax backward)
        dq[t]    += Σ_j ds[t,j] · k[u_j] / √HS
        dk[u_j]  += ds[t,j] · q[t] / √HS
    A key or value gets gradient from its own position *and every later query*;
    dropping the later terms is the classic bug the tests are built to catch.
    The sums over j run over the window j = lo .. p of the forward; window and mask are
    the forward's (m = 1 when mask is empty).
    Every key row of a query in r0..r1 must lie in r0..r1 (whole sequences).
    datt (R, NH, ≥ T) and vt (C, R) are scratch: da and ds, and the values transposed
    (so that da runs along a row, as the scores do in the forward).
    """
    C = dout.shape[1]
    n_head = att.shape[1]
    head_dim = C // n_head
    scale = 1.0 / np.sqrt(head_dim)
    v0 = max(2 * C, 0)                          # where the values start in a row (indices: see the forward)
    masked = mask.shape[0] > 0
    for u in range(r0, r1):
        for c in range(C):
            vt[c, u] = qkv[u, v0 + c]
    for t in range(r0, r1):
        lo = window_start(positions[t], window)
        width = positions[t] + 1 - lo           # keys seen, the first at position s0, row first
        s0 = max(lo, 0)
        first = max(t - positions[t] + lo, 0)
        for h in range(n_head):
            for j in range(width):
                datt[t, h, s0 + j] = 0.0
            for c in range(h * head_dim, (h + 1) * head_dim):       # da = dout_h[t]·v_h[u] for every key at once
                g = dout[t, c]
                for j in range(width):
                    datt[t, h, s0 + j] += g * vt[c, first + j]
            if masked:
                for j in range(width):
                    datt[t, h, s0 + j] *= mask[t, h, s0 + j]
            weighted = 0.0
            for j in range(width):
                weighted += att[t, h, s0 + j] * datt[t, h, s0 + j]
            for j in range(width):              # da becomes ds, with the 1/√HS folded in
                datt[t, h, s0 + j] = att[t, h, s0 + j] * (datt[t, h, s0 + j] - weighted) * scale
        for j in range(width):
            u = first + j
            for h in range(n_head):
                a, ds = att[t, h, s0 + j], datt[t, h, s0 + j]
                q, k, v = max(h * head_dim, 0), max(C + h * head_dim, 0), max(2 * C + h * head_dim, 0)   # head h's columns
                if masked:
                    for i in range(head_dim):
                        dqkv[t, q + i] += ds * qkv[u, k + i]
                        dqkv[u, k + i] += ds * qkv[t, q + i]
                    add_scaled(dqkv, u, v, a * mask[t, h, s0 + j], dout, t, q, head_dim)
                else:
                    for i in range(head_dim):
                        dqkv[t, q + i] += ds * qkv[u, k + i]
                        dqkv[u, k + i] += ds * qkv[t, q + i]
                        dqkv[u, v + i] += a * dout[t, q + i]


def visible_keys(length, window):
    """(T_d, T_d) booleans: query position p sees key position s when p - W < s ≤ p (W = 0: s ≤ p)."""
    p, s = np.arange(length)[:, None], np.arange(length)[None, :]
    return (s <= p) & ((s > p - window) if window > 0 else True)


def doc_mask(mask, start, end):
    """The dropout factors of one document as (NH, T_d, T_d), ones when there is no mask."""
    if mask is None:
        return 1.0
    return mask[start:end, :, :end - start].transpose(1, 0, 2)


def attention_forward_ref(q, k, v, doc_starts, n_head, window=0, mask=None):
    """Returns out (N, C) and the weights a (before the mask) as a list per document of (NH, T_d, T_d)."""
    N, C = q.shape
    head_dim = C // n_head
    out, atts = np.zeros((N, C)), []
    for start, end in zip(doc_starts[:-1], doc_starts[1:]):
        qd, kd, vd = (a[start:end].reshape(end - start, n_head, head_dim).transpose(1, 0, 2) for a in (q, k, v))  # (NH, T_d, HS)
        scores = qd @ kd.transpose(0, 2, 1) / np.sqrt(head_dim)                        # (NH, T_d, T_d)
        scores = np.where(visible_keys(end - start, window), scores, -np.inf)
        a = np.exp(scores - scores.max(axis=2, keepdims=True))
        a /= a.sum(axis=2, keepdims=True)
        out[start:end] = ((a * doc_mask(mask, start, end)) @ vd).transpose(1, 0, 2).reshape(end - start, C)
        atts.append(a)
    return out, atts


def attention_backward_ref(dout, atts, q, k, v, doc_starts, n_head, mask=None):
    """Returns dq, dk, dv (N, C) from the per-document weights of attention_forward_ref.

    The window needs no argument: a is 0 outside it, and so are da·a and ds there.
    """
    N, C = q.shape
    head_dim = C // n_head
    dq, dk, dv = np.zeros((N, C)), np.zeros((N, C)), np.zeros((N, C))
    for a, start, end in zip(atts, doc_starts[:-1], doc_starts[1:]):
        heads = lambda x: x[start:end].reshape(end - start, n_head, head_dim).transpose(1, 0, 2)  # (NH, T_d, HS)
        merge = lambda x: x.transpose(1, 0, 2).reshape(end - start, C)
        qd, kd, vd, dod = heads(q), heads(k), heads(v), heads(dout)
        m = doc_mask(mask, start, end)
        da = (dod @ vd.transpose(0, 2, 1)) * m                                   # (NH, T_d, T_d)
        ds = a * (da - (a * da).sum(axis=2, keepdims=True)) / np.sqrt(head_dim)
        dq[start:end] = merge(ds @ kd)
        dk[start:end] = merge(ds.transpose(0, 2, 1) @ qd)
        dv[start:end] = merge((a * m).transpose(0, 2, 1) @ dod)
    return dq, dk, dv
