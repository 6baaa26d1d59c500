"""`microgpt eval RUN_DIR [FILE]`: how well a trained run predicts held-out text.

Measures the loss of the run's model (latest checkpoint, or --best) on its whole
validation split, or on any text file read the way the run reads its data, and
prints it three ways: nats, perplexity, and bits per character; on the validation
split, beside the yardsticks (uniform, unigram, bigram) on the same predictions.
"""

from microgpt.backend import get_backend
from microgpt.cli import add_run_arguments
from microgpt.checkpoint import best_or_latest
from microgpt.errors import MicrogptError


def add_parser(subparsers):
    p = subparsers.add_parser(
        "eval", help="measure a trained run's loss on its validation split or on a text file",
        description="Measure the loss of a trained run (forward only) on its whole validation split, or on "
                    "FILE read the way the run reads its data (documents or a stream), and print it as "
                    "nats, perplexity and bits per character.")
    add_run_arguments(p, default_backend="numba")     # a whole split takes the scalar engine minutes
    p.add_argument("file", nargs="?", default=None, metavar="FILE",
                   help="a text file to measure on (default: the run's own validation split)")
    p.set_defaults(run=run)


def run(args):
    from microgpt.checkpoint import load_checkpoint
    from microgpt.commands.train import find_data, shown_path
    from microgpt.data import load_data
    from microgpt.evaluation import bits_per_token, evaluate, perplexity

    checkpoint = load_checkpoint(best_or_latest(args.run_dir, args.best))
    spec, config = checkpoint.data, checkpoint.params.config
    if args.file is None:
        if spec is None or not spec.val_fraction:
            raise MicrogptError(f"the run in {args.run_dir} held out no validation data; "
                                f"give a FILE to measure on")
        data = load_data(find_data(spec.path), config.block_size, spec.mode, spec.val_fraction)
        if data.spec.sha256 != spec.sha256:
            raise MicrogptError(f"{spec.path} has changed since the run trained on it, so its validation split "
                                f"is not the one held out; give a FILE to measure on")
        where, split = f"its validation split of {shown_path(spec.path)}", "val"
    else:
        mode = spec.mode if spec else "lines"
        data = load_data(find_data(args.file), config.block_size, mode, 0.0).retokenized(checkpoint.tokenizer)
        where, split = shown_path(args.file), "train"
    sequences = data.eval_sample(split, None)
    backend = get_backend(args.backend, args.dtype)
    backend.prepare(checkpoint.params, notify=lambda line: print(f"note: {line}", flush=True), uses=("eval",))
    loss = evaluate(backend, checkpoint.params, sequences)
    predictions = sum(len(s) - 1 for s in sequences)
    unit = "character" if data.mode == "text" else "token"
    print(f"{args.run_dir} (step {checkpoint.step}) on {where}: {predictions:,} predictions")
    print(f"loss {loss:.4f} nats · perplexity {perplexity(loss):.3f} · {bits_per_token(loss):.4f} bits per {unit}")
    if split == "val":
        from microgpt.baselines import baseline_losses
        b = baseline_losses(data, sequences)
        print(f"yardsticks on the same predictions: uniform {b['uniform']:.4f} · unigram {b['unigram']:.4f} · "
              f"bigram {b['bigram']:.4f}")
    return 0
