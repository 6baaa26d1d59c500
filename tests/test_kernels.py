"""Each kernel pair on its own: against its NumPy reference and against finite differences.

One set of tests covers every kernel: each is a `Case` (tests/kernel_cases.py), the
base model's here, the optional layers' in test_kernels_components.py.
"""

import numpy as np
import pytest

from microgpt import kernels as K
from tests.kernel_cases import C, DOC_STARTS, NH, N, POSITIONS, V, Case, assert_close, fd_check, upstream
from tests.test_kernels_components import COMPONENT_CASES

rng = np.random.default_rng(1234)


def embedding_case():
    tokens, positions = np.array([0, 3, 3, 1, 4, 0, 2, 3, 3]), np.array([0, 0, 1, 2, 0, 1, 2, 3, 4])
    ins = dict(wte=rng.normal(size=(V, C)), wpe=rng.normal(size=(6, C)))

    def forward(wte, wpe):
        x = np.empty((N, C))
        K.embedding_forward(x, tokens, positions, wte, wpe)
        return x

    def backward(dx, wte, wpe):
        dwte, dwpe = np.zeros_like(wte), np.zeros_like(wpe)
        K.embedding_backward(dwte, dwpe, dx, tokens, positions)
        return dict(wte=dwte, wpe=dwpe)

    return Case(ins, forward, lambda wte, wpe: K.embedding_forward_ref(tokens, positions, wte, wpe), backward,
                lambda dx, wte, wpe: dict(zip(("wte", "wpe"), K.embedding_backward_ref(
                    dx, tokens, positions, wte.shape, wpe.shape))))


def rmsnorm_case():
    x = rng.normal(size=(N, C))
    x[3] = 0.0                           # a zero row: rstd = 1/sqrt(eps), still finite

    def forward(x):
        out, rstd = np.empty_like(x), np.empty(len(x))
        K.rmsnorm_forward(out, rstd, x)
        return out

    def backward(dout, x):
        out, rstd, dx = np.empty_like(x), np.empty(len(x)), np.zeros_like(x)
        K.rmsnorm_forward(out, rstd, x)
        K.rmsnorm_backward(dx, dout, out, rstd)
        return dict(x=dx)

    def backward_ref(dout, x):
        return dict(x=K.rmsnorm_backward_ref(dout, *K.rmsnorm_forward_ref(x)))

    return Case(dict(x=x), forward, lambda x: K.rmsnorm_forward_ref(x)[0], backward, backward_ref)


def linear_case(n, n_in, n_out):
    """n tokens through an (n_out, n_in) weight; large enough sizes take the BLAS path."""
    def forward(x, w):
        out = np.empty((len(x), len(w)))
        K.linear_forward(out, x, w)
        return out

    def backward(dout, x, w):
        dx, dw = np.zeros_like(x), np.zeros_like(w)
        K.linear_backward(dx, dw, dout, x, w)
        return dict(x=dx, w=dw)

    return Case(dict(x=rng.normal(size=(n, n_in)), w=rng.normal(size=(n_out, n_in))), forward,
                K.linear_forward_ref, backward,
                lambda dout, x, w: dict(zip("xw", K.linear_backward_ref(dout, x, w))))


def relu_case():
    x = rng.normal(size=(N, 4 * C))
    x[np.abs(x) < 1e-3] = 0.5                # keep finite differences away from the kink

    def forward(x):
        out = np.empty_like(x)
        K.relu_forward(out, x)
        return out

    def backward(dout, x):
        dx = np.zeros_like(x)
        K.relu_backward(dx, dout, x)
        return dict(x=dx)

    return Case(dict(x=x), forward, K.relu_forward_ref, backward,
                lambda dout, x: dict(x=K.relu_backward_ref(dout, x)))


def attention_forward_kernel(q, k, v):
    out, att, kt = np.empty_like(q), np.zeros((N, NH, 5)), np.empty((C, N))
    K.attention_forward(out, att, kt, np.concatenate([q, k, v], axis=1), POSITIONS, 0, N, 0, K.NO_MASK)
    return out, att


def attention_backward_kernel(dout, q, k, v, dqkv=None):
    """The gradients of q, k, v, added to dqkv (N, 3C) if given."""
    _, att = attention_forward_kernel(q, k, v)
    dqkv = np.zeros((N, 3 * C)) if dqkv is None else dqkv
    datt, vt = np.empty((N, NH, 5)), np.empty((C, N))
    K.attention_backward(dqkv, datt, vt, dout, att, np.concatenate([q, k, v], axis=1), POSITIONS, 0, N,
                         0, K.NO_MASK)
    return dict(q=dqkv[:, :C], k=dqkv[:, C:2 * C], v=dqkv[:, 2 * C:])


def attention_backward_ref(dout, q, k, v):
    _, atts = K.attention_forward_ref(q, k, v, DOC_STARTS, NH)
    return dict(zip("qkv", K.attention_backward_ref(dout, atts, q, k, v, DOC_STARTS, NH)))


def attention_case():
    return Case({name: rng.normal(size=(N, C)) for name in "qkv"},
                lambda q, k, v: attention_forward_kernel(q, k, v)[0],
                lambda q, k, v: K.attention_forward_ref(q, k, v, DOC_STARTS, NH)[0],
                attention_backward_kernel, attention_backward_ref)


def cross_entropy_case(equal_logits=False):
    targets = np.array([0, 4, 2, 2, 1, 3, 0, 4, 1])
    logits = np.zeros((N, V)) if equal_logits else 3 * rng.normal(size=(N, V))

    def forward(logits):        # the kernel sums over the tokens; the mean is the model's division
        return np.array([K.cross_entropy_forward(np.empty_like(logits), logits, targets) / N])

    def backward(dloss, logits):
        probs, dlogits = np.empty_like(logits), np.zeros_like(logits)
        K.cross_entropy_forward(probs, logits, targets)
        K.cross_entropy_backward(dlogits, probs, targets, dloss[0] / N)
        return dict(logits=dlogits)

    def backward_ref(dloss, logits):
        probs = K.cross_entropy_forward_ref(logits, targets)[1]
        return dict(logits=dloss[0] * K.cross_entropy_backward_ref(probs, targets))

    return Case(dict(logits=logits), forward,
                lambda logits: np.array([K.cross_entropy_forward_ref(logits, targets)[0]]), backward, backward_ref)


CASES = {
    "embedding": embedding_case(),
    "rmsnorm": rmsnorm_case(),
    "linear-loops": linear_case(N, C, 4 * C),
    "linear-blas": linear_case(40, 32, 64),
    "relu": relu_case(),
    "attention": attention_case(),
    "cross-entropy": cross_entropy_case(),
    "cross-entropy-equal-logits": cross_entropy_case(equal_logits=True),
    **COMPONENT_CASES,          # the optional layers: norms with weights, GELU, SwiGLU, bias, dropout, windows
}


@pytest.mark.parametrize("name", CASES)
def test_forward_matches_reference(name):
    case = CASES[name]
    assert_close(case.forward(**case.inputs), case.forward_ref(**case.inputs))


@pytest.mark.parametrize("name", CASES)
def test_backward_matches_reference(name):
    case = CASES[name]
    dout = upstream(case)
    got, want = case.backward(dout, **case.inputs), case.backward_ref(dout, **case.inputs)
    assert got.keys() == want.keys() == case.inputs.keys()
    for key in got:
        assert_close(got[key], want[key])


@pytest.mark.parametrize("name", CASES)
def test_backward_matches_finite_differences(name):
    assert fd_check(CASES[name], CASES[name].backward) <= 1.0


@pytest.mark.parametrize("name", CASES)
def test_reference_backward_matches_finite_differences(name):
    assert fd_check(CASES[name], CASES[name].backward_ref) <= 1.0


def test_backward_kernels_accumulate():
    """Gradients add onto what is already there (the residual stream relies on it)."""
    x, w, dout = rng.normal(size=(N, C)), rng.normal(size=(4 * C, C)), rng.normal(size=(N, 4 * C))
    dx, dw = np.ones_like(x), np.ones_like(w)
    K.linear_backward(dx, dw, dout, x, w)
    want_dx, want_dw = K.linear_backward_ref(dout, x, w)
    assert_close(dx, want_dx + 1.0)
    assert_close(dw, want_dw + 1.0)
    q, k, v = (rng.normal(size=(N, C)) for _ in range(3))
    dout = rng.normal(size=(N, C))
    got = attention_backward_kernel(dout, q, k, v, dqkv=np.full((N, 3 * C), 2.0))
    want = K.attention_backward_ref(dout, K.attention_forward_ref(q, k, v, DOC_STARTS, NH)[1], q, k, v, DOC_STARTS, NH)
    for name, w in zip("qkv", want):
        assert_close(got[name], w + 2.0)


def test_attention_is_causal_and_stays_inside_documents():
    """Changing a later token, or another document, leaves an earlier output unchanged."""
    q, k, v = (rng.normal(size=(N, C)) for _ in range(3))
    before = attention_forward_kernel(q, k, v)[0]
    k2, v2 = k.copy(), v.copy()
    k2[6], v2[6] = 10.0, -10.0                              # document 2 is rows 4..8
    after = attention_forward_kernel(q, k2, v2)[0]
    assert_close(after[:6], before[:6])
    assert np.abs(after[6:] - before[6:]).max() > 1e-3


def test_attention_weights_sum_to_one_over_the_causal_window():
    q, k, v = (rng.normal(size=(N, C)) for _ in range(3))
    _, att = attention_forward_kernel(q, k, v)
    for start, end in zip(DOC_STARTS[:-1], DOC_STARTS[1:]):
        for t in range(start, end):
            assert abs(att[t, :, :t - start + 1].sum(axis=1) - 1.0).max() < 1e-14


def dropped_kv_backward(dout, q, k, v):
    """The C port's bug: keys and values get gradient only from their own position's query."""
    grads = attention_backward_ref(dout, q, k, v)
    for start, end in zip(DOC_STARTS[:-1], DOC_STARTS[1:]):
        for u in range(start, end):
            # recompute dk[u], dv[u] from query t = u alone
            only_self = np.zeros_like(dout)
            only_self[u] = dout[u]
            own = attention_backward_ref(only_self, q, k, v)
            grads["k"][u], grads["v"][u] = own["k"][u], own["v"][u]
    return grads


def test_a_dropped_kv_term_is_caught():
    """The checks above can fail: the dropped-term bug breaks both the reference and the fd check."""
    case = CASES["attention"]
    assert fd_check(case, case.backward) <= 1.0
    assert fd_check(case, dropped_kv_backward) > 100.0
    dout = upstream(case)
    broken = dropped_kv_backward(dout, **case.inputs)
    with pytest.raises(AssertionError):
        assert_close(case.backward(dout, **case.inputs)["k"], broken["k"])


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("transpose_a, transpose_b", [(False, False), (False, True), (True, False), (True, True)])
def test_gemm_matches_numpy_on_views(dtype, transpose_a, transpose_b):
    """c ← op(a)·op(b) + β·c through BLAS, on blocks of rows and of columns of larger arrays (views)."""
    from numba import njit

    @njit
    def call(c, a, b, beta):
        K.gemm(c, a, b, transpose_a, transpose_b, beta)

    big = rng.normal(size=(20, 30)).astype(dtype)
    a = big[2:9, 3:8] if not transpose_a else big[3:8, 2:9]     # op(a) is (7, 5)
    b = big[10:15, 20:26] if not transpose_b else big[10:16, 20:25]     # op(b) is (5, 6)
    for beta in (0.0, 1.0):
        c_big = rng.normal(size=(9, 12)).astype(dtype)
        c, before = c_big[1:8, 4:10], c_big.copy()
        want = (a.T if transpose_a else a) @ (b.T if transpose_b else b) + beta * c
        call(c, a, b, beta)
        assert_close(c, want, rtol=1e-12 if dtype == np.float64 else 1e-5)
        outside = np.ones(c_big.shape, bool)
        outside[1:8, 4:10] = False
        assert np.array_equal(c_big[outside], before[outside])     # only the view was written
