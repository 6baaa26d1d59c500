"""Time a training step on the Numba backend and the scalar engine at the issue's four configs.

    python benchmarks/bench_numba.py            # the same as: python -m microgpt bench

The figures in docs/kernels.md were printed by this command. The logic lives in
`microgpt.bench`; this script only pins the thread count and calls it.
"""

import os
import sys

if __name__ == "__main__":
    for name in ("NUMBA_NUM_THREADS", "OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
        os.environ.setdefault(name, "1")    # before numpy loads BLAS
    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    from microgpt.bench import run_benchmark
    run_benchmark()
