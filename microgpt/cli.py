"""`python -m microgpt COMMAND ...`: parse arguments, call the library, print.

Each command lives in `microgpt/commands/NAME.py` with two functions,
`add_parser(subparsers)` and `run(args)`. This module only dispatches and turns
errors into one line: a `MicrogptError` (bad file, bad option) prints
"microgpt CMD: error: ..." and exits with its code (1, or 2 for usage); Ctrl-C exits
130. An OSError nobody foresaw (a full disk, a vanished directory) is one line
too, and anything else is reported as the bug it is, still in one line: no input
should ever produce a traceback. `--debug` shows the traceback instead.
"""

import argparse
import importlib
import os
import sys
import warnings

from microgpt.errors import MicrogptError

COMMANDS = ("train", "sample", "eval", "predict", "compare", "graph", "attention", "gradcheck", "bench", "summary")


class ArgumentParser(argparse.ArgumentParser):
    """argparse, but a usage error is one line (with a pointer to --help) and exit code 2."""

    def error(self, message):
        self.exit(2, f"{self.prog}: error: {message} (see {self.prog} --help)\n")

    def parse_args(self, args=None, namespace=None):
        args = sys.argv[1:] if args is None else list(args)
        # argparse turns "--opt=--" into [] without calling the option's type: refuse it here
        for token in args:
            if token.startswith("--") and token.endswith("=--"):
                command = next((a for a in args if a in COMMANDS), None)
                prog = f"{self.prog} {command}" if command else self.prog
                self.exit(2, f"{prog}: error: argument {token[:-3]}: expected one value, got '--' "
                             f"(see {prog} --help)\n")
        return super().parse_args(args, namespace)


def build_parser():
    parser = ArgumentParser(
        prog="microgpt",
        description="A GPT built from scalar autograd, and the same GPT as Numba kernels.")
    parser.add_argument("--debug", action="store_true", help="show full tracebacks on errors")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND", required=True,
                                       parser_class=ArgumentParser)
    for name in COMMANDS:
        importlib.import_module(f"microgpt.commands.{name}").add_parser(subparsers)
    return parser


def main(argv=None):
    """Run one command; returns the exit code (argparse's own exits included, so tests can call this)."""
    usable_output()
    argv = sys.argv[1:] if argv is None else list(argv)
    try:
        with warnings.catch_warnings():
            if "--debug" not in argv:   # numpy's overflow and matplotlib's font warnings say nothing a user can act on
                warnings.simplefilter("ignore")
            return _run(argv)
    except KeyboardInterrupt:   # while parsing, before a command could take it
        print("microgpt: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:     # `microgpt sample RUN | head -1`: the reader has all it wanted
        _silence_stdout()
        return 141              # 128 + SIGPIPE, what a shell reports for a command ended that way


def _run(argv):
    try:
        args = build_parser().parse_args(argv)
    except SystemExit as e:  # argparse printed --help, or its one-line usage error
        return e.code
    try:
        return args.run(args) or 0
    except BrokenPipeError:
        raise
    except (Exception, KeyboardInterrupt) as e:
        if args.debug:
            raise
        message, code = explain(e)
        print(f"microgpt {args.command}: {message}", file=sys.stderr)
        return code


def usable_output():
    """Output that cannot crash a command: a closed stream is replaced by os.devnull (what was
    closed wanted nothing), and characters an encoding lacks are written as escapes."""
    for name in ("stdout", "stderr"):
        stream = getattr(sys, name)
        if stream is None or stream.closed:
            setattr(sys, name, open(os.devnull, "w", encoding="utf-8"))
    survive_any_encoding()


def _silence_stdout():
    """After a broken pipe, point stdout at os.devnull so Python's exit does not complain while flushing it."""
    try:
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
    except (OSError, ValueError):
        pass


def survive_any_encoding():
    """Make stdout and stderr write characters their encoding lacks as escapes (β -> \\u03b2) instead
    of crashing: Windows redirects output as cp1252, and a vocabulary can hold any character."""
    for stream in (sys.stdout, sys.stderr):
        reconfigure = getattr(stream, "reconfigure", None)
        if reconfigure is not None:
            try:
                reconfigure(errors="backslashreplace")
            except (ValueError, OSError):   # a closed stream: nothing will be written to it anyway
                pass


def explain(error):
    """(one-line message, exit code) for an exception that ended a command."""
    if isinstance(error, MicrogptError):
        return f"error: {error}", error.exit_code
    if isinstance(error, KeyboardInterrupt):
        return "interrupted", 130
    if isinstance(error, OSError):  # the disk, not microgpt: a full disk, a file that vanished
        where = f": {error.filename}" if error.filename else ""
        return f"error: {error.strerror or error}{where}", 1
    if isinstance(error, MemoryError):
        return "error: out of memory; try a smaller model or batch", 1
    return (f"internal error: {type(error).__name__}: {error} "
            f"(this is a bug in microgpt; rerun with --debug for the traceback)"), 1


def add_run_arguments(parser, default_backend="scalar", best=True):
    """RUN_DIR, and the options every command that reads a trained run shares: --best, --backend, --dtype."""
    from microgpt.backend import BACKENDS, DTYPES
    parser.add_argument("run_dir", metavar="RUN_DIR", help="a run directory written by `microgpt train`")
    if best:
        parser.add_argument("--best", action="store_true",
                            help="use the checkpoint with the best validation loss (RUN_DIR/best), not the latest")
    parser.add_argument("--backend", choices=BACKENDS, default=default_backend,
                        help=f"engine that computes the model (default {default_backend})")
    parser.add_argument("--dtype", choices=DTYPES, default="float64",
                        help="precision of the numba backend (default float64)")


# The components of the block: GPTConfig's fields beside the sizes, one flag each.
COMPONENT_OPTIONS = ("norm", "norm_weights", "embed_norm", "final_norm", "mlp", "mlp_ratio", "pos",
                     "attn_window", "bias", "tie_weights", "dropout", "init")


def add_model_arguments(parser):
    """--preset and one option per component of the block; each is None unless given, so that a
    preset, a config file and a resumed run can tell what the command line asked for."""
    from microgpt.config import INITS, MLPS, NORMS, POSITIONS, PRESETS
    on_off = argparse.BooleanOptionalAction
    group = parser.add_argument_group(
        "architecture (default: the microgpt preset; options given beside --preset override it)")
    group.add_argument("--preset", choices=tuple(PRESETS),
                       help="microgpt: RMSNorm without weights after the embedding and before each branch, ReLU, "
                            "learned positions, no biases, N(0, 0.08²) init; gpt2: GPT-2's block: LayerNorm "
                            "with gain and bias before each branch and before the head (none after the "
                            "embedding), GELU, biases, the head tied to wte, GPT-2's init")
    group.add_argument("--norm", choices=NORMS,
                       help="rmsnorm: x/rms(x); layernorm: (x - mean)/std; scalenorm: √C·x/‖x‖ (default rmsnorm)")
    group.add_argument("--norm-weights", action=on_off,
                       help="a learned gain per channel (and a bias, for layernorm) in every norm (default off)")
    group.add_argument("--embed-norm", action=on_off,
                       help="normalise the embedding before the first block (default on)")
    group.add_argument("--final-norm", action=on_off,
                       help="normalise the residual stream before lm_head (default off)")
    group.add_argument("--mlp", choices=MLPS,
                       help="relu; gelu (tanh form, GPT-2's); swiglu (gated, a third matrix, hidden width "
                            "2/3 of the others' so the count stays comparable) (default relu)")
    group.add_argument("--mlp-ratio", type=positive_int, metavar="K",
                       help="the MLP's hidden width is K·n_embd (default 4)")
    group.add_argument("--pos", choices=POSITIONS,
                       help="learned: a table wpe; sinusoidal: a fixed table, no parameters (default learned)")
    group.add_argument("--attn-window", type=non_negative_int, metavar="W",
                       help="attend to the last W positions only; 0: all of them (default 0)")
    group.add_argument("--bias", action=on_off, help="a bias on every linear layer but lm_head (default off)")
    group.add_argument("--tie-weights", action=on_off,
                       help="lm_head is wte: one matrix embeds tokens and scores them (default off)")
    group.add_argument("--dropout", type=float_in(0, 1, include_high=False), metavar="P",
                       help="in training, zero an attention weight or a branch's output with probability P "
                            "(default 0)")
    group.add_argument("--init", choices=INITS,
                       help="microgpt: N(0, init_std²) everywhere; gpt2: N(0, 0.02²), residual projections "
                            "/ √(2·n_layer), gains 1, biases 0 (default microgpt)")


def model_options(args):
    """The components the command line asks for: the preset's, then the options given over them."""
    from microgpt.config import PRESETS
    values = dict(PRESETS[args.preset]) if args.preset else {}
    values.update({name: getattr(args, name) for name in COMPONENT_OPTIONS if getattr(args, name) is not None})
    return values


# argparse `type=` helpers: a bad value becomes a one-line usage error.

def positive_int(text):
    return _number(text, int, "a whole number", lambda v: v >= 1, "at least 1")


def non_negative_int(text):
    return _number(text, int, "a whole number", lambda v: v >= 0, "0 or more")


def positive_float(text):
    return _number(text, float, "a number", lambda v: v > 0 and v != float("inf"), "positive and finite")


def non_negative_float(text):
    return _number(text, float, "a number", lambda v: 0 <= v < float("inf"), "0 or more, and finite")


def float_in(low, high, include_high=True):
    """An argparse type: a number from low to high (high itself only if include_high)."""
    def parse(text):
        ok = (lambda v: low <= v <= high) if include_high else (lambda v: low <= v < high)
        return _number(text, float, "a number", ok, f"at least {low:g} and {'at most' if include_high else 'below'} {high:g}")
    return parse


def png_path(text):
    """A file name ending in .png, for the commands that draw with matplotlib."""
    if not text.lower().endswith(".png"):
        raise argparse.ArgumentTypeError(f"{text}: give a file name ending in .png")
    return text


MAX_DIGITS = 30   # no option of microgpt's needs a longer number; Python refuses past 4,300 digits anyway


def _number(text, kind, kind_name, ok, range_name):
    digits = text.strip().lstrip("+-")
    if digits.isdigit() and len(digits) > MAX_DIGITS:
        raise argparse.ArgumentTypeError(f"{text[:12]}... ({len(digits):,} digits) is out of range: "
                                         f"it must be {range_name}")
    try:
        value = kind(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not {kind_name}") from None
    if not ok(value):
        raise argparse.ArgumentTypeError(f"{text} is out of range: it must be {range_name}")
    return value
