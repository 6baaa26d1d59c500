"""`microgpt predict RUN_DIR PROMPT`: the probability of every next character, as a table and a chart."""

from microgpt.cli import add_run_arguments, non_negative_int, png_path, positive_float


def add_parser(subparsers):
    p = subparsers.add_parser(
        "predict", help="the probability of every next character after a prompt",
        description="Feed BOS and PROMPT to a trained model and print the probability of every "
                    "character coming next, most likely first, with a bar chart as a PNG. With "
                    "--steps N, draw a character, feed it back and show the next distribution, "
                    "N times.")
    add_run_arguments(p)
    p.add_argument("prompt", metavar="PROMPT", help="the beginning of a name; '' for the first letter")
    p.add_argument("--steps", type=non_negative_int, default=0,
                   help="sample this many more characters, showing the distribution before each (default 0)")
    p.add_argument("--temperature", type=positive_float, default=1.0,
                   help="divide the logits by this before the softmax (default 1: the model's own)")
    p.add_argument("--seed", type=non_negative_int, default=42, help="seed for the sampled characters (default 42)")
    p.add_argument("--out", type=png_path, default="predict.png",
                   help="the bar chart to write (default predict.png)")
    p.set_defaults(run=run)


def run(args):
    from microgpt.backend import get_backend
    from microgpt.checkpoint import best_or_latest, load_checkpoint
    from microgpt.predict import format_table, next_token_distribution, token_name
    from microgpt.viz.plots import plot_predictions

    checkpoint = load_checkpoint(best_or_latest(args.run_dir, args.best))
    tokenizer = checkpoint.tokenizer
    backend = get_backend(args.backend, args.dtype)
    backend.prepare(checkpoint.params, notify=lambda line: print(f"note: {line}", flush=True), uses=("sample",))
    predictions = next_token_distribution(backend, checkpoint.params, tokenizer,
                                          args.prompt, args.steps, args.temperature, args.seed)
    start = "BOS + " if tokenizer.bos is not None else ""
    print(f"next character after {start}{args.prompt!r} ({args.run_dir}, {args.backend} backend, "
          f"temperature {args.temperature:g})")
    print(format_table(predictions, tokenizer))
    if args.steps:
        drawn = ", ".join(token_name(tokenizer, p.sampled) for p in predictions if p.sampled is not None)
        print(f"drew {drawn} (seed {args.seed}){stop_reason(predictions, args.steps, tokenizer)}")
    names = [token_name(tokenizer, i) for i in range(tokenizer.vocab_size)]
    plot_predictions(predictions, names, args.out,
                     title=f"next character after {args.prompt!r} ({args.run_dir})")
    print(f"wrote {args.out}")
    return 0


def stop_reason(predictions, steps, tokenizer):
    """Why fewer than `steps` characters were drawn: '' if all were (only a finished name stops early)."""
    drawn = sum(p.sampled is not None for p in predictions)
    if drawn == steps:
        return ""
    return f"; stopped after {drawn} of {steps}: the name ended (BOS)"
