"""Build a small expression out of Values, run backward, and print every gradient.

    python examples/value_basics.py

f(a, b) = relu(a·b + b²) / 2 - log(b), at a = 2, b = 3. By hand:
    a·b + b² = 15, relu passes it through, so f = 7.5 - ln 3
    ∂f/∂a = b / 2 = 1.5
    ∂f/∂b = (a + 2b) / 2 - 1/b = 4 - 1/3 = 3.6667
"""

import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from microgpt.engine import Value  # noqa: E402


def main():
    a = Value(2.0, label="a")
    b = Value(3.0, label="b")
    f = (a * b + b ** 2).relu() / 2 - b.log()
    f.label = "f"
    f.backward()

    print(f"f = {f.data:.4f}")
    print(f"df/da = {a.grad:.4f}   (by hand: b/2 = 1.5)")
    print(f"df/db = {b.grad:.4f}   (by hand: (a + 2b)/2 - 1/b = 3.6667)")

    # The same with the n-ary nodes: one node for a whole dot product.
    w = [Value(x, label=f"w{i}") for i, x in enumerate([0.5, -1.0, 2.0])]
    x = [Value(v, label=f"x{i}") for i, v in enumerate([1.0, 2.0, 3.0])]
    y = Value.dot(w, x).tanh()
    y.backward()
    print(f"\nneuron y = tanh(w·x) = {y.data:.4f}")
    for wi, xi in zip(w, x):
        print(f"  {wi.label}: grad {wi.grad:+.4f} = (1 - y²)·{xi.label}")

    # Every node the output depends on, children before parents:
    print("\nthe graph of f, in topological order:")
    for node in f.topological_order():
        print(" ", node)


if __name__ == "__main__":
    main()
