"""Causal multi-head self-attention over a window of key rows, its backward, and NumPy references."""

import numpy as np
from numba import njit


@njit(cache=True)
def attention_forward(out, att, kt, q, k, v, positions):
    """Causal attention of R query rows over the S rows of keys and values that end with them.

    Query i is key row t = i + S - R (the queries are the *last* R rows), and it attends
    to the positions[i] + 1 rows ending at its own, u = t - positions[i] .. t. Per head h:
        a[h,i,j] = softmax_j(q_h[i]·k_h[u_j] / √HS)        u_j = t - positions[i] + j
        out_h[i] = Σ_j a[h,i,j] · v_h[u_j]
    In a packed batch R = S and the window is the query's own document; in the decoder
    R = 1 and the earlier rows are the KV cache.

    out, q (R, C);  att (NH, R, ≥ T) out;  k, v (S, C), head h in columns h·HS .. (h+1)·HS;
    positions (R,);  kt (C, S): the keys transposed, of which this call writes the columns
    of its own rows, S-R .. S-1 (the earlier ones must be there: the decoder's cache).

    Why kt: a score is a sum over the HS columns of a head, and without fastmath those
    additions wait on each other. Summing for all of a query's keys at once instead,
    att[h,i,:] += q[i,c] · kt[c,:] for each column c, the inner loop runs along a
    contiguous row of kt with independent sums, so it vectorises; every score is still
    summed over c in order.
    """
    R, C = q.shape
    S = k.shape[0]
    n_head = att.shape[0]
    hs = C // n_head
    scale = 1.0 / np.sqrt(hs)
    for u in range(S - R, S):
        for c in range(C):
            kt[c, u] = k[u, c]
    for i in range(R):
        width = positions[i] + 1
        first = i + S - R - positions[i]        # the first key row of query i's window
        for h in range(n_head):
            for j in range(width):
                att[h, i, j] = 0.0
            for c in range(h * hs, (h + 1) * hs):       # scores: q_h[i]·k_h[u] for every key at once
                qc = q[i, c]
                for j in range(width):
                    att[h, i, j] += qc * kt[c, first + j]
            top = -np.inf
            for j in range(width):
                att[h, i, j] *= scale
                top = max(top, att[h, i, j])
            total = 0.0
            for j in range(width):              # subtracting the max only guards against overflow
                att[h, i, j] = np.exp(att[h, i, j] - top)
                total += att[h, i, j]
            inv_total = 1.0 / total
            for j in range(width):
                att[h, i, j] *= inv_total
        out[i, :] = 0.0
        for j in range(width):                  # rows of v in turn: contiguous reads
            for h in range(n_head):
                a = att[h, i, j]
                for c in range(h * hs, (h + 1) * hs):
                    out[i, c] += a * v[first + j, c]


@njit(cache=True)
def attention_backward(dq, dk, dv, datt, vt, dout, att, q, k, v, positions):
    """Gradients of attention_forward, accumulated into dq (R, C), dk and dv (S, C).

    With s = q·k/√HS, a = softmax(s), out[i] = Σ_j a[i,j]·v[u_j], per head:
        dv[u_j]  += a[i,j] · dout[i]                    (from every query whose window holds u_j)
        da[i,j]   = dout[i] · v[u_j]
        ds[i,j]   = a[i,j] · (da[i,j] - Σ_j' a[i,j']·da[i,j'])      (softmax backward)
        dq[i]    += Σ_j ds[i,j] · k[u_j] / √HS
        dk[u_j]  += ds[i,j] · q[i] / √HS
    A key or value gets gradient from its own position *and every later query*;
    dropping the later terms is the classic bug the tests are built to catch.
    datt (NH, R, ≥ T) and vt (C, S) are scratch: da and ds, and the values transposed
    (so that da runs along a row, as the scores do in the forward).
    """
    R, C = q.shape
    S = k.shape[0]
    n_head = att.shape[0]
    hs = C // n_head
    scale = 1.0 / np.sqrt(hs)
    for u in range(S):
        for c in range(C):
            vt[c, u] = v[u, c]
    for i in range(R):
        width = positions[i] + 1
        first = i + S - R - positions[i]
        for h in range(n_head):
            for j in range(width):
                datt[h, i, j] = 0.0
            for c in range(h * hs, (h + 1) * hs):       # da = dout_h[i]·v_h[u] for every key at once
                g = dout[i, c]
                for j in range(width):
                    datt[h, i, j] += g * vt[c, first + j]
            weighted = 0.0
            for j in range(width):
                weighted += att[h, i, j] * datt[h, i, j]
            for j in range(width):              # da becomes ds, with the 1/√HS folded in
                datt[h, i, j] = att[h, i, j] * (datt[h, i, j] - weighted) * scale
        for j in range(width):
            u = first + j
            for h in range(n_head):
                a, ds = att[h, i, j], datt[h, i, j]
                for c in range(h * hs, (h + 1) * hs):
                    dq[i, c] += ds * k[u, c]
                    dk[u, c] += ds * q[i, c]
                    dv[u, c] += a * dout[i, c]


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
