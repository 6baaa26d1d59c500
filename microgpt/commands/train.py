"""`python -m microgpt train FILE`: train a GPT on a text file, then sample from it.

A file of lines (names) trains on one document per line; a long text (a play)
trains on one character stream; `--data auto` (the default) picks and says why.
A new run writes to --out (default runs/<file name>); `--resume RUN_DIR`
continues a run from its checkpoint, exactly (and `--steps N` extends a finished
one). The model's components come from --preset and their own options, and any
option may come from a TOML file (`--config`, read by `microgpt.configfile`). The
run itself (directory, checkpoints, logs, evaluations, signals) is `microgpt.run`;
this module parses, builds the configs, and prints.
"""

import math
import os
import shlex
import sys
from dataclasses import fields, replace

from microgpt.backend import BACKENDS, DTYPES, get_backend
from microgpt.checkpoint import CHECKPOINT_JSON, Checkpoint, load_checkpoint
from microgpt.cli import (COMPONENT_OPTIONS, add_model_arguments, float_in, non_negative_float, non_negative_int,
                          positive_float, positive_int)
from microgpt.config import GPTConfig, TrainConfig
from microgpt.configfile import CONFIG_TOML, layered_options, read_config_file, write_run_config
from microgpt.data import load_data
from microgpt.errors import UsageError
from microgpt.limits import check_block_size, check_size
from microgpt.optim import SCHEDULES
from microgpt.run import TEXT_SAMPLE_CHARS
from microgpt.summary import describe_components, short_summary

ASSETS = os.path.join(os.path.dirname(os.path.dirname(__file__)), "assets")
BUNDLED_NAMES = os.path.join(ASSETS, "names.txt")
BUNDLED = {"names.txt": BUNDLED_NAMES, "shakespeare.txt": os.path.join(ASSETS, "shakespeare.txt")}

# The options that define a run: on --resume each must be left out or equal the run's
# (--steps may grow: that extends the run).
MODEL_OPTIONS = ("n_embd", "n_head", "n_layer", "block_size") + COMPONENT_OPTIONS
TRAIN_OPTIONS = ("steps", "lr", "batch_size", "seed", "beta1", "beta2", "eps", "init_std", "warmup", "schedule",
                 "min_lr", "grad_clip", "weight_decay", "eval_every", "eval_tokens")
DATA_OPTIONS = ("data_mode", "val_fraction")
EVAL_TOKENS = {"scalar": 256, "numba": 4096}   # forward-only predictions per evaluation sample, by backend


def _default(cls, name):
    return next(f.default for f in fields(cls) if f.name == name)


def add_parser(subparsers):
    p = subparsers.add_parser(
        "train", help="train a GPT on a text file (one name per line, or a long text)",
        description="Train a GPT on a text file, measure it on held-out data, and print samples. A file "
                    "of short lines (names) is read as one document per line; a long text (a play) as "
                    "one character stream. Outputs go to --out; --resume continues a run.")
    p.add_argument("data", nargs="?", default=None,
                   help="training file (default: the bundled names.txt, or with --resume the run's own file)")
    data = p.add_argument_group("data (fixed for a run: leave out with --resume)")
    data.add_argument("--data", dest="data_mode", choices=("auto", "lines", "text"), default=None,
                      help="lines: one document per line; text: one character stream; "
                           "auto (default): decide from the file, and say why")
    data.add_argument("--val-fraction", type=float_in(0, 0.5), default=None, metavar="F",
                      help="hold out this much for validation, 0 to 0.5: the last part of a text, or a sample "
                           "of the documents (at most 2,000); 0 holds out nothing (default 0.1)")
    model = p.add_argument_group("model (fixed for a run: leave out with --resume)")
    opt = p.add_argument_group("training (fixed for a run: leave out with --resume; --steps may grow)")
    for group, config_class, name, kind, text in (
            (model, GPTConfig, "n_embd", positive_int, "width of the residual stream"),
            (model, GPTConfig, "n_head", positive_int, "attention heads per layer"),
            (model, GPTConfig, "n_layer", positive_int, "transformer blocks"),
            (model, GPTConfig, "block_size", positive_int, "longest context in tokens; longer documents are cut"),
            (opt, TrainConfig, "steps", positive_int, "optimisation steps"),
            (opt, TrainConfig, "lr", positive_float, "peak learning rate"),
            (opt, TrainConfig, "batch_size", positive_int, "documents (or text windows) per step"),
            (opt, TrainConfig, "seed", non_negative_int, "seed for the weights, data order and samples"),
            (opt, TrainConfig, "beta1", float_in(0, 1, include_high=False), "Adam's decay of its running mean of gradients"),
            (opt, TrainConfig, "beta2", float_in(0, 1, include_high=False), "Adam's decay of its running mean of squared gradients"),
            (opt, TrainConfig, "eps", positive_float, "Adam's ε, added to √v so an update never divides by 0"),
            (opt, TrainConfig, "init_std", positive_float, "std of the initial weights (the microgpt init)"),
            (opt, TrainConfig, "warmup", non_negative_int, "steps of linear warm-up to the peak lr"),
            (opt, TrainConfig, "min_lr", non_negative_float, "the lr the schedule decays to"),
            (opt, TrainConfig, "grad_clip", non_negative_float,
             "clip the gradient to this global L2 norm; 0: never"),
            (opt, TrainConfig, "weight_decay", non_negative_float,
             "AdamW decoupled weight decay of the matrices; 0: none")):
        group.add_argument("--" + name.replace("_", "-"), type=kind,
                           help=f"{text} (default {_default(config_class, name)})")
    opt.add_argument("--schedule", choices=SCHEDULES, default=None,
                     help="after warm-up, the lr decays to --min-lr: linear or cosine (default linear)")
    opt.add_argument("--backend", choices=BACKENDS, default=None,
                     help="engine that computes loss and gradients (default scalar, or the run's with --resume)")
    opt.add_argument("--dtype", choices=DTYPES, default=None,
                     help="precision of the numba backend (default float64, or the run's with --resume)")
    add_model_arguments(p)
    ev = p.add_argument_group("evaluation (fixed for a run)")
    ev.add_argument("--eval-every", type=positive_int, default=None, metavar="N",
                    help="measure validation and training loss every N steps (default: steps/10)")
    ev.add_argument("--eval-tokens", type=positive_int, default=None, metavar="N",
                    help=f"predictions in each evaluation sample (default {EVAL_TOKENS['scalar']} on the "
                         f"scalar engine, {EVAL_TOKENS['numba']:,} on numba; `microgpt eval` measures the "
                         f"whole validation split)")
    run = p.add_argument_group("run")
    run.add_argument("--config", metavar="FILE.toml",
                     help=f"read options from a TOML file ([model], [train], [data], [run] tables, keys named as "
                          f"the options with underscores); options given here override it; a run's own "
                          f"{CONFIG_TOML} repeats that run")
    run.add_argument("--out", help="run directory for checkpoints and logs: new or empty "
                                   "(default: runs/<file name>, numbered if taken)")
    run.add_argument("--resume", metavar="RUN_DIR",
                     help="continue the run in RUN_DIR from its checkpoint; with a larger --steps, extend it")
    run.add_argument("--save-every", type=non_negative_int, default=100, metavar="N",
                     help="also save a checkpoint every N steps; 0: only when training stops (default 100)")
    run.add_argument("--stop-after", type=positive_int, metavar="STEP",
                     help="stop and save after step STEP, to continue later with --resume (train in slices)")
    out = p.add_argument_group("output")
    out.add_argument("--samples", type=non_negative_int, default=None,
                     help=f"samples to print at the end (default 20 names, or one text of {TEXT_SAMPLE_CHARS} "
                          f"characters)")
    out.add_argument("--temperature", type=positive_float, default=0.5,
                     help="sampling temperature: lower is safer, higher is wilder (default 0.5)")
    out.add_argument("--sample-every", type=non_negative_int, default=None, metavar="N",
                     help="print samples every N steps, above the progress bar; 0: never "
                          "(default: at each evaluation)")
    out.add_argument("--quiet", action="store_true", help="no progress bar, no setup or evaluation lines")
    p.set_defaults(run=run_command)


def run_command(args):
    from microgpt.run import RunOptions, signal_name, train_run

    resolve_options(args)
    directory, run, data = resume_run(args) if args.resume else new_run(args)
    with directory:
        write_run_config(directory.file(CONFIG_TOML), run)
        backend = get_backend(run.backend, run.dtype)
        if not args.quiet:
            print_setup(run, data, directory.path)
        note_cut_documents(data)
        backend.prepare(run.params, notify=lambda line: print(f"note: {line}", flush=True))
        options = RunOptions(stop_step=args.stop_after, save_every=args.save_every,
                             sample_every=0 if args.quiet else sample_every(args, run),
                             temperature=args.temperature, progress=not args.quiet)
        outcome = train_run(backend, run, data, directory, options, say=quiet if args.quiet else print)
        resume_hint = f"python -m microgpt train --resume {shlex.quote(directory.path)}"
        if outcome.status == "interrupted":
            print(f"\ninterrupted by {signal_name(outcome.signal)}: saved the checkpoint of step {outcome.step} of "
                f"{run.train_config.steps} in {directory.path}\nresume with: {resume_hint}", file=sys.stderr)
            return outcome.exit_code
        write_loss_plot(directory.path, run, outcome)
        report(args, outcome, run, data, directory.path, backend, resume_hint)
    return 0


# ------------------------------------------------------------------ new and resumed runs

def resolve_options(args):
    """Fill the options the command line left out from --config's file and --preset (see
    microgpt.configfile for the order); args.sources says where each filled-in value came from."""
    file_values = read_config_file(args.config) if args.config else {}
    args.sources = {}
    for name, (value, source) in layered_options(file_values, args.config, args.preset).items():
        if getattr(args, name) is None:
            setattr(args, name, value)
            args.sources[name] = source


def new_run(args):
    """A fresh run from the options: (locked RunDirectory, Checkpoint at step 0, data)."""
    from microgpt.run import RunDirectory, default_run_dir

    if args.out is not None and os.path.exists(os.path.join(args.out, CHECKPOINT_JSON)):
        raise UsageError(f"{args.out} already holds a run; continue it with --resume {args.out}, "
                         f"or choose another --out (nothing was changed)")
    data_path = find_data(args.data or BUNDLED_NAMES)
    given = {name: getattr(args, name) for name in MODEL_OPTIONS + TRAIN_OPTIONS if getattr(args, name) is not None}
    block_size = given.get("block_size", _default(GPTConfig, "block_size"))
    check_block_size(block_size)   # before the data is read with it
    val_fraction = 0.1 if args.val_fraction is None else args.val_fraction
    data = load_data(data_path, block_size, args.data_mode or "auto", val_fraction, progress=not args.quiet)
    backend = args.backend or "scalar"
    config = GPTConfig(data.tokenizer.vocab_size, **{k: v for k, v in given.items() if k in MODEL_OPTIONS})
    train = {k: v for k, v in given.items() if k in TRAIN_OPTIONS}
    steps = train.get("steps", _default(TrainConfig, "steps"))
    if val_fraction:
        train.setdefault("eval_every", max(1, steps // 10))
        train.setdefault("eval_tokens", EVAL_TOKENS[backend])
    elif "eval_every" in train or "eval_tokens" in train:
        raise UsageError("--val-fraction 0 holds nothing out, so there is nothing to evaluate on; "
                         "leave out --eval-every and --eval-tokens, or hold out data")
    train_config = TrainConfig(**train)
    config.validate()
    train_config.validate()
    check_size(config, train_config, backend)
    data.check_fits(train_config.batch_size)
    check_stop_after(args.stop_after, 0)
    directory = RunDirectory.create(args.out or default_run_dir(data_path))
    run = Checkpoint.start(config, train_config, data.tokenizer, data.spec, backend, args.dtype or "float64")
    return directory, run, data


def resume_run(args):
    """The run in args.resume, checked against the options and its data: (locked RunDirectory, Checkpoint, data)."""
    from microgpt.run import RunDirectory

    if args.out is not None and os.path.abspath(args.out) != os.path.abspath(args.resume):
        raise UsageError("--out cannot be used with --resume: a resumed run stays in its own directory")
    directory = RunDirectory.open(args.resume)
    try:
        run = load_checkpoint(args.resume)
        check_resume_options(args, run)
        run.train_config = extended(run, args.steps, args.resume)
        check_stop_after(args.stop_after, run.step)
        run.backend = args.backend or run.backend
        run.dtype = args.dtype or run.dtype
        data = resumed_data(args, run)
        check_size(run.params.config, run.train_config, run.backend)
    except BaseException:
        directory.close()
        raise
    return directory, run, data


def extended(run, steps, run_dir):
    """The run's TrainConfig, with `steps` if given: more steps extend a run (the schedule is recomputed)."""
    config = run.train_config
    if steps is not None and steps != config.steps:
        if steps <= run.step:
            raise UsageError(f"--steps {steps} is not after step {run.step}, where the run in {run_dir} is; "
                             f"give more steps to extend it")
        config = replace(config, steps=steps).validate()
    if run.step >= config.steps:
        raise UsageError(f"the run in {run_dir} is complete ({run.step} of {config.steps} steps); "
                         f"extend it with --steps N (N > {run.step}), or sample from it with: "
                         f"python -m microgpt sample {shlex.quote(run_dir)}")
    return config


def check_resume_options(args, run):
    """Options that define the run (model shape, schedule, data, ...) must be left out or equal the run's."""
    for name, actual in run_values(run).items():
        given = getattr(args, name)
        if name == "steps" or given is None or (name == "data_mode" and given == "auto"):
            continue
        if given != actual:
            option = "--data" if name == "data_mode" else "--" + name.replace("_", "-")
            label = "data" if name == "data_mode" else name
            source = args.sources.get(name)
            as_typed = (option if given else "--no-" + option[2:]) if isinstance(given, bool) else f"{option} {given}"
            asked = f"{label} {given} (from {source})" if source else as_typed
            leave = (f"leave {option} out" if not source else f"leave {source} out" if source.startswith("--")
                     else f"take {label} out of {source.split(' in ')[-1]}")
            raise UsageError(f"{asked} does not match the run's {label} {actual}: a resumed run keeps its "
                             f"model, data and schedule; {leave}, or start a new run with --out")


def run_values(run):
    """The value of every run-defining option in `run`, by option name."""
    values = {name: getattr(run.params.config, name) for name in MODEL_OPTIONS}
    values.update({name: getattr(run.train_config, name) for name in TRAIN_OPTIONS})
    values["data_mode"] = run.data.mode if run.data else "lines"
    values["val_fraction"] = run.data.val_fraction if run.data else 0.0
    return values


def resumed_data(args, run):
    """The run's data, read as the run read it, after checking it is the very same text."""
    spec = run.data
    data_path = args.data or (spec.path if spec else None)
    if data_path is None:
        raise UsageError(f"the checkpoint in {args.resume} does not record its training file; give it: "
                         f"python -m microgpt train FILE --resume {shlex.quote(args.resume)}")
    mode, val_fraction = (spec.mode, spec.val_fraction) if spec else ("lines", 0.0)
    data = load_data(find_data(data_path), run.params.config.block_size, mode, val_fraction)
    check_same_data(run, data, data_path)
    return data


def check_same_data(run, data, data_path):
    """The data must be the run's: the same vocabulary, and (when recorded) the same text."""
    chars, known = data.tokenizer.chars, run.tokenizer.chars
    if chars != known:
        new = "".join(sorted(set(chars) - set(known)))
        missing = "".join(sorted(set(known) - set(chars)))
        diff = ", ".join(part for part in (f"has {new!r} which the run never saw" if new else "",
                                           f"lacks {missing!r}" if missing else "") if part)
        raise UsageError(f"{data_path} has a different vocabulary from the run's ({diff}); "
                         f"resume with the file the run was trained on")
    if run.data is not None and data.spec.sha256 != run.data.sha256:
        raise UsageError(f"{data_path} holds different text from what the run was trained on "
                         f"({run.data.path}, {run.data.size:,} {'documents' if run.data.mode == 'lines' else 'characters'})"
                         f", so the data order would change; resume with that file, or start a new run")


def find_data(path):
    """`path`, or a clear error; a missing names.txt or shakespeare.txt points to the copy microgpt ships."""
    if not os.path.exists(path) and os.path.basename(path) in BUNDLED:
        bundled = BUNDLED[os.path.basename(path)]
        raise UsageError(f"{path}: no such file; microgpt ships a copy at {bundled} "
                         f"(and the repository has it in data/)")
    return path


def check_stop_after(stop_after, step):
    if stop_after is not None and stop_after <= step:
        raise UsageError(f"--stop-after {stop_after} is not after step {step}, where the run is; "
                         f"give a later step")


def quiet(line):
    """What --quiet prints of the lines a run reports while it trains: nothing."""


def sample_every(args, run):
    """--sample-every, or by default at each evaluation (never when nothing is evaluated)."""
    return run.train_config.eval_every if args.sample_every is None else args.sample_every


# ------------------------------------------------------------------ printing

def print_setup(run, data, run_dir):
    config, train_config, tokenizer = run.params.config, run.train_config, run.tokenizer
    path = shown_path(data.spec.path)
    why = f"auto: {data.mode_reason}" if data.mode_reason != "as asked" else f"--data {data.mode}"
    print(f"data: {path}, read as {data.mode} ({why})")
    print(f"      {data.describe()}; vocabulary of {tokenizer.vocab_size} ({tokenizer.describe()})")
    print(f"model: n_embd {config.n_embd}, n_head {config.n_head}, n_layer {config.n_layer}, "
        f"block_size {config.block_size}: {short_summary(config)}")
    changes = describe_components(config, only_changes=True)
    if changes:
        print(f"       {changes}")
    print(f"training: {train_config.steps} steps, batch {train_config.batch_size}, {schedule_text(train_config)}, "
        f"Adam β1 {train_config.beta1} β2 {train_config.beta2}, seed {train_config.seed}, backend {run.backend}"
        f"{'' if run.dtype == 'float64' else f' ({run.dtype})'}")
    if train_config.eval_every and data.spec.val_fraction:
        print(f"evaluation: every {train_config.eval_every} steps, on {train_config.eval_tokens:,} predictions "
            f"of validation data and as many of training data")
    resumed = f" (resuming at step {run.step})" if run.step else ""
    print(f"run directory: {run_dir}{resumed}")


def schedule_text(c):
    """e.g. "lr 0.01 decaying linearly to 0" or "lr 0.001, 100 warm-up steps, cosine decay to 0.0001"."""
    parts = [f"lr {c.lr:g}"]
    if c.warmup:
        parts.append(f", {c.warmup} warm-up steps,")
    parts.append(f" {'decaying linearly' if c.schedule == 'linear' else 'cosine decay'} to {c.min_lr:g}")
    extras = [f"grad clip {c.grad_clip:g}" if c.grad_clip else "",
              f"weight decay {c.weight_decay:g}" if c.weight_decay else ""]
    return "".join(parts) + "".join(f", {e}" for e in extras if e)


def shown_path(path):
    """A path as the user would type it from here: relative when it is below the current directory."""
    relative = os.path.relpath(path)
    return path if relative.startswith("..") else relative


def note_cut_documents(data):
    cut = data.num_cut() if data.mode == "lines" else 0
    if cut:
        block = data.block_size
        print(f"note: {cut:,} of {len(data):,} documents are longer than the context "
            f"(block_size {block}: BOS + {block - 1} characters) and were cut; "
            f"a larger --block-size keeps them whole", file=sys.stderr)


def report(args, outcome, run, data, run_dir, backend, resume_hint):
    """What a run that stopped normally prints: losses against the yardsticks, and samples or how to continue."""
    from microgpt.evaluation import perplexity
    from microgpt.generate import default_prompt, generate_many

    tail = outcome.results[-100:]
    if tail:
        print(f"mean training loss over the last {len(tail)} steps: {sum(r.loss for r in tail) / len(tail):.4f}")
    if outcome.evaluations:
        last = outcome.evaluations[-1]
        print(f"validation loss {last.val_loss:.4f} (perplexity {perplexity(last.val_loss):.2f}), "
            f"training loss {last.train_loss:.4f}, each on {run.train_config.eval_tokens:,} predictions")
    if outcome.baselines:
        b = outcome.baselines
        model = f" · this model {outcome.evaluations[-1].val_loss:.3f}" if outcome.evaluations else ""
        print(f"yardsticks on the same validation predictions: uniform {b['uniform']:.3f} · "
            f"unigram {b['unigram']:.3f} · bigram {b['bigram']:.3f}{model}")
    if outcome.best:
        print(f"best validation loss {outcome.best.val_loss:.4f} at step {outcome.best.step} "
            f"(kept in {os.path.join(run_dir, 'best')})")
    if outcome.status == "stopped":
        print(f"\nstopped after step {outcome.step} of {run.train_config.steps}; "
            f"checkpoint saved in {run_dir}\ncontinue with: {resume_hint}")
        return
    lines_mode = data.mode == "lines"
    num = (20 if lines_mode else 1) if args.samples is None else args.samples
    if num > 0:
        texts = generate_many(backend, run.params, run.tokenizer, num, seed=run.train_config.seed,
                              temperature=args.temperature, prompt=default_prompt(run.tokenizer),
                              max_new_tokens=None if lines_mode else TEXT_SAMPLE_CHARS)
        print(f"\n{num} sample{'s' if num > 1 else ''} (temperature {args.temperature}):")
        for text in texts:
            print("\n".join("  " + line for line in text.strip("\n").splitlines()) if not lines_mode else f"  {text}")
    files = ["log.csv", "eval.csv", "loss.png"] if outcome.evaluations else ["log.csv", "loss.png"]
    best = ", best/" if outcome.best else ""
    print(f"\nwrote {run_dir}/: {CHECKPOINT_JSON} + weights (checkpoint){best}, {', '.join(files)}")
    print(f"sample more with: python -m microgpt sample {shlex.quote(run_dir)}")


def write_loss_plot(run_dir, run, outcome):
    """loss.png from the logs; a plot that cannot be drawn is not worth failing a finished run for."""
    from microgpt.viz.plots import plot_run
    try:
        return plot_run(run_dir, run.params.config.vocab_size, os.path.join(run_dir, "loss.png"))
    except (OSError, ValueError) as e:
        print(f"note: could not draw loss.png ({e})", file=sys.stderr)
        return None
