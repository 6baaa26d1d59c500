"""How fast is the scalar engine? Fused (sum/dot nodes) vs atomic ops, side by side.

    python benchmarks/bench_scalar.py            # default config, plus deep configs
    python benchmarks/bench_scalar.py --steps 30 # more steps for the median

For each build it trains on the same documents (the default run's first steps) and
reports the median ms per training step (forward + backward + gradient writeback;
the two builds alternate step by step so both see the same machine load),
the nodes and edges of one step's graph, and the peak memory of one step
(tracemalloc, measured in a separate pass because tracing slows Python down).
Then it backpropagates deeper models (4 layers × n_embd 32 and 64) and prints how
deep their graphs are: the engine's topological sort uses an explicit stack, so depth
is no limit.
"""

import argparse
import os
import statistics
import sys
import time
import tracemalloc

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from microgpt.bench import machine_description  # noqa: E402
from microgpt.config import GPTConfig, TrainConfig  # noqa: E402
from microgpt.data import Tokenizer, batch_indices, read_documents  # noqa: E402
from microgpt.params import Params  # noqa: E402
from microgpt.scalar_gpt import ScalarBackend, ScalarGPT  # noqa: E402

NAMES = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "data", "names.txt")


def training_documents(tokenizer, docs, config, steps, seed=42):
    """The documents the default run trains on in its first `steps` steps."""
    return [tokenizer.document(docs[batch_indices(len(docs), seed, s, 1)[0]], config.block_size)
            for s in range(steps)]


def ms_per_step(backends, params, documents, repeats=3):
    """Median ms per step of each backend, interleaved step by step so both see the same load."""
    times = {name: [] for name in backends}
    for _ in range(repeats):
        for doc in documents:
            for name, backend in backends.items():
                start = time.perf_counter()
                backend.loss_and_grads(params, [doc])
                times[name].append(time.perf_counter() - start)
    return {name: 1000 * statistics.median(t) for name, t in times.items()}


def graph_size(params, documents, atomic):
    """Mean nodes and edges of one step's graph."""
    nodes = edges = 0
    for doc in documents:
        order = ScalarGPT(params, atomic=atomic).loss([doc]).topological_order()
        nodes += len(order)
        edges += sum(len(n._children) for n in order)
    return nodes / len(documents), edges / len(documents)


def peak_mib(backend, params, doc):
    tracemalloc.start()
    backend.loss_and_grads(params, [doc])
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    return peak / 2**20


def graph_depth(root):
    """Nodes on the longest path from a leaf to `root`."""
    depth = {}
    for node in root.topological_order():
        depth[node] = 1 + max((depth[c] for c in node._children), default=0)
    return depth[root]


def compare_builds(tokenizer, docs, steps):
    config = GPTConfig(tokenizer.vocab_size)
    params = Params.init(config, np.random.default_rng(42), TrainConfig().init_std)
    documents = training_documents(tokenizer, docs, config, steps)
    tokens = np.mean([len(d) - 1 for d in documents])
    print(f"\nconfig: n_embd {config.n_embd}, n_head {config.n_head}, n_layer {config.n_layer}, "
          f"block_size {config.block_size}, batch 1; {steps} steps of the default run "
          f"(mean {tokens:.1f} predicted tokens per step)")
    print(f"{'build':<8} {'ms/step':>9} {'nodes/step':>11} {'edges/step':>11} {'peak MiB/step':>14}")
    backends = {"fused": ScalarBackend(atomic=False), "atomic": ScalarBackend(atomic=True)}
    ms = ms_per_step(backends, params, documents)
    for name, backend in backends.items():
        nodes, edges = graph_size(params, documents, backend.atomic)
        mib = peak_mib(backend, params, documents[0])
        print(f"{name:<8} {ms[name]:>9.2f} {nodes:>11,.0f} {edges:>11,.0f} {mib:>14.1f}")
    print(f"fused is {ms['atomic'] / ms['fused']:.1f}x faster per step than atomic")


def deep_models(tokenizer):
    doc = tokenizer.document("christopher", 16)
    print("\ndeeper models, one step on 'christopher' (12 predictions):")
    for n_layer, n_embd in ((4, 32), (4, 64)):
        config = GPTConfig(tokenizer.vocab_size, n_embd=n_embd, n_head=4, n_layer=n_layer)
        params = Params.init(config, np.random.default_rng(0))
        ms = ms_per_step({"fused": ScalarBackend()}, params, [doc], repeats=3)["fused"]
        fused = ScalarGPT(params).loss([doc])
        atomic = ScalarGPT(params, atomic=True).loss([doc])
        print(f"  n_layer {n_layer} n_embd {n_embd}: fused {ms:.0f} ms/step; longest path "
              f"{graph_depth(fused):,} nodes fused, {graph_depth(atomic):,} atomic "
              f"(Python's recursion limit: {sys.getrecursionlimit()})")


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=20, help="steps timed per build (default 20)")
    args = parser.parse_args()
    print("\n".join(machine_description()))
    docs = read_documents(NAMES)
    tokenizer = Tokenizer.from_documents(docs)
    compare_builds(tokenizer, docs, args.steps)
    deep_models(tokenizer)


if __name__ == "__main__":
    main()
