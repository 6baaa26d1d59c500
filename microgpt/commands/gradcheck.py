"""`microgpt gradcheck`: the scalar engine vs the Numba backend vs finite differences."""

from microgpt.cli import add_model_arguments, model_options, non_negative_int, positive_float, positive_int
from microgpt.config import GPTConfig
from microgpt.errors import UsageError


def add_parser(subparsers):
    p = subparsers.add_parser(
        "gradcheck", help="check the gradients of both engines against each other and finite differences",
        description="Build a random model and batch, compute the loss and every gradient with the "
                    "scalar engine, the Numba backend and central finite differences, and print a "
                    "table per parameter tensor. Exits 1 if a tolerance is broken.")
    p.add_argument("--vocab-size", type=positive_int, default=27, help="tokens, BOS included (default 27)")
    p.add_argument("--n-embd", type=positive_int, default=16, help="width of the residual stream (default 16)")
    p.add_argument("--n-head", type=positive_int, default=4, help="attention heads per layer (default 4)")
    p.add_argument("--n-layer", type=positive_int, default=1, help="transformer blocks (default 1)")
    p.add_argument("--block-size", type=positive_int, default=16, help="longest context (default 16)")
    p.add_argument("--batch-size", type=positive_int, default=4,
                   help="random documents, some longer than the block (default 4)")
    p.add_argument("--init-std", type=positive_float, default=0.3,
                   help="std of the random weights; larger than training's 0.08 so that "
                        "attention is far from uniform (default 0.3)")
    p.add_argument("--seed", type=non_negative_int, default=0, help="seed for the weights and the batch (default 0)")
    p.add_argument("--fd-per-tensor", type=positive_int, default=None,
                   help="finite-difference only this many random entries per tensor (default: all)")
    add_model_arguments(p)
    p.set_defaults(run=run)


def run(args):
    from microgpt.gradcheck import format_report, gradcheck, random_setup
    from microgpt.summary import describe_components

    if args.vocab_size < 2:
        raise UsageError("--vocab-size must be at least 2 (BOS and one character)")
    config = GPTConfig(args.vocab_size, args.n_embd, args.n_head, args.n_layer, args.block_size,
                       **model_options(args)).validate()
    params, batch = random_setup(config, args.batch_size, args.seed, args.init_std)
    print(f"model: vocab {config.vocab_size}, n_embd {config.n_embd}, n_head {config.n_head}, "
          f"n_layer {config.n_layer}, block_size {config.block_size}: {params.size:,} parameters")
    changes = describe_components(config, only_changes=True)
    if changes:
        print(f"       {changes}")
    print(f"batch: {len(batch)} documents of {', '.join(str(len(d)) for d in batch)} tokens, seed {args.seed}\n")
    report = gradcheck(params, batch, fd_per_tensor=args.fd_per_tensor)
    print(format_report(report))
    return 0 if report.ok else 1
