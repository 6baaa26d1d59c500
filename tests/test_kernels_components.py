"""The kernels of the configurable GPT's parts: norms with weights, GELU, SwiGLU, biases, dropout, local attention.

Each case is a `Case` (tests/kernel_cases.py); test_kernels.py holds these with the
others to their NumPy references and to central differences (kernel_cases.fd_check);
here, float32 against float64. For each backward a deliberately wrong variant is shown to fail the
finite-difference check, so a passing check means something.
"""

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from microgpt import kernels as K
from tests.kernel_cases import C, DOC_STARTS, NH, N, POSITIONS, Case, assert_close, fd_check, upstream

rng = np.random.default_rng(4321)
T = 5                                   # the longest document of DOC_STARTS
FLOAT32_RTOL = 2e-5                     # as the float32 model's tests: ε = 6e-8 times a few dozen terms


# ------------------------------------------------------------------ norms

def rmsnorm_gain_case():
    def forward(x, g):
        out, rstd = np.empty_like(x), np.empty(len(x), x.dtype)
        K.rmsnorm_forward(out, rstd, x, g)
        return out

    def backward(dout, x, g):
        out, rstd, dx, dg = np.empty_like(x), np.empty(len(x), x.dtype), np.zeros_like(x), np.zeros_like(g)
        K.rmsnorm_forward(out, rstd, x, g)
        K.rmsnorm_backward(dx, dout, out, rstd, x, g, dg)
        return dict(x=dx, g=dg)

    def backward_ref(dout, x, g):
        out, rstd = K.rmsnorm_forward_ref(x, g)
        return dict(zip("xg", K.rmsnorm_backward_ref(dout, out, rstd, x, g)))

    x = rng.normal(size=(N, C))
    x[3] = 0.0                          # a zero row: rstd = 1/sqrt(eps)
    return Case(dict(x=x, g=1 + 0.5 * rng.normal(size=C)), forward,
                lambda x, g: K.rmsnorm_forward_ref(x, g)[0], backward, backward_ref)


def layernorm_case(weights):
    """LayerNorm with gain and bias (weights) or without (the bare normalisation)."""
    def forward(x, g=None, b=None):
        out, mean, rstd = np.empty_like(x), np.empty(len(x), x.dtype), np.empty(len(x), x.dtype)
        K.layernorm_forward(out, mean, rstd, x, g, b)
        return out

    def backward(dout, x, g=None, b=None):
        out, mean, rstd, dx = np.empty_like(x), np.empty(len(x), x.dtype), np.empty(len(x), x.dtype), np.zeros_like(x)
        K.layernorm_forward(out, mean, rstd, x, g, b)
        if g is None:
            K.layernorm_backward(dx, dout, x, mean, rstd)
            return dict(x=dx)
        dg, db = np.zeros_like(g), np.zeros_like(b)
        K.layernorm_backward(dx, dout, x, mean, rstd, g, dg, db)
        return dict(x=dx, g=dg, b=db)

    def backward_ref(dout, x, g=None, b=None):
        _, mean, rstd = K.layernorm_forward_ref(x, g, b)
        grads = dict(zip("xgb", K.layernorm_backward_ref(dout, x, mean, rstd, g)))
        return grads if g is not None else dict(x=grads["x"])

    x = rng.normal(size=(N, C)) + 2.0
    x[3] = 0.7                          # a constant row: variance 0, rstd = 1/sqrt(eps)
    inputs = dict(x=x, g=1 + 0.5 * rng.normal(size=C), b=rng.normal(size=C)) if weights else dict(x=x)
    return Case(inputs, forward, lambda **ins: K.layernorm_forward_ref(**ins)[0], backward, backward_ref)


def scalenorm_case(learned):
    """ScaleNorm with a learned scalar s (shape (1,)) or the constant √C."""
    def forward(x, s=None):
        out, rnorm = np.empty_like(x), np.empty(len(x), x.dtype)
        K.scalenorm_forward(out, rnorm, x, s)
        return out

    def backward(dout, x, s=None):
        out, rnorm, dx = np.empty_like(x), np.empty(len(x), x.dtype), np.zeros_like(x)
        K.scalenorm_forward(out, rnorm, x, s)
        if s is None:
            K.scalenorm_backward(dx, dout, x, rnorm)
            return dict(x=dx)
        ds = np.zeros_like(s)
        K.scalenorm_backward(dx, dout, x, rnorm, s, ds)
        return dict(x=dx, s=ds)

    def backward_ref(dout, x, s=None):
        dx, ds = K.scalenorm_backward_ref(dout, x, K.scalenorm_forward_ref(x, s)[1], s)
        return dict(x=dx, s=ds) if s is not None else dict(x=dx)

    x = rng.normal(size=(N, C))
    x[3] = 0.0
    inputs = dict(x=x, s=np.array([1.7])) if learned else dict(x=x)
    return Case(inputs, forward, lambda **ins: K.scalenorm_forward_ref(**ins)[0], backward, backward_ref)


# ------------------------------------------------------------------ elementwise and bias

def elementwise_case(forward_kernel, backward_kernel, forward_ref, backward_ref, x):
    """A layer out = f(x) whose backward is backward_kernel(dx, dout, x)."""
    def forward(x):
        out = np.empty((len(x), forward_ref(x).shape[1]), x.dtype)
        forward_kernel(out, x)
        return out

    def backward(dout, x):
        dx = np.zeros_like(x)
        backward_kernel(dx, dout, x)
        return dict(x=dx)

    return Case(dict(x=x), forward, lambda x: forward_ref(x), backward, lambda dout, x: dict(x=backward_ref(dout, x)))


def bias_case():
    def forward(x, b):
        out = x.copy()
        K.bias_forward(out, b)
        return out

    def backward(dout, x, b):
        db = np.zeros_like(b)
        K.bias_backward(db, dout)
        return dict(x=dout.copy(), b=db)        # out = x + b: x's gradient is dout itself

    return Case(dict(x=rng.normal(size=(N, 3 * C)), b=rng.normal(size=3 * C)), forward, K.bias_forward_ref,
                backward, lambda dout, x, b: dict(x=dout, b=K.bias_backward_ref(dout)))


def random_mask(shape, p, seed):
    """Inverted-dropout factors: 0 with probability p, else 1/(1-p)."""
    keep = np.random.default_rng(seed).random(shape) >= p
    return keep / (1.0 - p)


RESIDUAL_MASK = random_mask((N, C), 0.3, 11)


def dropout_case():
    def forward(x):
        out = np.empty_like(x)
        K.dropout_forward(out, x, RESIDUAL_MASK.astype(x.dtype))
        return out

    def backward(dout, x):
        dx = np.zeros_like(x)
        K.dropout_backward(dx, dout, RESIDUAL_MASK.astype(x.dtype))
        return dict(x=dx)

    return Case(dict(x=rng.normal(size=(N, C))), forward, lambda x: K.dropout_forward_ref(x, RESIDUAL_MASK),
                backward, lambda dout, x: dict(x=K.dropout_backward_ref(dout, RESIDUAL_MASK)))


# ------------------------------------------------------------------ attention: window and mask

ATTENTION_MASK = random_mask((N, NH, T), 0.3, 12)


def attention_kernel_forward(q, k, v, window, mask):
    """out (N, C) and the cached weights (N, NH, T), through attention_forward over the whole batch."""
    out, att, kt = np.empty_like(q), np.zeros((N, NH, T), q.dtype), np.empty((C, N), q.dtype)
    K.attention_forward(out, att, kt, np.concatenate([q, k, v], axis=1), POSITIONS, 0, N, window,
                        K.NO_MASK if mask is None else mask)
    return out, att


def attention_kernel_backward(dout, q, k, v, window, mask):
    _, att = attention_kernel_forward(q, k, v, window, mask)
    dqkv, datt, vt = np.zeros((N, 3 * C), q.dtype), np.empty((N, NH, T), q.dtype), np.empty((C, N), q.dtype)
    K.attention_backward(dqkv, datt, vt, dout, att, np.concatenate([q, k, v], axis=1), POSITIONS, 0, N, window,
                         K.NO_MASK if mask is None else mask)
    return dict(q=dqkv[:, :C], k=dqkv[:, C:2 * C], v=dqkv[:, 2 * C:])


def attention_ref_backward(dout, q, k, v, window, mask):
    _, atts = K.attention_forward_ref(q, k, v, DOC_STARTS, NH, window, mask)
    return dict(zip("qkv", K.attention_backward_ref(dout, atts, q, k, v, DOC_STARTS, NH, mask)))


def attention_case(window, mask=None):
    return Case({name: rng.normal(size=(N, C)) for name in "qkv"},
                lambda q, k, v: attention_kernel_forward(q, k, v, window, mask)[0],
                lambda q, k, v: K.attention_forward_ref(q, k, v, DOC_STARTS, NH, window, mask)[0],
                lambda dout, q, k, v: attention_kernel_backward(dout, q, k, v, window, mask),
                lambda dout, q, k, v: attention_ref_backward(dout, q, k, v, window, mask))


COMPONENT_CASES = {      # test_kernels.py holds each to its reference and to finite differences
    "rmsnorm-gain": rmsnorm_gain_case(),
    "layernorm": layernorm_case(weights=False),
    "layernorm-gain-bias": layernorm_case(weights=True),
    "scalenorm": scalenorm_case(learned=False),
    "scalenorm-learned": scalenorm_case(learned=True),
    "gelu": elementwise_case(K.gelu_forward, K.gelu_backward, K.gelu_forward_ref, K.gelu_backward_ref,
                             3 * rng.normal(size=(N, 4 * C))),
    "swiglu": elementwise_case(K.swiglu_forward, K.swiglu_backward, K.swiglu_forward_ref, K.swiglu_backward_ref,
                               3 * rng.normal(size=(N, 2 * 4 * C))),
    "bias": bias_case(),
    "dropout": dropout_case(),
    "attention-window-1": attention_case(window=1),
    "attention-window-3": attention_case(window=3),
    "attention-dropout": attention_case(window=0, mask=ATTENTION_MASK),
    "attention-window-2-dropout": attention_case(window=2, mask=ATTENTION_MASK),
}


@pytest.mark.parametrize("name", COMPONENT_CASES)
def test_float32_matches_float64(name):
    """The same kernels on float32 arrays: output and gradients within FLOAT32_RTOL of float64."""
    case = COMPONENT_CASES[name]
    dout = upstream(case)
    inputs32 = {key: x.astype(np.float32) for key, x in case.inputs.items()}
    out32 = case.forward(**inputs32)
    assert out32.dtype == np.float32
    assert_close(out32, case.forward(**case.inputs), rtol=FLOAT32_RTOL)
    grads32, grads64 = case.backward(dout.astype(np.float32), **inputs32), case.backward(dout, **case.inputs)
    for key in grads64:
        assert grads32[key].dtype == np.float32
        assert_close(grads32[key], grads64[key], rtol=FLOAT32_RTOL)


def check_accumulates(backward, want):
    """backward(*grads) on gradient arrays that already hold 1.5 must leave want + 1.5 in them."""
    grads = [np.full(w.shape, 1.5) for w in want]
    backward(*grads)
    for got, w in zip(grads, want):
        assert_close(got, w + 1.5)


def test_backward_kernels_accumulate():
    """Every new backward adds onto what its gradient arrays already hold (the caller zeroes them once)."""
    x, dout, g, b = rng.normal(size=(N, C)), rng.normal(size=(N, C)), 1 + rng.normal(size=C), rng.normal(size=C)
    out, mean, rstd = np.empty_like(x), np.empty(N), np.empty(N)
    K.rmsnorm_forward(out, rstd, x, g)
    check_accumulates(lambda dx, dg: K.rmsnorm_backward(dx, dout, out, rstd, x, g, dg),
                      K.rmsnorm_backward_ref(dout, out, rstd, x, g))
    K.layernorm_forward(out, mean, rstd, x, g, b)
    check_accumulates(lambda dx, dg, db: K.layernorm_backward(dx, dout, x, mean, rstd, g, dg, db),
                      K.layernorm_backward_ref(dout, x, mean, rstd, g))
    s = np.array([2.5])
    K.scalenorm_forward(out, rstd, x, s)
    check_accumulates(lambda dx, ds: K.scalenorm_backward(dx, dout, x, rstd, s, ds),
                      K.scalenorm_backward_ref(dout, x, rstd, s))
    check_accumulates(lambda dx: K.gelu_backward(dx, dout, x), [K.gelu_backward_ref(dout, x)])
    u = rng.normal(size=(N, 2 * C))
    check_accumulates(lambda du: K.swiglu_backward(du, dout, u), [K.swiglu_backward_ref(dout, u)])
    check_accumulates(lambda db: K.bias_backward(db, dout), [K.bias_backward_ref(dout)])
    check_accumulates(lambda dx: K.dropout_backward(dx, dout, RESIDUAL_MASK), [K.dropout_backward_ref(dout, RESIDUAL_MASK)])
    q, k, v = (rng.normal(size=(N, C)) for _ in range(3))
    want = attention_ref_backward(dout, q, k, v, 2, ATTENTION_MASK)
    _, att = attention_kernel_forward(q, k, v, 2, ATTENTION_MASK)
    check_accumulates(lambda dqkv: K.attention_backward(
        dqkv, np.empty((N, NH, T)), np.empty((C, N)), dout, att, np.concatenate([q, k, v], axis=1), POSITIONS,
        0, N, 2, ATTENTION_MASK), [np.concatenate([want[key] for key in "qkv"], axis=1)])


# ------------------------------------------------------------------ exact special cases

def test_unit_weights_change_no_bits():
    """A norm with gain 1 (and bias 0) computes exactly what the norm without weights does."""
    x = rng.normal(size=(N, C))
    plain, gained, rstd = np.empty_like(x), np.empty_like(x), np.empty(N)
    K.rmsnorm_forward(plain, rstd, x)
    K.rmsnorm_forward(gained, rstd, x, np.ones(C))
    assert np.array_equal(plain, gained)
    mean = np.empty(N)
    K.layernorm_forward(plain, mean, rstd, x)
    K.layernorm_forward(gained, mean, rstd, x, np.ones(C), np.zeros(C))
    assert np.array_equal(plain, gained)
    K.scalenorm_forward(plain, rstd, x)
    K.scalenorm_forward(gained, rstd, x, np.array([np.sqrt(C)]))
    assert np.array_equal(plain, gained)


def test_norms_normalise():
    """Row statistics after each norm: RMS 1 (RMSNorm, and ScaleNorm with √C), mean 0 and variance 1 (LayerNorm)."""
    x = 3 * rng.normal(size=(N, C)) + 1.0
    out, stat, rstd = np.empty_like(x), np.empty(N), np.empty(N)
    K.rmsnorm_forward(out, rstd, x)
    assert np.abs(np.sqrt(np.mean(out ** 2, axis=1)) - 1).max() < 1e-5     # eps/(2·mean(x²)) off 1
    K.scalenorm_forward(out, rstd, x)
    assert np.abs(np.sqrt(np.mean(out ** 2, axis=1)) - 1).max() < 1e-6
    K.layernorm_forward(out, stat, rstd, x)
    assert np.abs(out.mean(axis=1)).max() < 1e-14
    assert np.abs(out.var(axis=1) - 1).max() < 1e-5
    assert_close(stat, x.mean(axis=1))


def test_gelu_and_swiglu_known_values():
    """gelu(0) = 0, gelu(x) → x for large x and → 0 for very negative x; swiglu(a, 0) = 0, swiglu(a, z) ≈ a·z for large z."""
    x = np.array([[0.0, 1.0, -1.0, 10.0, -10.0]])
    out = np.empty_like(x)
    K.gelu_forward(out, x)
    t = np.tanh(np.sqrt(2 / np.pi) * (1 + 0.044715))
    assert_close(out, np.array([[0.0, 0.5 * (1 + t), -0.5 * (1 - t), 10.0, 0.0]]), rtol=1e-15)
    u = np.array([[2.0, -3.0, 0.0, 30.0]])              # a = (2, -3), z = (0, 30)
    h = np.empty((1, 2))
    K.swiglu_forward(h, u)
    assert_close(h, np.array([[0.0, -90.0]]), rtol=1e-12)


def test_a_window_at_least_the_block_is_full_attention():
    """W ≥ the longest sequence changes nothing (the same bits as W = 0), forward and backward."""
    q, k, v = (rng.normal(size=(N, C)) for _ in range(3))
    dout = rng.normal(size=(N, C))
    full = attention_kernel_forward(q, k, v, 0, None)[0]
    full_grads = attention_kernel_backward(dout, q, k, v, 0, None)
    for window in (T, T + 3):
        assert np.array_equal(attention_kernel_forward(q, k, v, window, None)[0], full)
        grads = attention_kernel_backward(dout, q, k, v, window, None)
        for key in "qkv":
            assert np.array_equal(grads[key], full_grads[key])


def test_a_window_of_one_is_each_rows_own_value():
    """W = 1: each query sees only itself, so out = v and q, k get no gradient."""
    q, k, v = (rng.normal(size=(N, C)) for _ in range(3))
    dout = rng.normal(size=(N, C))
    out, att = attention_kernel_forward(q, k, v, 1, None)
    assert np.array_equal(out, v)
    assert np.all(att[np.arange(N), :, POSITIONS] == 1.0)
    grads = attention_kernel_backward(dout, q, k, v, 1, None)
    assert np.array_equal(grads["v"], dout)
    assert not grads["q"].any() and not grads["k"].any()


def test_a_window_hides_exactly_the_keys_before_it():
    """W = 2: row t's output moves with the value of row t - 1 and not with row t - 2's."""
    q, k, v = (rng.normal(size=(N, C)) for _ in range(3))
    before = attention_kernel_forward(q, k, v, 2, None)[0]
    v2 = v.copy()
    v2[5] += 1.0                                        # document 2 is rows 4..8: row 5 is position 1
    after = attention_kernel_forward(q, k, v2, 2, None)[0]
    changed = np.abs(after - before).max(axis=1) > 1e-3
    assert changed.tolist() == [False] * 5 + [True, True] + [False] * 2


def test_an_all_keep_mask_scales_full_attention():
    """Every factor 1/(1-p): the output and every gradient are the unmasked ones times 1/(1-p)."""
    q, k, v = (rng.normal(size=(N, C)) for _ in range(3))
    dout = rng.normal(size=(N, C))
    keep = np.full((N, NH, T), 1 / (1 - 0.25))
    assert_close(attention_kernel_forward(q, k, v, 0, keep)[0], attention_kernel_forward(q, k, v, 0, None)[0] / 0.75,
                 rtol=1e-15)
    scaled, plain = attention_kernel_backward(dout, q, k, v, 0, keep), attention_kernel_backward(dout, q, k, v, 0, None)
    for key in "qkv":
        assert_close(scaled[key], plain[key] / 0.75, rtol=1e-14)
    ones = np.ones((N, NH, T))
    assert np.array_equal(attention_kernel_forward(q, k, v, 3, ones)[0], attention_kernel_forward(q, k, v, 3, None)[0])


@pytest.mark.parametrize("window", [0, 1, 2, 3])
def test_decoding_row_by_row_equals_the_packed_batch(window):
    """Through the KV cache (one row a call, earlier rows left from earlier calls) the window gives the same rows."""
    q, k, v = (rng.normal(size=(N, C)) for _ in range(3))
    qkv = np.concatenate([q, k, v], axis=1)
    packed = attention_kernel_forward(q, k, v, window, None)[0]
    out, att, kt = np.empty_like(q), np.zeros((N, NH, T)), np.empty((C, N))
    for t in range(N):
        K.attention_forward(out, att, kt, qkv, POSITIONS, t, t + 1, window, K.NO_MASK)
    assert np.array_equal(out, packed)


def assert_close_to_terms(got, want, terms, rtol=1e-12):
    """|got - want| ≤ rtol · the size of the terms summed to make want (or of want, if larger).

    A norm's dx is r·(dx̂ - ...) and its terms can cancel (one channel, a constant row):
    the difference is then relative to the terms, not to the small result.
    """
    scale = max(np.abs(want).max(), terms)
    assert np.abs(got - want).max() <= rtol * scale, f"max |diff| {np.abs(got - want).max():.3e} vs {scale:.3e}"


@settings(max_examples=25, deadline=None)
@given(n=st.integers(1, 7), c=st.integers(1, 12), seed=st.integers(0, 2**32 - 1))
def test_norms_and_activations_match_references_for_any_shape(n, c, seed):
    """Kernel against reference, forward and backward, for random (n, c): one row, one channel included."""
    r = np.random.default_rng(seed)
    x, dout, g, b = r.normal(size=(n, c)), r.normal(size=(n, c)), r.normal(size=c), r.normal(size=c)
    out, mean, rstd = np.empty((n, c)), np.empty(n), np.empty(n)
    dx_terms = lambda rstd, gain: (rstd[:, None] * np.abs(dout * gain)).max()     # the size of r·dx̂

    dx, dg, db = np.zeros((n, c)), np.zeros(c), np.zeros(c)
    K.layernorm_forward(out, mean, rstd, x, g, b)
    want, mean_ref, rstd_ref = K.layernorm_forward_ref(x, g, b)
    assert_close_to_terms(out, want, np.abs(g).max() + np.abs(b).max())
    K.layernorm_backward(dx, dout, x, mean, rstd, g, dg, db)
    want_dx, want_dg, want_db = K.layernorm_backward_ref(dout, x, mean_ref, rstd_ref, g)
    assert_close_to_terms(dx, want_dx, dx_terms(rstd, g))
    assert_close_to_terms(dg, want_dg, np.abs(dout).sum(axis=0).max())
    assert_close_to_terms(db, want_db, np.abs(dout).sum(axis=0).max())

    dx, dg = np.zeros((n, c)), np.zeros(c)
    K.rmsnorm_forward(out, rstd, x, g)
    assert_close_to_terms(out, K.rmsnorm_forward_ref(x, g)[0], np.abs(g).max())
    K.rmsnorm_backward(dx, dout, out, rstd, x, g, dg)
    want_dx, want_dg = K.rmsnorm_backward_ref(dout, out, rstd, x, g)
    assert_close_to_terms(dx, want_dx, dx_terms(rstd, g))
    assert_close_to_terms(dg, want_dg, np.abs(dout).sum(axis=0).max())

    dx, ds = np.zeros((n, c)), np.zeros(1)
    K.scalenorm_forward(out, rstd, x, g[:1])
    assert_close_to_terms(out, K.scalenorm_forward_ref(x, g[:1])[0], abs(g[0]))
    K.scalenorm_backward(dx, dout, x, rstd, g[:1], ds)
    want_dx, want_ds = K.scalenorm_backward_ref(dout, x, rstd, g[:1])
    assert_close_to_terms(dx, want_dx, dx_terms(rstd, g[0]))
    assert_close_to_terms(ds, want_ds, np.abs(dout).sum())

    u, dh = r.normal(size=(n, 2 * c)), r.normal(size=(n, c))
    h, du = np.empty((n, c)), np.zeros((n, 2 * c))
    K.swiglu_forward(h, u)
    K.swiglu_backward(du, dh, u)
    assert_close(h, K.swiglu_forward_ref(u))
    assert_close_to_terms(du, K.swiglu_backward_ref(dh, u), 0.0)


# ------------------------------------------------------------------ the checks have teeth

def wrong_layernorm_backward(dout, x, g, b):
    """LayerNorm's backward without the mean term: as if μ were a constant."""
    _, mean, rstd = K.layernorm_forward_ref(x, g, b)
    xhat, dxhat = (x - mean[:, None]) * rstd[:, None], dout * g
    dx = rstd[:, None] * (dxhat - xhat * np.mean(dxhat * xhat, axis=1, keepdims=True))
    return dict(x=dx, g=np.sum(dout * xhat, axis=0), b=dout.sum(axis=0))


def wrong_rmsnorm_gain_backward(dout, x, g):
    """RMSNorm with a gain whose backward forgets to multiply dout by g before the normalisation."""
    out, rstd = K.rmsnorm_forward_ref(x)
    return dict(x=K.rmsnorm_backward_ref(dout, out, rstd), g=np.sum(dout * out, axis=0))


def wrong_scalenorm_backward(dout, x, s):
    """ScaleNorm's backward with a mean where the sum belongs (RMSNorm's formula, copied)."""
    rnorm = K.scalenorm_forward_ref(x, s)[1]
    z, dz = x * rnorm[:, None], s[0] * dout
    dx = rnorm[:, None] * (dz - z * np.mean(dz * z, axis=1, keepdims=True))
    return dict(x=dx, s=np.array([np.sum(dout * z)]))


def wrong_gelu_backward(dout, x):
    """GELU's derivative without the cubic term's contribution to du/dx."""
    k = np.sqrt(2 / np.pi)
    t = np.tanh(k * (x + 0.044715 * x ** 3))
    return dict(x=dout * (0.5 * (1 + t) + 0.5 * x * (1 - t ** 2) * k))


def wrong_swiglu_backward(dh, x):
    """SwiGLU with the gate's sigmoid derivative dropped: silu'(z) taken as σ(z)."""
    H = x.shape[1] // 2
    a, z = x[:, :H], x[:, H:]
    sig = 1 / (1 + np.exp(-z))
    return dict(x=np.concatenate([dh * z * sig, dh * a * sig], axis=1))


def wrong_bias_backward(dout, x, b):
    """The bias gradient not summed over rows: the mean instead."""
    return dict(x=dout, b=dout.mean(axis=0))


def wrong_dropout_backward(dout, x):
    """Dropout's backward that forgets the mask."""
    return dict(x=dout.copy())


def wrong_masked_attention_backward(window, mask):
    """Attention's backward that ignores the dropout mask (the unmasked gradient)."""
    return lambda dout, q, k, v: attention_ref_backward(dout, q, k, v, window, None)


def wrong_window_attention_backward(window):
    """Attention's backward over the full causal range, ignoring the window."""
    return lambda dout, q, k, v: attention_ref_backward(dout, q, k, v, 0, None)


WRONG = {
    "layernorm-gain-bias": wrong_layernorm_backward,
    "rmsnorm-gain": wrong_rmsnorm_gain_backward,
    "scalenorm-learned": wrong_scalenorm_backward,
    "gelu": wrong_gelu_backward,
    "swiglu": wrong_swiglu_backward,
    "bias": wrong_bias_backward,
    "dropout": wrong_dropout_backward,
    "attention-dropout": wrong_masked_attention_backward(0, ATTENTION_MASK),
    "attention-window-3": wrong_window_attention_backward(3),
}


@pytest.mark.parametrize("name", WRONG)
def test_a_wrong_backward_is_caught(name):
    """The wrong variant fails the finite-difference check the kernel passes, and differs from the reference."""
    case, wrong = COMPONENT_CASES[name], WRONG[name]
    assert fd_check(case, case.backward) <= 1.0
    assert fd_check(case, wrong) > 10.0
    dout = upstream(case)
    got, bad = case.backward(dout, **case.inputs), wrong(dout, **case.inputs)
    with pytest.raises(AssertionError):
        for key in got:
            assert_close(bad[key], got[key])


@settings(max_examples=25, deadline=None)
@given(lengths=st.lists(st.integers(1, 6), min_size=1, max_size=3), n_head=st.integers(1, 2),
       head_size=st.integers(1, 3), window=st.integers(0, 7), dropout=st.sampled_from([0.0, 0.5]),
       seed=st.integers(0, 2**32 - 1))
def test_attention_matches_reference_for_any_window(lengths, n_head, head_size, window, dropout, seed):
    """Packed documents of any lengths, any window, with or without a mask: kernel against reference."""
    r = np.random.default_rng(seed)
    doc_starts = np.concatenate([[0], np.cumsum(lengths)])
    positions = np.concatenate([np.arange(n) for n in lengths])
    n, c, t = doc_starts[-1], n_head * head_size, max(lengths)
    q, k, v, dout = (r.normal(size=(n, c)) for _ in range(4))
    mask = random_mask((n, n_head, t), dropout, seed) if dropout else None
    qkv, out, att, kt = np.concatenate([q, k, v], axis=1), np.empty((n, c)), np.zeros((n, n_head, t)), np.empty((c, n))
    K.attention_forward(out, att, kt, qkv, positions, 0, n, window, K.NO_MASK if mask is None else mask)
    want, atts = K.attention_forward_ref(q, k, v, doc_starts, n_head, window, mask)
    assert_close(out, want)
    dqkv = np.zeros((n, 3 * c))
    K.attention_backward(dqkv, np.empty((n, n_head, t)), np.empty((c, n)), dout, att, qkv, positions, 0, n, window,
                         K.NO_MASK if mask is None else mask)
    for got, w in zip(np.split(dqkv, 3, axis=1), K.attention_backward_ref(dout, atts, q, k, v, doc_starts, n_head, mask)):
        assert_close(got, w)
