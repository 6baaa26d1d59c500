"""`python -m microgpt train FILE`: train a GPT on one document per line, then sample from it.

A new run writes to --out (default runs/<file name>); `--resume RUN_DIR` continues
a run from its checkpoint, exactly, towards its own --steps. `--stop-after N`
stops (and saves) after step N, for training in slices; Ctrl-C does the same at
the step it is on and exits 130.
"""

import math
import os
import shlex
import sys
from dataclasses import fields, replace

from microgpt.backend import BACKENDS, get_backend
from microgpt.checkpoint import CHECKPOINT_JSON, Checkpoint, load_checkpoint, prepare_run_dir
from microgpt.cli import non_negative_int, positive_float, positive_int
from microgpt.config import GPTConfig, TrainConfig
from microgpt.data import DataSource, Tokenizer, encode_documents, read_documents
from microgpt.errors import UsageError
from microgpt.generate import generate_many
from microgpt.params import param_shapes
from microgpt.train import read_log, train

BUNDLED_NAMES = os.path.join(os.path.dirname(os.path.dirname(__file__)), "assets", "names.txt")

# The scalar engine makes a Python object for every weight and every intermediate
# value; past this many weights one step needs gigabytes and hours.
MAX_SCALAR_PARAMETERS = 1_000_000
MAX_PARAMETERS = 100_000_000  # weights + gradients + two Adam moments, float64: 3.2 GB

# The options that define a run: on --resume each must be left out or equal the run's.
MODEL_OPTIONS = ("n_embd", "n_head", "n_layer", "block_size")
TRAIN_OPTIONS = ("steps", "lr", "batch_size", "seed")


def _default(cls, name):
    return next(f.default for f in fields(cls) if f.name == name)


def add_parser(subparsers):
    p = subparsers.add_parser(
        "train", help="train a GPT on a text file with one name per line",
        description="Train a GPT on a text file with one document (a name) per line, "
                    "then print sampled names. Outputs go to --out; --resume continues a run.")
    p.add_argument("data", nargs="?", default=None,
                   help="training file, one document per line (default: the bundled names.txt, "
                        "or with --resume the run's own file)")
    model = p.add_argument_group("model (fixed for a run: leave out with --resume)")
    opt = p.add_argument_group("training (fixed for a run: leave out with --resume)")
    for group, config_class, name, kind, text in (
            (model, GPTConfig, "n_embd", positive_int, "width of the residual stream"),
            (model, GPTConfig, "n_head", positive_int, "attention heads per layer"),
            (model, GPTConfig, "n_layer", positive_int, "transformer blocks"),
            (model, GPTConfig, "block_size", positive_int, "longest context in tokens; longer documents are cut"),
            (opt, TrainConfig, "steps", positive_int, "optimisation steps"),
            (opt, TrainConfig, "lr", positive_float, "learning rate at step 0, decaying linearly to 0"),
            (opt, TrainConfig, "batch_size", positive_int, "documents per step"),
            (opt, TrainConfig, "seed", non_negative_int, "seed for the weights, data order and samples")):
        group.add_argument("--" + name.replace("_", "-"), type=kind,
                           help=f"{text} (default {_default(config_class, name)})")
    opt.add_argument("--backend", choices=BACKENDS, default=None,
                     help="engine that computes loss and gradients (default scalar, or the run's with --resume)")
    run = p.add_argument_group("run")
    run.add_argument("--out", help="run directory for checkpoint, log.csv and loss.png "
                                   "(default: runs/<file name>, numbered if taken)")
    run.add_argument("--resume", metavar="RUN_DIR",
                     help="continue the run in RUN_DIR from its checkpoint, towards its own --steps")
    run.add_argument("--save-every", type=non_negative_int, default=100, metavar="N",
                     help="also save a checkpoint every N steps; 0: only when training stops (default 100)")
    run.add_argument("--stop-after", type=positive_int, metavar="STEP",
                     help="stop and save after step STEP, to continue later with --resume (train in slices)")
    out = p.add_argument_group("output")
    out.add_argument("--samples", type=non_negative_int, default=20, help="names to sample at the end (default 20)")
    out.add_argument("--temperature", type=positive_float, default=0.5,
                     help="sampling temperature: lower is safer, higher is wilder (default 0.5)")
    out.add_argument("--quiet", action="store_true", help="no progress bar and no config printout")
    p.set_defaults(run=run_command)


def run_command(args):
    run, docs, run_dir = resume_run(args) if args.resume else new_run(args)
    documents, num_cut = encode_documents(run.tokenizer, docs, run.params.config.block_size)
    backend = get_backend(run.backend)
    if not args.quiet:
        print_setup(run, docs, run_dir)
    if num_cut:
        block = run.params.config.block_size
        print(f"note: {num_cut} of {len(docs)} documents are longer than the context "
              f"(block_size {block}: BOS + {block - 1} characters) and were cut; "
              f"a larger --block-size keeps them whole", file=sys.stderr)
    sys.stdout.flush()

    backend.prepare(run.params, lambda message: print(message, file=sys.stderr, flush=True))
    outcome = train(backend, run, documents, run_dir, stop_step=args.stop_after,
                    save_every=args.save_every, progress=not args.quiet)
    resume_hint = f"python -m microgpt train --resume {shlex.quote(run_dir)}"
    if outcome.status == "interrupted":
        print(f"\ninterrupted: saved the checkpoint of step {outcome.step} of {run.train_config.steps} "
              f"in {run_dir}\nresume with: {resume_hint}", file=sys.stderr)
        return 130
    write_loss_plot(run_dir, run.params.config.vocab_size)
    report(args, outcome, run, run_dir, backend, resume_hint)
    return 0


def new_run(args):
    """A fresh run from the options: (Checkpoint at step 0, documents, run directory)."""
    if args.out is not None and os.path.exists(os.path.join(args.out, CHECKPOINT_JSON)):
        raise UsageError(f"{args.out} already holds a run; continue it with --resume {args.out}, "
                         f"or choose another --out (nothing was changed)")
    data_path = args.data or BUNDLED_NAMES
    docs = read_documents(data_path)
    tokenizer = Tokenizer.from_documents(docs)
    given = {name: getattr(args, name) for name in MODEL_OPTIONS + TRAIN_OPTIONS
             if getattr(args, name) is not None}
    config = GPTConfig(tokenizer.vocab_size, **{k: v for k, v in given.items() if k in MODEL_OPTIONS}).validate()
    train_config = TrainConfig(**{k: v for k, v in given.items() if k in TRAIN_OPTIONS}).validate()
    backend = args.backend or "scalar"
    check_model_size(config, backend)
    check_batch_size(train_config, docs, data_path)
    check_stop_after(args.stop_after, 0)
    run_dir = args.out or default_run_dir(data_path)
    prepare_run_dir(run_dir)
    run = Checkpoint.start(config, train_config, tokenizer, DataSource.of(data_path, docs), backend)
    return run, docs, run_dir


def resume_run(args):
    """The run in args.resume, checked against the options and the data: (Checkpoint, documents, run dir)."""
    if args.out is not None and os.path.abspath(args.out) != os.path.abspath(args.resume):
        raise UsageError("--out cannot be used with --resume: a resumed run stays in its own directory")
    run = load_checkpoint(args.resume)
    check_resume_options(args, run)
    if run.step >= run.train_config.steps:
        raise UsageError(f"the run in {args.resume} is complete ({run.step} of {run.train_config.steps} steps); "
                         f"sample from it with: python -m microgpt sample {shlex.quote(args.resume)}")
    check_stop_after(args.stop_after, run.step)
    if args.backend is not None:
        run.backend = args.backend
    data_path = args.data or (run.data.path if run.data else None)
    if data_path is None:
        raise UsageError(f"the checkpoint in {args.resume} does not record its training file; give it: "
                         f"python -m microgpt train FILE --resume {shlex.quote(args.resume)}")
    docs = read_documents(data_path)
    check_same_data(run, docs, data_path)
    prepare_run_dir(args.resume)
    return run, docs, args.resume


def check_resume_options(args, run):
    """Options that define the run (model shape, steps, lr, ...) must be left out or equal the run's."""
    for name in MODEL_OPTIONS + TRAIN_OPTIONS:
        given = getattr(args, name)
        source = run.params.config if name in MODEL_OPTIONS else run.train_config
        if given is not None and given != getattr(source, name):
            option = "--" + name.replace("_", "-")
            raise UsageError(f"{option} {given} does not match the run's {name} {getattr(source, name)}: "
                             f"a resumed run keeps its model and schedule; leave {option} out, "
                             f"or start a new run with --out")


def check_same_data(run, docs, data_path):
    """The documents must be the run's: the same vocabulary, and (when recorded) the same documents."""
    tokenizer = Tokenizer.from_documents(docs)
    if tokenizer.chars != run.tokenizer.chars:
        new = "".join(sorted(set(tokenizer.chars) - set(run.tokenizer.chars)))
        missing = "".join(sorted(set(run.tokenizer.chars) - set(tokenizer.chars)))
        diff = ", ".join(part for part in (f"has {new!r} which the run never saw" if new else "",
                                           f"lacks {missing!r}" if missing else "") if part)
        raise UsageError(f"{data_path} has a different vocabulary from the run's ({diff}); "
                         f"resume with the file the run was trained on")
    if run.data is not None and DataSource.of(data_path, docs).sha256 != run.data.sha256:
        raise UsageError(f"{data_path} holds different documents from the ones the run was trained on "
                         f"({run.data.path}, {run.data.num_documents} documents), so the data order would "
                         f"change; resume with that file, or start a new run")


def count_parameters(config):
    """Parameters of `config`, without listing a (possibly absurd) number of layers:
    the size with 0 layers plus n_layer times the size of one."""
    def size(n_layer):
        return sum(math.prod(shape) for shape in param_shapes(replace(config, n_layer=n_layer)).values())
    return size(0) + config.n_layer * (size(1) - size(0))


def check_model_size(config, backend):
    size = count_parameters(config)
    limit = MAX_SCALAR_PARAMETERS if backend == "scalar" else MAX_PARAMETERS
    if size > limit:
        hint = " (the scalar engine makes a Python object per weight)" if backend == "scalar" else ""
        raise UsageError(f"this model has {size:,} parameters, more than the {limit:,} the {backend} "
                         f"backend can train{hint}; choose a smaller --n-embd, --n-layer or --block-size")


def check_batch_size(train_config, docs, data_path):
    if train_config.batch_size > len(docs):
        raise UsageError(f"--batch-size {train_config.batch_size} is more than the {len(docs)} documents "
                         f"in {data_path}; use at most {len(docs)}")


def check_stop_after(stop_after, step):
    if stop_after is not None and stop_after <= step:
        raise UsageError(f"--stop-after {stop_after} is not after step {step}, where the run is; "
                         f"give a later step")


def default_run_dir(data_path):
    """runs/<file stem>, or runs/<stem>-2, -3 ... if that is taken: never overwrite a run."""
    stem = os.path.splitext(os.path.basename(data_path))[0] or "run"
    candidate, n = os.path.join("runs", stem), 1
    while os.path.exists(candidate):
        n += 1
        candidate = os.path.join("runs", f"{stem}-{n}")
    return candidate


def print_setup(run, docs, run_dir):
    config, train_config, tokenizer = run.params.config, run.train_config, run.tokenizer
    data_path = run.data.path if run.data else "?"
    if run.data and not os.path.relpath(data_path).startswith(".."):
        data_path = os.path.relpath(data_path)  # as the user would type it, from here
    print(f"data: {data_path}: {len(docs)} documents, vocabulary of {tokenizer.vocab_size} "
          f"({''.join(tokenizer.chars)} + BOS)")
    print(f"model: n_embd {config.n_embd}, n_head {config.n_head}, n_layer {config.n_layer}, "
          f"block_size {config.block_size}: {run.params.size:,} parameters")
    print(f"training: {train_config.steps} steps, batch {train_config.batch_size}, lr {train_config.lr} "
          f"decaying linearly to 0, Adam β1 {train_config.beta1} β2 {train_config.beta2}, "
          f"seed {train_config.seed}, backend {run.backend}")
    resumed = f" (resuming at step {run.step})" if run.step else ""
    print(f"run directory: {run_dir}{resumed}")


def report(args, outcome, run, run_dir, backend, resume_hint):
    """What a run that stopped normally prints: mean loss, and samples or how to continue."""
    tail = outcome.results[-100:]
    if tail:
        print(f"mean loss over the last {len(tail)} steps: {sum(r.loss for r in tail) / len(tail):.4f}")
    if outcome.status == "stopped":
        print(f"\nstopped after step {outcome.step} of {run.train_config.steps}; "
              f"checkpoint saved in {run_dir}\ncontinue with: {resume_hint}")
        return
    if args.samples > 0:
        names = generate_many(backend, run.params, run.tokenizer, args.samples, seed=run.train_config.seed,
                              temperature=args.temperature)
        print(f"\n{len(names)} samples (temperature {args.temperature}):")
        print("\n".join(f"  {name}" for name in names))
    print(f"\nwrote {run_dir}/: {CHECKPOINT_JSON} + weights (checkpoint), log.csv, loss.png")
    print(f"sample more with: python -m microgpt sample {shlex.quote(run_dir)}")


def write_loss_plot(run_dir, vocab_size):
    """loss.png from log.csv; a plot that cannot be drawn is not worth failing a finished run for."""
    from microgpt.viz.plots import plot_loss
    try:
        return plot_loss(read_log(run_dir), vocab_size, os.path.join(run_dir, "loss.png"))
    except (OSError, ValueError) as e:
        print(f"note: could not draw loss.png ({e})", file=sys.stderr)
        return None
