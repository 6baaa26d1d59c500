"""`python -m microgpt sample RUN_DIR`: print names from a trained run's checkpoint.

The same checkpoint, seed and options give the same names, whichever backend
decodes them (the backends compute the same logits).
"""

from microgpt.backend import BACKENDS, get_backend
from microgpt.checkpoint import load_checkpoint
from microgpt.cli import non_negative_int, positive_float, positive_int
from microgpt.generate import generate_many


def add_parser(subparsers):
    p = subparsers.add_parser(
        "sample", help="print names sampled from a trained run",
        description="Print names sampled from the checkpoint in RUN_DIR (the --out of a train run), "
                    "one per line.")
    p.add_argument("run_dir", metavar="RUN_DIR", help="the run directory (the --out of `microgpt train`)")
    p.add_argument("--num", type=positive_int, default=20, help="how many names (default 20)")
    p.add_argument("--temperature", type=positive_float, default=0.5,
                   help="lower is safer, higher is wilder (default 0.5)")
    p.add_argument("--top-k", type=positive_int, default=None,
                   help="sample only among the K most likely next characters (default: all)")
    p.add_argument("--prompt", default="", help="a beginning for every name, to be continued (default none)")
    p.add_argument("--seed", type=non_negative_int, default=None,
                   help="same seed, same names (default: the run's seed, as `train` sampled)")
    p.add_argument("--backend", choices=BACKENDS, default="scalar",
                   help="engine that computes the logits (default scalar)")
    p.set_defaults(run=run)


def run(args):
    checkpoint = load_checkpoint(args.run_dir)
    seed = checkpoint.train_config.seed if args.seed is None else args.seed
    names = generate_many(get_backend(args.backend), checkpoint.params, checkpoint.tokenizer, args.num,
                          seed=seed, temperature=args.temperature, top_k=args.top_k, prompt=args.prompt)
    for name in names:
        print(name)
    return 0
