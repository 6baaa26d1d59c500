"""A scalar autograd engine: `Value`, its operations, and backward.

Every number in the forward pass is a `Value`. Each operation makes a new
`Value` that remembers

    _children     the Values it was computed from
    _local_grads  d(self)/d(child) for each child, worked out at forward time
    _op           the name of the operation, for reprs and drawings

so one generic loop can run the chain rule backwards:

    child.grad += local_grad * node.grad      for every edge, in reverse topological order

Besides the atomic ops (+, *, **, exp, log, relu, tanh, sigmoid) there are two n-ary
nodes, `Value.sum(xs)` and `Value.dot(ws, xs)`, that stand for a whole sum or
dot product. A linear layer then costs one node per output instead of 2·n_in,
which is where most of the engine's speed comes from.
"""

import contextlib
import itertools
import math
from operator import attrgetter, mul

# The module path of the code that is creating Values right now ("layer0.attn"),
# set with `name_scope(...)`. Each Value records it so drawings can group nodes.
_scope_stack = [""]

# Every Value gets the next number when it is made. Children always exist before
# their parents, so sorting nodes by this number puts each after its children.
_creation_counter = itertools.count()


def current_scope():
    """The scope new Values get right now, e.g. "layer0.attn" ("" outside any scope)."""
    return _scope_stack[-1]


@contextlib.contextmanager
def name_scope(name):
    """Record `name` (nested with dots) as the scope of every Value created inside.

        with name_scope("layer0"), name_scope("attn"):
            ...   # new Values get .scope == "layer0.attn"
    """
    outer = _scope_stack[-1]
    _scope_stack.append(f"{outer}.{name}" if outer else name)
    try:
        yield
    finally:
        _scope_stack.pop()


def zero_interior_grads(nodes):
    """Set .grad = 0 on every node that was computed (has children); leaves keep theirs."""
    for node in nodes:
        if node._children:
            node.grad = 0.0


class Value:
    """A scalar that remembers how it was computed, so it can be differentiated."""

    __slots__ = ("data", "grad", "_children", "_local_grads", "_op", "label", "scope", "_id")

    def __init__(self, data, children=(), local_grads=(), op="", label=""):
        self.data = float(data)
        self.grad = 0.0
        self._children = children          # tuple of Values
        self._local_grads = local_grads    # tuple of floats, d(self)/d(child)
        self._op = op                      # "" for a leaf
        self.label = label                 # e.g. "layer0.attn_wq[3,5]"; "" if unnamed
        self.scope = _scope_stack[-1]      # e.g. "layer0.attn.head2"
        self._id = next(_creation_counter) # creation order, a topological order

    # ------------------------------------------------------------- atomic ops

    def __add__(self, other):
        other = other if isinstance(other, Value) else Value(other)
        return Value(self.data + other.data, (self, other), (1.0, 1.0), "+")

    def __mul__(self, other):
        other = other if isinstance(other, Value) else Value(other)
        return Value(self.data * other.data, (self, other), (other.data, self.data), "*")

    def __pow__(self, exponent):
        """x ** k for a plain number k; d/dx = k · x^(k-1)."""
        if isinstance(exponent, Value):
            raise TypeError("Value ** Value is not supported: the exponent must be a plain number")
        try:
            out = self.data ** exponent
            local = exponent * self.data ** (exponent - 1)
        except ZeroDivisionError:
            raise ArithmeticError(f"pow: {self.data!r} ** {exponent!r} is undefined") from None
        if isinstance(out, complex):
            raise ArithmeticError(f"pow: {self.data!r} ** {exponent!r} is not a real number")
        return Value(out, (self,), (local,), f"**{exponent:g}")

    def exp(self):
        """e^x; d/dx = e^x."""
        try:
            out = math.exp(self.data)
        except OverflowError:
            raise ArithmeticError(f"exp: overflow, exp({self.data!r}) is too large for a float") from None
        return Value(out, (self,), (out,), "exp")

    def log(self):
        """ln x for x > 0; d/dx = 1/x."""
        if self.data <= 0.0:
            raise ArithmeticError(f"log: input must be positive, got {self.data!r}")
        return Value(math.log(self.data), (self,), (1.0 / self.data,), "log")

    def relu(self):
        """max(0, x); d/dx = 1 where x > 0, else 0."""
        return Value(max(0.0, self.data), (self,), (float(self.data > 0.0),), "relu")

    def tanh(self):
        """tanh x; d/dx = 1 - tanh² x."""
        t = math.tanh(self.data)
        return Value(t, (self,), (1.0 - t * t,), "tanh")

    def sigmoid(self):
        """σ(x) = 1 / (1 + e^-x); d/dx = σ(x)·(1 - σ(x))."""
        if self.data >= 0.0:   # the two forms keep e^(-|x|) ≤ 1, so neither overflows
            s = 1.0 / (1.0 + math.exp(-self.data))
        else:
            e = math.exp(self.data)
            s = e / (1.0 + e)
        return Value(s, (self,), (s * (1.0 - s),), "sigmoid")

    # ------------------------------------------------------------- n-ary ops

    @staticmethod
    def sum(xs):
        """One node for x_0 + x_1 + ... + x_{n-1}; d/dx_i = 1."""
        xs = tuple(xs)
        return Value(sum(x.data for x in xs), xs, (1.0,) * len(xs), "sum")

    @staticmethod
    def dot(ws, xs):
        """One node for Σ_i w_i · x_i; d/dw_i = x_i and d/dx_i = w_i.

        `ws` and `xs` are equally long sequences of Values. A Value may appear
        in both (dot(x, x) is Σ x_i²): its two edges simply both accumulate.
        """
        ws, xs = tuple(ws), tuple(xs)
        if len(ws) != len(xs):
            raise ValueError(f"dot: lengths differ ({len(ws)} and {len(xs)})")
        w_data = [w.data for w in ws]
        x_data = [x.data for x in xs]
        return Value(sum(map(mul, w_data, x_data)), ws + xs, (*x_data, *w_data), "dot")

    # ------------------------------------------------ ops built from the above

    def __neg__(self):          # -self
        return self * -1.0

    def __radd__(self, other):  # other + self
        return self + other

    def __sub__(self, other):   # self - other
        return self + (-other)

    def __rsub__(self, other):  # other - self
        return other + (-self)

    def __rmul__(self, other):  # other * self
        return self * other

    def __truediv__(self, other):   # self / other = self * other**-1
        other = other if isinstance(other, Value) else Value(other)
        return self * other ** -1

    def __rtruediv__(self, other):  # other / self
        return other * self ** -1

    # ---------------------------------------------------------------- backward

    def topological_order(self):
        """Every node this Value depends on (itself included), each after its children.

        First collect the reachable nodes with an explicit stack (no recursion, so a
        chain of a million nodes is fine); then sort them by creation number: a
        node's children are always made before it, so that order is topological.
        """
        reachable = {self}
        stack = [self]
        while stack:
            for child in stack.pop()._children:
                if child not in reachable:
                    reachable.add(child)
                    stack.append(child)
        return sorted(reachable, key=attrgetter("_id"))

    def backward_steps(self):
        """Run backward one node at a time: yield each node when its gradient is final.

        The node is yielded just before its gradient is passed to its children, so in
        a debugger or a loop you can inspect `node.grad`, `node._children` and
        `node._local_grads` and see exactly what is about to flow. `backward()` is
        this generator run to the end.

        Gradients of interior nodes are recomputed from zero on every call; gradients
        of leaves (nodes with no children, such as parameters) accumulate, so two
        losses backpropagated one after the other add up in the parameters. Zero the
        leaves between optimisation steps.
        """
        order = self.topological_order()
        zero_interior_grads(order)
        self.grad = 1.0
        for node in reversed(order):
            yield node
            grad = node.grad
            for child, local_grad in zip(node._children, node._local_grads):
                child.grad += local_grad * grad

    def backward(self):
        """Fill in d(self)/d(node) as `.grad` for every node self depends on."""
        for _ in self.backward_steps():
            pass

    # ------------------------------------------------------------------ display

    @property
    def name(self):
        """The label if there is one, else the op (``"dot"``), else ``"leaf"``."""
        return self.label or self._op or "leaf"

    def __repr__(self):
        """What a node is at a glance, e.g. Value(dot in layer0.attn.head2, data=0.31, grad=-0.012, children=8)."""
        where = f" in {self.scope}" if self.scope else ""
        kids = f", children={len(self._children)}" if self._children else ""
        return f"Value({self.name}{where}, data={self.data:.6g}, grad={self.grad:.6g}{kids})"


def creation_mark():
    """A number above the creation number of every Value made so far, and below every one made later.

    Marks where a stretch of computation begins (a position of a document, say), so
    that a drawing can tell the Values made before it from those made after.
    """
    return next(_creation_counter)
