"""`python -m microgpt COMMAND ...`: parse arguments, call the library, print.

Each command lives in `microgpt/commands/NAME.py` with two functions,
`add_parser(subparsers)` and `run(args)`. This module only dispatches and turns
errors into one line: a `MicrogptError` (bad file, bad option) prints
"microgpt: error: ..." and exits with its code (1, or 2 for usage); Ctrl-C exits
130. `--debug` shows the traceback instead.
"""

import argparse
import importlib
import sys

from microgpt.errors import MicrogptError

COMMANDS = ("train", "gradcheck", "bench")


class ArgumentParser(argparse.ArgumentParser):
    """argparse, but a usage error is one line (with a pointer to --help) and exit code 2."""

    def error(self, message):
        self.exit(2, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


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
    argv = sys.argv[1:] if argv is None else argv
    args = build_parser().parse_args(argv)
    try:
        return args.run(args) or 0
    except MicrogptError as e:
        if args.debug:
            raise
        print(f"microgpt {args.command}: error: {e}", file=sys.stderr)
        return e.exit_code
    except KeyboardInterrupt:
        if args.debug:
            raise
        print("\ninterrupted", file=sys.stderr)
        return 130


# argparse `type=` helpers: a bad value becomes a one-line usage error.

def positive_int(text):
    return _number(text, int, "a whole number", lambda v: v >= 1, "at least 1")


def non_negative_int(text):
    return _number(text, int, "a whole number", lambda v: v >= 0, "0 or more")


def positive_float(text):
    return _number(text, float, "a number", lambda v: v > 0 and v != float("inf"), "positive and finite")


def _number(text, kind, kind_name, ok, range_name):
    try:
        value = kind(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not {kind_name}") from None
    if not ok(value):
        raise argparse.ArgumentTypeError(f"{text} is out of range: it must be {range_name}")
    return value
