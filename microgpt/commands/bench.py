"""`microgpt bench`: time a training step on the Numba backend and the scalar engine."""

import argparse

from microgpt.cli import add_model_arguments, model_options, positive_float, positive_int


def add_parser(subparsers):
    p = subparsers.add_parser(
        "bench", help="time a training step on both engines at four model sizes",
        description="Time a training step (loss, gradients, Adam update) on the Numba backend and the "
                    "scalar engine at four configs, in the same run, and print ms/step (Numba as a user "
                    "gets it and pinned to --threads), tokens/s, useful GFLOP/s and their fraction of the "
                    "machine's peak, the engines' ratio, the machine, and Numba's cold and warm start times.")
    p.add_argument("--threads", type=positive_int, default=1,
                   help="threads of the pinned column (default 1); the first column is always the backend's own choice")
    p.add_argument("--dtype", choices=("float64", "float32"), default="float64",
                   help="precision of the Numba backend (default float64; the scalar engine is always float64)")
    p.add_argument("--steps", type=positive_int, default=50, help="Numba steps per timed run (default 50)")
    p.add_argument("--repeats", type=positive_int, default=5, help="timed runs; the median counts (default 5)")
    p.add_argument("--scalar-budget", type=positive_float, default=20.0,
                   help="seconds of scalar steps per config after the first (default 20)")
    p.add_argument("--no-start-times", action="store_true", help="skip the cold/warm start measurement")
    p.add_argument("--numba-only", action="store_true",
                   help="skip the scalar engine (its step takes minutes at the largest config)")
    p.add_argument("--config", action="append", type=config_shape, metavar="C/NH/L/T/B",
                   help="time this config instead of the four standard ones, e.g. 32/4/2/16/8 "
                        "(n_embd/n_head/n_layer/block_size/batch); repeatable")
    add_model_arguments(p)
    p.set_defaults(run=run)


def config_shape(text):
    """'16/4/1/16/1' -> (16, 4, 1, 16, 1), checked like the train options."""
    parts = text.split("/")
    if len(parts) != 5 or not all(p.isdigit() and int(p) > 0 for p in parts):
        raise argparse.ArgumentTypeError(
            f"{text!r} is not C/NH/L/T/B: five positive whole numbers, e.g. 16/4/1/16/1")
    shape = tuple(int(p) for p in parts)
    if shape[0] % shape[1]:
        raise argparse.ArgumentTypeError(f"{text}: n_embd {shape[0]} is not divisible by n_head {shape[1]}")
    return shape


def run(args):
    from microgpt.bench import CONFIGS, run_benchmark
    configs = args.config or CONFIGS
    components = model_options(args)
    run_benchmark(steps=args.steps, repeats=args.repeats, scalar_budget=args.scalar_budget,
                  start_times=not args.no_start_times, configs=configs, scalar=not args.numba_only,
                  dtype=args.dtype, threads=args.threads, components=components)
    return 0
