"""`microgpt summary [RUN_DIR | model options]`: a model's tensors, size, FLOPs and memory, untrained."""

from microgpt.configfile import layered_options, read_config_file

from microgpt.cli import COMPONENT_OPTIONS, add_model_arguments, model_options, positive_float, positive_int
from microgpt.config import GPTConfig, TrainConfig
from microgpt.errors import UsageError

SIZES = (("n_embd", "width of the residual stream"), ("n_head", "attention heads per layer"),
         ("n_layer", "transformer blocks"), ("block_size", "longest context in tokens"))
NAMES_VOCAB = 27    # the bundled names.txt: 26 letters + BOS


def add_parser(subparsers):
    p = subparsers.add_parser(
        "summary", help="a model as a table of its tensors, with its size, FLOPs and memory",
        description="Print one row per parameter tensor (name, shape, parameters, initialisation), "
                    "then the total, the count without the embedding tables, the training FLOPs per "
                    "token and the memory of a training step. Describe a trained run (RUN_DIR) or the "
                    "model that the given options would build.")
    p.add_argument("run_dir", nargs="?", metavar="RUN_DIR", help="a run directory written by `microgpt train`")
    sizes = p.add_argument_group("model (without RUN_DIR)")
    sizes.add_argument("--vocab-size", type=positive_int, default=None,
                       help=f"tokens, BOS included (default {NAMES_VOCAB}, names.txt's)")
    for name, text in SIZES:
        default = getattr(GPTConfig(NAMES_VOCAB), name)
        sizes.add_argument("--" + name.replace("_", "-"), type=positive_int, help=f"{text} (default {default})")
    sizes.add_argument("--batch-size", type=positive_int,
                       help=f"documents per step, for the memory (default {TrainConfig().batch_size})")
    sizes.add_argument("--init-std", type=positive_float,
                       help=f"std of the microgpt init (default {TrainConfig().init_std})")
    sizes.add_argument("--config", metavar="FILE.toml",
                       help="the model, batch size and init_std of a TOML file such as a run's config.toml "
                            "(the options given here override it)")
    add_model_arguments(p)
    p.set_defaults(run=run)


def run(args):
    from microgpt.limits import check_size
    from microgpt.summary import format_summary

    config, train_config = from_run(args) if args.run_dir else from_options(args)
    check_size(config, train_config, "numba")
    print(format_summary(config, train_config.batch_size, train_config.init_std))
    return 0


def from_run(args):
    """(GPTConfig, TrainConfig) of the run in args.run_dir; model options make no sense beside it."""
    from microgpt.checkpoint import load_checkpoint

    given = [name for name in ("vocab_size", "config", "preset", "batch_size", "init_std") + tuple(n for n, _ in SIZES)
             + COMPONENT_OPTIONS if getattr(args, name) is not None]
    if given:
        option = "--" + given[0].replace("_", "-")
        raise UsageError(f"{option} describes a new model, but RUN_DIR is a trained one; "
                         f"give RUN_DIR or model options, not both")
    run = load_checkpoint(args.run_dir)
    return run.params.config, run.train_config


def from_options(args):
    """(GPTConfig, TrainConfig) that the options (and --config's file under them) describe, validated."""
    if args.config:     # the file's training, data and run options have nothing to add to a summary
        for name, (value, _) in layered_options(read_config_file(args.config), args.config, args.preset).items():
            if getattr(args, name, "not an option here") is None:
                setattr(args, name, value)
    if args.vocab_size is not None and args.vocab_size < 2:
        raise UsageError("--vocab-size must be at least 2 (BOS and one character)")
    sizes = {name: getattr(args, name) for name, _ in SIZES if getattr(args, name) is not None}
    config = GPTConfig(args.vocab_size or NAMES_VOCAB, **sizes, **model_options(args)).validate()
    train = {name: getattr(args, name) for name in ("batch_size", "init_std") if getattr(args, name) is not None}
    return config, TrainConfig(**train).validate()
