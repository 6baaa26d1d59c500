"""`microgpt attention RUN_DIR NAME --out FILE.png`: where each head looks, for one name."""

from microgpt.cli import png_path


def add_parser(subparsers):
    p = subparsers.add_parser(
        "attention", help="plot every layer's and head's attention weights for one name",
        description="Run a trained model on one name and plot, for every layer and head, how much "
                    "each position attends to each earlier one (a grid of heatmaps labelled with "
                    "the characters). Also prints how many MLP units stayed off (dead ReLUs).")
    p.add_argument("run_dir", help="a run directory written by `microgpt train`")
    p.add_argument("name", help="the text to feed the model, e.g. emma")
    p.add_argument("--out", type=png_path, default="attention.png", help="the PNG to write (default attention.png)")
    p.set_defaults(run=run)


def run(args):
    from microgpt.checkpoint import load_checkpoint
    from microgpt.viz.capture import capture_forward
    from microgpt.viz.plots import plot_attention

    checkpoint = load_checkpoint(args.run_dir)
    tokenizer, config = checkpoint.tokenizer, checkpoint.params.config
    inputs = tokenizer.document(args.name, config.block_size)[:-1]  # the last token is only a target
    capture = capture_forward(checkpoint.params, inputs)
    labels = [tokenizer.decode([t]) or "BOS" for t in inputs]
    plot_attention(capture, labels, args.out, title=f"attention on {args.name!r} ({args.run_dir})")
    print(f"wrote {args.out}: {config.n_layer} layer(s) × {config.n_head} heads over {len(inputs)} positions")
    for layer in range(config.n_layer):
        dead = capture.dead_relus(layer)
        print(f"layer{layer}.mlp: {len(dead)} of {4 * config.n_embd} ReLUs off at every position of {args.name!r}")
    return 0
