"""How long drawing a GPT token graph takes, at the default budget.

    python benchmarks/bench_graph.py

Builds one token's loss through the default model (fresh, seed 42; the "m" predicted
after BOS "e"), then times
draw_graph (Python: grouping, folding, DOT source) and Graphviz's `dot` laying it
out as SVG, for the folded overview and for a scope expanded to fill the budget.
`tests/test_graph.py` holds rendering to a few times the figures printed here.
"""

import os
import re
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from microgpt.bench import machine_description  # noqa: E402
from microgpt.viz import subjects  # noqa: E402
from microgpt.viz.graph import DEFAULT_BUDGET, draw_graph, reachable  # noqa: E402

FILL_THE_BUDGET = ["layer0.attn", "layer0.mlp"]  # more values than the budget: it is drawn full
CASES = {"overview (everything folded)": [],
         f"--expand {' '.join(FILL_THE_BUDGET)}": FILL_THE_BUDGET}


def time_render(root, expand, repeats=3):
    """(values drawn one by one, seconds in draw_graph, seconds in dot -Tsvg), the best of `repeats`."""
    draw, layout = [], []
    for _ in range(repeats):
        start = time.perf_counter()
        graph = draw_graph(root, expand=expand)
        middle = time.perf_counter()
        graph.pipe(format="svg")
        draw.append(middle - start)
        layout.append(time.perf_counter() - middle)
    drawn = len(re.findall(r"^\s*v\d+ \[", graph.source, flags=re.M))
    return drawn, min(draw), min(layout)


def main():
    model, tokenizer = subjects.fresh_model()
    root = subjects.token_loss(model, tokenizer.document("emma", model.config.block_size), pos=1)
    dot_version = subprocess.run(["dot", "-V"], capture_output=True, text=True).stderr.strip()
    print("\n".join(machine_description()))
    print(f"graphviz: {dot_version}")
    print(f"graph: one token through the default GPT, {len(reachable(root)):,} values; "
          f"budget {DEFAULT_BUDGET}")
    for name, expand in CASES.items():
        drawn, draw, layout = time_render(root, expand)
        print(f"{name:36s} {drawn:4d} drawn   draw_graph {draw:.3f} s   dot -Tsvg {layout:.3f} s   total {draw + layout:.2f} s")


if __name__ == "__main__":
    main()
