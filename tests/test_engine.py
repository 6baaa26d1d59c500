"""The Value engine: every op against central finite differences, graph properties, errors."""

import math

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from microgpt.engine import Value, name_scope

H = 1e-6  # central-difference step: truncation error ~H², rounding ~1e-16/H


def numeric_grads(f, xs, h=H):
    """d f / d x_i by central differences, for f mapping a list of floats to a float."""
    grads = []
    for i in range(len(xs)):
        up, down = list(xs), list(xs)
        up[i] += h
        down[i] -= h
        grads.append((f(up) - f(down)) / (2 * h))
    return grads


def check_grads(build, xs, rtol=1e-6, atol=1e-8):
    """Compare the engine's gradients of build(*Values) with central differences at xs."""
    leaves = [Value(x) for x in xs]
    out = build(*leaves)
    out.backward()
    expected = numeric_grads(lambda v: build(*[Value(x) for x in v]).data, xs)
    for leaf, want in zip(leaves, expected):
        assert leaf.grad == pytest.approx(want, rel=rtol, abs=atol)


# One line per op: (name, function of Values, a point where it is smooth)
OPS = [
    ("add", lambda a, b: a + b, [1.5, -2.0]),
    ("mul", lambda a, b: a * b, [1.5, -2.0]),
    ("sub", lambda a, b: a - b, [1.5, -2.0]),
    ("div", lambda a, b: a / b, [1.5, -2.0]),
    ("neg", lambda a: -a, [0.7]),
    ("pow2", lambda a: a ** 2, [-1.3]),
    ("pow-0.5", lambda a: a ** -0.5, [2.3]),
    ("pow3.5", lambda a: a ** 3.5, [1.1]),
    ("radd", lambda a: 3.0 + a, [0.4]),
    ("rsub", lambda a: 3.0 - a, [0.4]),
    ("rmul", lambda a: 3.0 * a, [0.4]),
    ("rdiv", lambda a: 3.0 / a, [0.4]),
    ("add-number", lambda a: a + 2, [0.4]),
    ("div-number", lambda a: a / 4, [0.4]),
    ("exp", lambda a: a.exp(), [0.3]),
    ("log", lambda a: a.log(), [0.3]),
    ("relu+", lambda a: a.relu(), [0.3]),
    ("relu-", lambda a: a.relu(), [-0.3]),
    ("tanh", lambda a: a.tanh(), [0.8]),
    ("sigmoid+", lambda a: a.sigmoid(), [0.8]),
    ("sigmoid-", lambda a: a.sigmoid(), [-2.5]),
    ("sum", lambda a, b, c: Value.sum([a, b, c, a]), [0.1, -0.2, 0.3]),
    ("dot", lambda a, b, c, d: Value.dot([a, b], [c, d]), [0.1, -0.2, 0.3, 1.7]),
    ("dot-self", lambda a, b: Value.dot([a, b], [a, b]), [0.6, -1.2]),
    ("builtin-sum", lambda a, b, c: sum([a, b, c]), [0.1, -0.2, 0.3]),
    ("composite", lambda a, b: (a * b + b.exp()).log() * a.tanh() - b / a, [0.9, 0.4]),
]


@pytest.mark.parametrize("name,build,xs", OPS, ids=[op[0] for op in OPS])
def test_op_gradient_matches_finite_differences(name, build, xs):
    check_grads(build, xs)


def test_sigmoid_saturates_without_overflow():
    """σ(±800): e^800 overflows a float, so each side must use the form with e^(-|x|)."""
    assert (Value(800.0).sigmoid().data, Value(-800.0).sigmoid().data) == (1.0, 0.0)
    assert Value(-800.0).sigmoid()._local_grads == (0.0,)


@pytest.mark.parametrize("name,build,xs", OPS, ids=[op[0] for op in OPS])
def test_op_value_matches_plain_floats(name, build, xs):
    """The forward value is what the same formula gives on floats (via math)."""
    plain = {"exp": math.exp, "log": math.log, "tanh": math.tanh}
    out = build(*[Value(x) for x in xs]).data
    if name in plain:
        assert out == pytest.approx(plain[name](xs[0]), rel=1e-15)
    elif name.startswith("relu"):
        assert out == max(0.0, xs[0])
    elif name.startswith("sigmoid"):
        assert out == pytest.approx(1.0 / (1.0 + math.exp(-xs[0])), rel=1e-15)
    else:
        assert math.isfinite(out)


def test_reused_node_accumulates():
    a = Value(3.0)
    b = a + a
    b.backward()
    assert a.grad == 2.0
    c = Value(2.0)
    d = c * c * c        # d = c³, dd/dc = 3c² = 12
    d.backward()
    assert c.grad == pytest.approx(12.0, rel=1e-15)


def test_backward_twice_accumulates_in_leaves_only():
    """Documented: interior grads are recomputed, leaf grads add up (like PyTorch)."""
    a, b = Value(2.0), Value(-3.0)
    mid = a * b
    out = mid.tanh() + a
    out.backward()
    first_a, first_b, first_mid = a.grad, b.grad, mid.grad
    out.backward()
    assert a.grad == pytest.approx(2 * first_a, rel=1e-15)
    assert b.grad == pytest.approx(2 * first_b, rel=1e-15)
    assert mid.grad == pytest.approx(first_mid, rel=1e-15)
    assert out.grad == 1.0


def test_backward_steps_matches_backward_and_orders_nodes():
    """Each node is yielded after every node that uses it, and the grads equal backward()'s."""
    xs = [Value(x) for x in (0.3, -0.7, 1.1)]
    out = (Value.dot(xs, xs).exp() * xs[0] + xs[1].tanh()).log()
    seen = set()
    for node in out.backward_steps():
        # every parent of node was yielded already: its grad is final
        for child in node._children:
            assert id(child) not in seen
        seen.add(id(node))
    stepped = [x.grad for x in xs]
    for x in xs:
        x.grad = 0.0
    out.backward()
    assert stepped == [x.grad for x in xs]


def test_topological_order_puts_children_first_and_is_complete():
    a, b = Value(1.0), Value(2.0)
    c = a * b
    d = c + a
    e = d * c
    order = e.topological_order()
    assert len(order) == len({id(n) for n in order})
    position = {id(n): i for i, n in enumerate(order)}
    for node in order:
        for child in node._children:
            assert position[id(child)] < position[id(node)]
    assert order[-1] is e
    assert {id(a), id(b), id(c), id(d)} <= set(position)


def test_million_node_chain_backpropagates_without_recursion():
    x = Value(1.0)
    y = x
    for _ in range(999_999):
        y = y.relu()          # one node per link: a chain of 1,000,000 nodes with x
    y.backward()
    assert x.grad == 1.0
    assert len(y.topological_order()) == 1_000_000


def test_log_of_non_positive_raises_naming_the_op():
    with pytest.raises(ArithmeticError, match="log"):
        Value(0.0).log()
    with pytest.raises(ArithmeticError, match="log"):
        Value(-2.0).log()


def test_exp_overflow_raises_naming_the_op():
    with pytest.raises(ArithmeticError, match="exp"):
        Value(1000.0).exp()


def test_pow_errors_are_clear():
    with pytest.raises(ArithmeticError, match="pow"):
        Value(0.0) ** -1
    with pytest.raises(ArithmeticError, match="pow"):
        Value(-2.0) ** 0.5
    with pytest.raises(TypeError, match="plain number"):
        Value(2.0) ** Value(2.0)


def test_dot_rejects_unequal_lengths():
    with pytest.raises(ValueError, match="lengths"):
        Value.dot([Value(1.0)], [Value(1.0), Value(2.0)])


def test_repr_and_name():
    w = Value(0.5, label="layer0.attn_wq[3,5]")
    y = w * 2
    y.backward()
    assert repr(w) == "Value(layer0.attn_wq[3,5], data=0.5, grad=2)"
    assert repr(y) == "Value(*, data=1, grad=1, children=2)"
    assert Value(1.0).name == "leaf"


def test_name_scope_nests_and_restores():
    with name_scope("layer0"):
        with name_scope("attn"):
            inner = Value(1.0) + 1
        outer = Value(1.0)
    after = Value(1.0)
    assert inner.scope == "layer0.attn"
    assert outer.scope == "layer0"
    assert after.scope == ""


# ------------------------------------------------------------- hypothesis properties

floats = st.floats(min_value=-2.0, max_value=2.0, allow_nan=False, allow_infinity=False)


@st.composite
def expressions(draw, num_inputs=3, max_ops=8):
    """A random expression program: a list of ops over earlier results, with smooth ops only."""
    program = []
    for _ in range(draw(st.integers(1, max_ops))):
        n = num_inputs + len(program)
        op = draw(st.sampled_from(["+", "*", "-", "tanh", "exp_small", "sum", "dot", "sq"]))
        args = draw(st.lists(st.integers(0, n - 1), min_size=4, max_size=4))
        program.append((op, args))
    return program


def run_program(program, inputs, fused=True):
    """Evaluate `program` on Values; with fused=False, sum/dot are chains of + and *."""
    vals = list(inputs)
    for op, (i, j, k, m) in program:
        a, b, c, d = vals[i], vals[j], vals[k], vals[m]
        if op == "+":
            out = a + b
        elif op == "*":
            out = a * b
        elif op == "-":
            out = a - b
        elif op == "tanh":
            out = a.tanh()
        elif op == "exp_small":
            out = (a.tanh() * 0.5).exp()   # bounded, so values stay moderate
        elif op == "sq":
            out = a ** 2
        elif op == "sum":
            out = Value.sum([a, b, c]) if fused else a + b + c
        else:  # dot
            out = Value.dot([a, b], [c, d]) if fused else a * c + b * d
        vals.append((out * 0.25).tanh() * 4.0)  # smooth, near identity for small values, |.| < 4
    return vals[-1]


@settings(max_examples=60, deadline=None)
@given(expressions(), st.lists(floats, min_size=3, max_size=3))
def test_random_expression_gradients_match_finite_differences(program, xs):
    leaves = [Value(x) for x in xs]
    run_program(program, leaves).backward()
    expected = numeric_grads(lambda v: run_program(program, [Value(x) for x in v]).data, xs)
    for leaf, want in zip(leaves, expected):
        assert leaf.grad == pytest.approx(want, rel=1e-5, abs=1e-6)


@settings(max_examples=60, deadline=None)
@given(expressions(), st.lists(floats, min_size=3, max_size=3))
def test_sum_and_dot_nodes_equal_chains_of_binary_ops(program, xs):
    fused_leaves = [Value(x) for x in xs]
    chain_leaves = [Value(x) for x in xs]
    fused = run_program(program, fused_leaves, fused=True)
    chain = run_program(program, chain_leaves, fused=False)
    assert fused.data == pytest.approx(chain.data, rel=1e-12, abs=1e-14)
    fused.backward()
    chain.backward()
    for f, c in zip(fused_leaves, chain_leaves):
        assert f.grad == pytest.approx(c.grad, rel=1e-12, abs=1e-14)


@settings(max_examples=40, deadline=None)
@given(floats, st.integers(1, 6))
def test_a_node_used_k_times_gets_k_contributions(x, k):
    a = Value(x)
    Value.sum([a] * k).backward()
    assert a.grad == k
    b = Value(x)
    (b * 1.0 + 0.0).backward()
    out = b
    for _ in range(k - 1):
        out = out + b
    b.grad = 0.0
    out.backward()
    assert b.grad == k
