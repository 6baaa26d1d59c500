"""Draw computation graphs as SVG: a small expression, then one token through the GPT.

    python examples/graph_svg.py            # writes expression.svg, gpt_token.svg, gpt_head0.svg

In Jupyter, leave `draw_graph(...)` as the last expression of a cell to see it inline.
"""

import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from microgpt.viz import subjects  # noqa: E402
from microgpt.viz.graph import draw_graph  # noqa: E402


def write_svg(graph, path):
    with open(path, "wb") as f:
        f.write(graph.pipe(format="svg"))
    print("wrote", path)


def main():
    # Small enough to draw whole: every value with its data and grad, an op node before it.
    write_svg(draw_graph(subjects.expression(), color_by_grad=True), "expression.svg")

    # One token of the default GPT is about 4,000 values: drawn folded, one box per scope.
    model, tokenizer = subjects.fresh_model()
    tokens = tokenizer.document("emma", model.config.block_size)
    loss = subjects.token_loss(model, tokens, pos=1)
    write_svg(draw_graph(loss), "gpt_token.svg")

    # The same graph with one attention head opened up node by node.
    write_svg(draw_graph(loss, expand=["layer0.attn.head0"], color_by_grad=True), "gpt_head0.svg")


if __name__ == "__main__":
    main()
