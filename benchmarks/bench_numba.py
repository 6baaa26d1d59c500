"""Time a training step on the Numba backend and the scalar engine at four model sizes, from the microgpt default to n_embd 128 with 4 layers.

    python benchmarks/bench_numba.py            # the same as: python -m microgpt bench
    python benchmarks/bench_numba.py --dtype float32 --numba-only

The figures in docs/benchmarks.md were printed by this command. The logic lives in
`microgpt.bench`; this script only calls the `bench` command. Set no thread variable:
the first column is the backend as a user gets it, the second pinned to --threads.
"""

import os
import sys

if __name__ == "__main__":
    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    from microgpt.cli import main
    sys.exit(main(["bench", *sys.argv[1:]]))
