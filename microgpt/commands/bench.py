"""`microgpt bench`: time a training step on the Numba backend and the scalar engine."""

import os
import subprocess
import sys

from microgpt.cli import positive_float, positive_int


def add_parser(subparsers):
    p = subparsers.add_parser(
        "bench", help="time a training step on both engines at four model sizes",
        description="Time a training step (loss, gradients, Adam update) on the Numba backend and the "
                    "scalar engine at four configs, in the same run, and print ms/step, tokens/s, "
                    "their ratio, the machine, and Numba's cold and warm start times.")
    p.add_argument("--threads", type=positive_int, default=1,
                   help="threads for Numba and BLAS (default 1: steadiest on a shared machine)")
    p.add_argument("--steps", type=positive_int, default=50, help="Numba steps per timed run (default 50)")
    p.add_argument("--repeats", type=positive_int, default=5, help="timed runs; the median counts (default 5)")
    p.add_argument("--scalar-budget", type=positive_float, default=20.0,
                   help="seconds of scalar steps per config after the first (default 20)")
    p.add_argument("--no-start-times", action="store_true", help="skip the cold/warm start measurement")
    p.set_defaults(run=run)


def run(args):
    from microgpt.bench import THREAD_VARIABLES, run_benchmark

    wanted = str(args.threads)
    if any(os.environ.get(name) != wanted for name in THREAD_VARIABLES):
        # BLAS reads its thread count when it loads, which has happened by now: start again pinned.
        env = dict(os.environ, **{name: wanted for name in THREAD_VARIABLES})
        return subprocess.run([sys.executable, "-m", "microgpt", *sys.argv[1:]], env=env).returncode
    run_benchmark(steps=args.steps, repeats=args.repeats, scalar_budget=args.scalar_budget,
                  start_times=not args.no_start_times)
    return 0
