"""`python -m microgpt sample RUN_DIR`: names, or a continuation of a text, from a trained run.

The same checkpoint, seed and options give the same text, whichever backend
decodes it (the backends compute the same logits).
"""

from microgpt.backend import get_backend
from microgpt.checkpoint import best_or_latest, load_checkpoint
from microgpt.cli import add_run_arguments, non_negative_int, positive_float, positive_int


def add_parser(subparsers):
    p = subparsers.add_parser(
        "sample", help="print names, or a continuation of a text, from a trained run",
        description="Sample from the checkpoint in RUN_DIR (the --out of a train run): names one per line "
                    "for a run on documents, or a continuation of --prompt for a run on a text. Generation "
                    "goes on past the model's context: the window slides over the last block_size tokens.")
    add_run_arguments(p)
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
    p.set_defaults(run=run)


def run(args):
    from microgpt.generate import check_prompt, default_prompt, generate
    import numpy as np

    checkpoint = load_checkpoint(best_or_latest(args.run_dir, args.best))
    tokenizer = checkpoint.tokenizer
    prompt = default_prompt(tokenizer) if args.prompt is None else args.prompt
    check_prompt(tokenizer, prompt)
    backend = get_backend(args.backend, args.dtype)
    backend.prepare(checkpoint.params, notify=lambda line: print(f"note: {line}", flush=True), uses=("sample",))
    rng = np.random.default_rng(checkpoint.train_config.seed if args.seed is None else args.seed)
    num = args.num or (20 if tokenizer.bos is not None else 1)
    for _ in range(num):            # each sample as soon as it is written
        text = generate(backend, checkpoint.params, tokenizer, rng, args.temperature, args.top_k, prompt,
                        args.max_new_tokens)
        print(text, flush=True)
    return 0
