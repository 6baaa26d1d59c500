"""`python -m microgpt sample RUN_DIR`: names, or a continuation of a text, from a trained run.

The same checkpoint, seed and options give the same text, whichever backend
decodes it (the backends compute the same logits).
"""

import os

from microgpt.backend import BACKENDS, DTYPES, get_backend
from microgpt.checkpoint import BEST, load_checkpoint
from microgpt.cli import non_negative_int, positive_float, positive_int
from microgpt.errors import MicrogptError


def add_parser(subparsers):
    p = subparsers.add_parser(
        "sample", help="print names, or a continuation of a text, from a trained run",
        description="Sample from the checkpoint in RUN_DIR (the --out of a train run): names one per line "
                    "for a run on documents, or a continuation of --prompt for a run on a text. Generation "
                    "goes on past the model's context: the window slides over the last block_size tokens.")
    p.add_argument("run_dir", metavar="RUN_DIR", help="the run directory (the --out of `microgpt train`)")
    p.add_argument("--best", action="store_true",
                   help="use the checkpoint with the best validation loss (RUN_DIR/best) instead of the latest")
    p.add_argument("--num", type=positive_int, default=None,
                   help="how many samples (default 20 names, or one text)")
    p.add_argument("--max-new-tokens", type=positive_int, default=None, metavar="N",
                   help="characters to write after the prompt (default 500 for a text; for names, "
                        "until the name ends, at most block_size)")
    p.add_argument("--temperature", type=positive_float, default=0.5,
                   help="lower is safer, higher is wilder (default 0.5)")
    p.add_argument("--top-k", type=positive_int, default=None,
                   help="sample only among the K most likely next characters (default: all)")
    p.add_argument("--prompt", default=None,
                   help="text to continue (default: none for names; a newline for a text)")
    p.add_argument("--seed", type=non_negative_int, default=None,
                   help="same seed, same text (default: the run's seed, as `train` sampled)")
    p.add_argument("--backend", choices=BACKENDS, default="scalar",
                   help="engine that computes the logits (default scalar)")
    p.add_argument("--dtype", choices=DTYPES, default="float64", help="precision of the numba backend (default float64)")
    p.set_defaults(run=run)


def run(args):
    from microgpt.generate import check_prompt, default_prompt, generate
    import numpy as np

    checkpoint = load_checkpoint(best_or_latest(args.run_dir, args.best))
    tokenizer = checkpoint.tokenizer
    prompt = default_prompt(tokenizer) if args.prompt is None else args.prompt
    check_prompt(tokenizer, prompt)
    backend = get_backend(args.backend, args.dtype)
    backend.prepare(checkpoint.params, notify=lambda line: print(f"note: {line}", flush=True))
    rng = np.random.default_rng(checkpoint.train_config.seed if args.seed is None else args.seed)
    num = args.num or (20 if tokenizer.bos is not None else 1)
    for _ in range(num):            # each sample as soon as it is written
        text = generate(backend, checkpoint.params, tokenizer, rng, args.temperature, args.top_k, prompt,
                        args.max_new_tokens)
        print(text, flush=True)
    return 0


def best_or_latest(run_dir, best):
    """run_dir, or its best/ subdirectory (with a clear error if the run kept none)."""
    if not best:
        return run_dir
    path = os.path.join(run_dir, BEST)
    if not os.path.isdir(path) and os.path.isdir(run_dir):
        raise MicrogptError(f"{run_dir} has no best checkpoint (a run keeps one when it measures a "
                            f"validation loss); leave out --best to use the latest")
    return path
