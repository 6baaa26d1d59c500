"""Ablation: the validation loss of microgpt, GPT-2's block, and each single swap, after the same budget.

    python benchmarks/ablation.py                                   # names, 1,000 steps, 3 seeds
    python benchmarks/ablation.py --steps 300                       # a quicker look
    python benchmarks/ablation.py --data data/shakespeare.txt --block-size 64

Every architecture trains on the Numba backend with the same sizes, recipe, number of
steps and seeds; after the last step its loss is measured on a fixed validation sample
(forward only, no dropout). Each row gives the mean over the seeds, their standard
deviation (±) and range, and the difference from microgpt's mean: a difference smaller
than the spread is not a finding. The table starts with the machine and the settings,
so that a result can be repeated.
"""

import argparse
import os
import statistics
import sys
import time
from dataclasses import replace

import numpy as np

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def architectures():
    """name -> GPTConfig fields of each architecture compared: the two presets (microgpt's is
    the defaults), then one change from microgpt each (`microgpt.config.SWAPS`)."""
    from microgpt.config import PRESETS, SWAPS
    return {"microgpt": PRESETS["microgpt"], "gpt2": PRESETS["gpt2"], **SWAPS}


def parse_args(argv=None):
    from microgpt.config import GPTConfig, TrainConfig
    model, recipe = GPTConfig(vocab_size=1), TrainConfig()
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", default=os.path.join(REPO, "data", "names.txt"),
                        help="training file (default data/names.txt; e.g. data/shakespeare.txt)")
    parser.add_argument("--steps", type=int, default=1000, help="training steps of every run (default 1000)")
    parser.add_argument("--seeds", type=int, default=3, help="runs per architecture, seeds 0, 1, ... (default 3)")
    parser.add_argument("--batch-size", type=int, default=8, help="sequences per step (default 8)")
    parser.add_argument("--lr", type=float, default=recipe.lr, help=f"peak learning rate (default {recipe.lr})")
    parser.add_argument("--n-embd", type=int, default=model.n_embd, help=f"default {model.n_embd}")
    parser.add_argument("--n-head", type=int, default=model.n_head, help=f"default {model.n_head}")
    parser.add_argument("--n-layer", type=int, default=model.n_layer, help=f"default {model.n_layer}")
    parser.add_argument("--block-size", type=int, default=model.block_size, help=f"default {model.block_size}")
    parser.add_argument("--eval-tokens", type=int, default=recipe.eval_tokens,
                        help=f"predictions in the validation sample (default {recipe.eval_tokens})")
    parser.add_argument("--only", nargs="+", choices=architectures(), metavar="NAME",
                        help="run these architectures only (default: all)")
    return parser.parse_args(argv)


def components(name):
    """The GPTConfig fields of the architecture called `name`."""
    return architectures()[name]


def final_val_loss(backend, config, train_config, data, val):
    """Train one model of `config` from train_config.seed for train_config.steps; its validation loss."""
    from microgpt.evaluation import evaluate
    from microgpt.optim import Adam
    from microgpt.params import Params
    from microgpt.train import train_steps
    params = Params.init(config, np.random.default_rng(train_config.seed), train_config.init_std)
    optimizer = Adam(params.size, train_config.beta1, train_config.beta2, train_config.eps)
    for _ in train_steps(backend, params, optimizer, data, train_config):
        pass
    return evaluate(backend, params, val)


def summary_row(name, config, losses, baseline, seconds):
    """One line of the table: mean ± standard deviation, range, difference from microgpt."""
    from microgpt.params import count_parameters
    mean = statistics.fmean(losses)
    spread = statistics.stdev(losses) if len(losses) > 1 else 0.0
    delta = "" if baseline is None else f"{mean - baseline:+.4f}"
    return (f"{name:<16}{count_parameters(config):>8,}  {mean:.4f} ± {spread:.4f}  "
            f"{min(losses):.4f}..{max(losses):.4f}  {delta:>8}  {seconds:6.1f}")


def main(argv=None):
    from microgpt.bench import machine_description
    from microgpt.config import GPTConfig, TrainConfig
    from microgpt.data import load_data
    from microgpt.numba_gpt import NumbaBackend
    from microgpt.params import Params

    args = parse_args(argv)
    data = load_data(args.data, args.block_size)
    val = data.eval_sample("val", args.eval_tokens)
    base = GPTConfig(data.tokenizer.vocab_size, n_embd=args.n_embd, n_head=args.n_head, n_layer=args.n_layer,
                     block_size=args.block_size).validate()
    recipe = TrainConfig(steps=args.steps, batch_size=args.batch_size, lr=args.lr).validate()
    backend = NumbaBackend()
    for line in machine_description():
        print(line)
    print(f"data: {os.path.relpath(args.data)} ({data.mode}), validation sample of "
          f"{sum(len(s) - 1 for s in val):,} predictions")
    print(f"model: n_embd {base.n_embd}, n_head {base.n_head}, n_layer {base.n_layer}, block_size {base.block_size}, "
          f"vocab {base.vocab_size}; recipe: {recipe.steps} steps, batch {recipe.batch_size}, lr {recipe.lr} "
          f"(linear decay), Adam ({recipe.beta1}, {recipe.beta2}), init_std {recipe.init_std}; "
          f"backend numba float64; seeds 0..{args.seeds - 1}")
    print()
    print(f"{'architecture':<16}{'params':>8}  {'val loss (mean ± sd)':<20}  {'range':<14}  "
          f"{'vs microgpt':>8}  {'s/run':>6}")
    baseline = None
    for name in args.only or architectures():
        config = replace(base, **components(name)).validate()
        backend.prepare(Params.init(config, np.random.default_rng(0)), notify=None)   # compile outside the timing
        started, losses = time.perf_counter(), []
        for seed in range(args.seeds):
            losses.append(final_val_loss(backend, config, replace(recipe, seed=seed), data, val))
        seconds = (time.perf_counter() - started) / args.seeds
        print(summary_row(name, config, losses, baseline, seconds), flush=True)
        if name == "microgpt":
            baseline = statistics.fmean(losses)


if __name__ == "__main__":
    sys.path.insert(0, REPO)        # this checkout's microgpt, whatever is installed
    main()
