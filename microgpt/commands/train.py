"""`microgpt train FILE`: train a GPT on one document per line, then sample from it."""

import os
import sys

import numpy as np

from microgpt.backend import BACKENDS, get_backend
from microgpt.checkpoint import CHECKPOINT_JSON
from microgpt.cli import positive_float, positive_int
from microgpt.config import GPTConfig, TrainConfig
from microgpt.data import Tokenizer, read_documents
from microgpt.errors import UsageError
from microgpt.generate import generate_many
from microgpt.optim import Adam
from microgpt.params import Params
from microgpt.train import read_log, train

BUNDLED_NAMES = os.path.join(os.path.dirname(os.path.dirname(__file__)), "assets", "names.txt")


def add_parser(subparsers):
    p = subparsers.add_parser(
        "train", help="train a GPT on a text file with one name per line",
        description="Train a GPT on a text file with one document (a name) per line, "
                    "then print sampled names. Outputs go to --out.")
    p.add_argument("data", nargs="?", default=BUNDLED_NAMES,
                   help="training file, one document per line (default: the bundled names.txt)")
    model = p.add_argument_group("model")
    model.add_argument("--n-embd", type=positive_int, default=16, help="width of the residual stream (default 16)")
    model.add_argument("--n-head", type=positive_int, default=4, help="attention heads per layer (default 4)")
    model.add_argument("--n-layer", type=positive_int, default=1, help="transformer blocks (default 1)")
    model.add_argument("--block-size", type=positive_int, default=16,
                       help="longest context in tokens; longer documents are cut (default 16)")
    opt = p.add_argument_group("training")
    opt.add_argument("--steps", type=positive_int, default=1000, help="optimisation steps (default 1000)")
    opt.add_argument("--lr", type=positive_float, default=0.01,
                     help="learning rate at step 0, decaying linearly to 0 (default 0.01)")
    opt.add_argument("--batch-size", type=positive_int, default=1, help="documents per step (default 1)")
    opt.add_argument("--seed", type=int, default=42, help="seed for the weights, data order and samples (default 42)")
    opt.add_argument("--backend", choices=BACKENDS, default="scalar",
                     help="engine that computes loss and gradients (default scalar)")
    out = p.add_argument_group("output")
    out.add_argument("--out", help="run directory for checkpoint, log.csv and loss.png "
                                   "(default: runs/<file name>, numbered if taken)")
    out.add_argument("--samples", type=int, default=20, help="names to sample at the end (default 20)")
    out.add_argument("--temperature", type=positive_float, default=0.5,
                     help="sampling temperature: lower is safer, higher is wilder (default 0.5)")
    out.add_argument("--quiet", action="store_true", help="no progress bar and no config printout")
    p.set_defaults(run=run)


def run(args):
    docs = read_documents(args.data)
    tokenizer = Tokenizer.from_documents(docs)
    config = GPTConfig(tokenizer.vocab_size, args.n_embd, args.n_head, args.n_layer, args.block_size).validate()
    train_config = TrainConfig(steps=args.steps, lr=args.lr, batch_size=args.batch_size, seed=args.seed).validate()
    run_dir = args.out or default_run_dir(args.data)
    check_run_dir(run_dir)
    documents = [tokenizer.document(doc, config.block_size) for doc in docs]
    params = Params.init(config, np.random.default_rng(train_config.seed), train_config.init_std)
    optimizer = Adam(params.size, train_config.beta1, train_config.beta2, train_config.eps)
    backend = get_backend(args.backend)
    if not args.quiet:
        print_setup(args, config, train_config, params, docs, tokenizer, run_dir)

    results = train(backend, params, optimizer, tokenizer, documents, train_config, run_dir,
                    progress=not args.quiet)
    write_loss_plot(run_dir, config.vocab_size)
    tail = results[-100:]
    print(f"mean loss over the last {len(tail)} steps: {sum(r.loss for r in tail) / len(tail):.4f}")
    if args.samples > 0:
        names = generate_many(backend, params, tokenizer, args.samples, seed=train_config.seed,
                              temperature=args.temperature)
        print(f"\n{len(names)} samples (temperature {args.temperature}):")
        print("\n".join(f"  {name}" for name in names))
    print(f"\nwrote {run_dir}/: {CHECKPOINT_JSON} + weights (checkpoint), log.csv, loss.png")
    return 0


def default_run_dir(data_path):
    """runs/<file stem>, or runs/<stem>-2, -3 ... if that is taken: never overwrite a run."""
    stem = os.path.splitext(os.path.basename(data_path))[0] or "run"
    candidate, n = os.path.join("runs", stem), 1
    while os.path.exists(candidate):
        n += 1
        candidate = os.path.join("runs", f"{stem}-{n}")
    return candidate


def check_run_dir(run_dir):
    if os.path.exists(run_dir) and not os.path.isdir(run_dir):
        raise UsageError(f"--out {run_dir} is a file; give a directory")
    if os.path.exists(os.path.join(run_dir, CHECKPOINT_JSON)):
        raise UsageError(f"{run_dir} already holds a run; choose another --out (nothing was changed)")


def print_setup(args, config, train_config, params, docs, tokenizer, run_dir):
    print(f"data: {args.data}: {len(docs)} documents, vocabulary of {tokenizer.vocab_size} "
          f"({''.join(tokenizer.chars)} + BOS)")
    print(f"model: n_embd {config.n_embd}, n_head {config.n_head}, n_layer {config.n_layer}, "
          f"block_size {config.block_size}: {params.size:,} parameters")
    print(f"training: {train_config.steps} steps, batch {train_config.batch_size}, lr {train_config.lr} "
          f"decaying linearly to 0, Adam β1 {train_config.beta1} β2 {train_config.beta2}, "
          f"seed {train_config.seed}, backend {args.backend}")
    print(f"run directory: {run_dir}")
    sys.stdout.flush()


def write_loss_plot(run_dir, vocab_size):
    from microgpt.viz.plots import plot_loss
    return plot_loss(read_log(run_dir), vocab_size, os.path.join(run_dir, "loss.png"))
