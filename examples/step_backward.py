"""Step through one backward pass of the GPT, node by node. Made to be run under pdb:

    python -m pdb examples/step_backward.py          # the session in docs/05-debugging-backward.md
    python examples/step_backward.py                 # or just run it and read what it prints
    python examples/step_backward.py --poison        # a NaN weight: find the first bad gradient

The model is the default GPT (fresh weights, seed 42) on the document "emma".
`Value.backward_steps()` yields each node when its gradient is final, just before
it is passed on to the node's children; `backward()` is that loop run to the end.
"""

import math
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from microgpt.viz.subjects import fresh_model  # noqa: E402


def build_loss(poison=False):
    """The loss of "emma" under the default GPT; with poison, one weight of wte is NaN."""
    model, tokenizer = fresh_model()
    if poison:
        model.w["wte"][tokenizer.stoi["m"]][0].data = math.nan
    return model.loss([tokenizer.document("emma", model.config.block_size)])


def first(loss, wanted):
    """Run backward node by node; stop at the first node for which wanted(node) is true."""
    for node in loss.backward_steps():
        if wanted(node):
            return node
    return None


def is_named(prefix):
    """A test for first(): is this node a parameter whose label starts with prefix?"""
    return lambda node: node.label.startswith(prefix)


def has_bad_grad(node):
    """A test for first(): is this node's gradient NaN or infinite?"""
    return not math.isfinite(node.grad)


def first_bad_data(loss):
    """The earliest-made node whose data is NaN or infinite: where the forward pass went wrong."""
    return next((node for node in loss.topological_order() if not math.isfinite(node.data)), None)


def main():
    poison = "--poison" in sys.argv[1:]
    loss = build_loss(poison)
    print(f"loss {loss.data:.4f}, {len(loss.topological_order()):,} nodes to visit")
    if poison:
        print("first non-finite gradient:", first(loss, has_bad_grad))
        print("first non-finite value of the forward pass:", first_bad_data(loss))
        return
    node = first(loss, is_named("layer0.attn_wq"))
    print("first layer0.attn_wq weight reached:", node)


if __name__ == "__main__":
    main()
