"""The docs run: every command and Python block of README.md and docs/*.md is executed and checked.

Sybil (https://sybil.readthedocs.io) finds the fenced blocks and runs them as pytest
items, in page order, one namespace per page; this module says what each kind of
block means (docs/writing-docs.md is the guide for contributors):

    ```console   `$ command` lines, each followed by the output it must print. The command
                 runs with bash in the page's directory; stdout and stderr are read together,
                 as a terminal shows them. The output is compared exactly, except that `...`
                 stands for any text (doctest's ELLIPSIS) and times and speeds ("0.13 s",
                 "30.20step/s", "00:33") may differ. A command may exit non-zero only if the
                 output shown is microgpt's one-line error.
    ```python    run in the page's namespace; a block that starts with `>>>` is a doctest whose
                 output is compared. A block whose first line is `# from PATH` is a quotation
                 of PATH: it is checked to appear there, line for line, not run.

Each page runs in a fresh directory that holds what a clone has and the docs use
(data/, examples/, benchmarks/); microgpt itself is imported from this checkout. Every
page of docs/ also starts with the run the README's quick start trains (runs/names),
as a reader who followed it has. That run is trained once per test
session, by the quick start's own command, and replayed wherever that command appears.

After a change that moves the figures the docs show, regenerate them with

    MICROGPT_UPDATE_DOCS=1 python -m pytest README.md docs

which rewrites every output block that no longer matches with what its command printed
(keeping the block's `...` elisions); read the diff, since prose may quote the figures too.

Commands that cannot run inside the suite say why on their own line, visibly:

    $ python -m microgpt bench        # not run by the test suite: it takes about 10 minutes

A `microgpt` command marked so is still parsed by microgpt's argument parser, and a
script must exist. `pip install` is never run (the suite runs in an installed
environment): the suite checks that it installs this project and that the extras it
names are declared in pyproject.toml, then runs whatever follows its `&&`.
"""

import atexit
import doctest
import os
import re
import shlex
import shutil
import subprocess
import sys
import tempfile
from functools import lru_cache

try:
    import tomllib
except ModuleNotFoundError:   # Python 3.10
    import tomli as tomllib

from sybil import Document, Sybil
from sybil.parsers.markdown import CodeBlockParser, PythonCodeBlockParser

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CLONE_DIRS = ("data", "examples", "benchmarks")   # what the docs read from a clone, copied to each page
QUICK_START = "python -m microgpt train data/names.txt"
QUICK_START_RUN = os.path.join("runs", "names")
COMMAND_TIMEOUT = 600

NOT_RUN = re.compile(r"\s#\s*not run by the test suite: (?P<reason>\S.*)$")
QUOTE = re.compile(r"^# from (?P<path>[\w./-]+\.py)\b")
ERROR_LINE = re.compile(r"^microgpt( \w+)?: (error|internal error):", re.M)
# Figures that differ from run to run: durations, rates, clock times. Both the output and
# the doc have them replaced before comparing.
VARYING = [
    (re.compile(r"\d+(\.\d+)?\s?(s|ms|µs|us)\b"), "<time>"),
    (re.compile(r"\d+(\.\d+)?\s?(step|it)/s\b"), "<rate>"),
    (re.compile(r"\b\d\d:\d\d\b"), "<clock>"),
]


# -------------------------------------------------------------------- the page's directory

def fresh_clone(with_quick_start):
    """A new directory holding CLONE_DIRS (and the quick-start run if asked): where a page runs."""
    page_dir = tempfile.mkdtemp(prefix="microgpt-docs-")
    for name in CLONE_DIRS:
        shutil.copytree(os.path.join(REPO_ROOT, name), os.path.join(page_dir, name),
                        ignore=shutil.ignore_patterns("__pycache__", "*.pyc", ".ipynb_checkpoints"))
    if with_quick_start:
        shutil.copytree(quick_start()[1], os.path.join(page_dir, QUICK_START_RUN))
    return page_dir


class Page(Document):
    """A sybil Document that knows its own path (its namespace's `__file__`), as `setup` needs."""

    @classmethod
    def parse(cls, path, *parsers, encoding="utf-8"):
        document = super().parse(path, *parsers, encoding=encoding)
        document.namespace["__file__"] = path
        return document


def setup(namespace):
    """Before a page: a fresh directory, and the working directory moved there."""
    with_quick_start = os.path.dirname(os.path.abspath(namespace["__file__"])) == os.path.join(REPO_ROOT, "docs")
    namespace["_page_dir"] = fresh_clone(with_quick_start)
    namespace["_old_cwd"] = os.getcwd()
    os.chdir(namespace["_page_dir"])


def teardown(namespace):
    os.chdir(namespace["_old_cwd"])
    shutil.rmtree(namespace["_page_dir"], ignore_errors=True)


@lru_cache(maxsize=1)
def quick_start():
    """(what the quick-start command printed, the run directory it wrote), run once per session."""
    scratch = tempfile.mkdtemp(prefix="microgpt-quick-start-")
    atexit.register(shutil.rmtree, scratch, True)
    shutil.copytree(os.path.join(REPO_ROOT, "data"), os.path.join(scratch, "data"))
    result = run_shell(QUICK_START, scratch)
    if result.returncode != 0:
        raise AssertionError(f"the quick start failed:\n{result.stdout}")
    return result.stdout, os.path.join(scratch, QUICK_START_RUN)


# ------------------------------------------------------------------------ console blocks

def parse_session(text):
    """[(command, [expected output lines])] from a console block ("$ " starts a command)."""
    session = []
    for line in text.splitlines():
        if line.startswith("$ "):
            session.append((line[2:], []))
        elif session and session[-1][0].endswith("\\"):
            session[-1] = (session[-1][0][:-1] + line, session[-1][1])   # a continued command
        elif session:
            session[-1][1].append(line)
        else:
            raise ValueError(f"a console block must start with a `$ ` command line, not {line!r}")
    return session


def evaluate_console(example):
    """Run each command of the block in the page's directory and compare what it prints."""
    for line, expected in parse_session(example.parsed):
        not_run = NOT_RUN.search(line)
        if not_run:
            check_not_run(line[:not_run.start()].strip())
            continue
        command = installed_first(line)
        if not command:
            continue
        output, code = run_command(command)
        try:
            check_output(command, expected, output, code)
        except AssertionError:
            if not os.environ.get(UPDATE_DOCS) or (code != 0 and not ERROR_LINE.search(output)):
                raise
            record_update(example.path, line, expected, as_terminal_shows(output))


# ------------------------------------------------------------------ regenerating the docs

UPDATE_DOCS = "MICROGPT_UPDATE_DOCS"
_updates = []    # (page, the command's block as written, as it should be)


def record_update(path, command, expected, actual):
    """Remember to rewrite this command's output in `path` with what it printed (see apply_updates).

    The new output keeps the shape of the old one: where the doc elides lines with a
    `...` line, as many lines before and after it are kept as the doc shows.
    """
    actual = [line.rstrip() for line in actual]
    while actual and not actual[-1]:
        actual.pop()
    if "..." in expected:
        head = expected[:expected.index("...")]
        tail = expected[len(expected) - expected[::-1].index("...")  :]
        tail = [line for line in tail if line.strip()]
        actual = actual[:len(head)] + ["..."] + (actual[len(actual) - len(tail):] if tail else [])
    old = "\n".join(["$ " + command] + expected).rstrip()
    new = "\n".join(["$ " + command] + actual).rstrip()
    _updates.append((path, old, new))


def apply_updates():
    """Write the recorded outputs into the pages (at the end of the session, when every page has run)."""
    for path, old, new in _updates:
        with open(path, encoding="utf-8") as f:
            text = f.read()
        if old in text:
            with open(path, "w", encoding="utf-8") as f:
                f.write(text.replace(old, new, 1))


atexit.register(apply_updates)


def installed_first(command):
    """The command left to run after its `pip install ... &&` part, which is checked, not run.

    The suite runs in an environment where this project is installed already, so
    `pip install . && python -m microgpt train ...` runs the train command, and a lone
    `pip install ...` runs nothing.
    """
    words = shlex.split(command, comments=True)
    if words[:2] != ["pip", "install"]:
        return command.strip()
    install, _, rest = command.partition("&&")
    check_pip_install(shlex.split(install)[2:])
    return rest.strip()


def run_command(command):
    """(output, exit code) of one documented command in the current (page) directory."""
    if command == QUICK_START and not os.path.exists(QUICK_START_RUN):
        output, run_dir = quick_start()     # the same command, already run once this session
        shutil.copytree(run_dir, QUICK_START_RUN)
        return output, 0
    result = run_shell(command, os.getcwd())
    return result.stdout, result.returncode


def run_shell(command, cwd):
    """bash -c COMMAND with this checkout's microgpt and Python first; stdout and stderr together."""
    env = dict(os.environ, PYTHONPATH=REPO_ROOT + os.pathsep + os.environ.get("PYTHONPATH", ""),
               PATH=os.path.dirname(sys.executable) + os.pathsep + os.environ.get("PATH", ""),
               MPLBACKEND="Agg")
    result = subprocess.run(["bash", "-c", command], cwd=cwd, env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, timeout=COMMAND_TIMEOUT)
    result.stdout = result.stdout.decode("utf-8", errors="replace")   # as bytes: a text pipe would turn \r into \n
    return result


def as_terminal_shows(output):
    """Each line as a terminal leaves it: after the last carriage return (progress bars redraw)."""
    lines = []
    for line in output.split("\n"):   # not splitlines(), which would split at \r too
        parts = [part for part in line.split("\r") if part.strip()]
        lines.append(parts[-1] if parts else "")
    return lines


def normalise(lines):
    """Trailing spaces and blank lines dropped, varying figures replaced."""
    text = "\n".join(line.rstrip() for line in lines).strip("\n")
    for pattern, token in VARYING:
        text = pattern.sub(token, text)
    return text + "\n" if text else ""


def check_output(command, expected, output, code):
    want, got = normalise(expected), normalise(as_terminal_shows(output))
    shows_error = bool(ERROR_LINE.search(want))
    if code != 0 and not shows_error:
        raise AssertionError(f"`{command}` exited with {code}:\n{output}")
    if code == 0 and shows_error:
        raise AssertionError(f"`{command}` succeeded, but the doc shows an error:\n{output}")
    if want and not doctest.OutputChecker().check_output(want, got, doctest.ELLIPSIS):
        raise AssertionError(f"`{command}` printed something else than the doc shows:\n"
                             + output_difference(want, got))


def output_difference(want, got):
    return doctest.OutputChecker().output_difference(
        doctest.Example("", want), got, doctest.ELLIPSIS | doctest.REPORT_NDIFF)


def check_not_run(command):
    """A command the suite does not run must still make sense: its options parse, its script exists."""
    words = shlex.split(command)
    if words[:3] == ["python", "-m", "microgpt"]:
        from microgpt.cli import build_parser
        try:
            build_parser().parse_args(words[3:])
        except SystemExit as e:
            raise AssertionError(f"`{command}`: microgpt would refuse these arguments") from e
    elif words[:1] == ["python"] and words[1:2] and words[1].endswith(".py"):
        if not os.path.exists(words[1]):
            raise AssertionError(f"`{command}`: there is no {words[1]}")


def check_pip_install(arguments):
    """`pip install [-e] .[extra,...]`: this project, with extras pyproject.toml declares."""
    targets = [a for a in arguments if not a.startswith("-")]
    declared = pyproject_extras()
    for target in targets:
        match = re.fullmatch(r"\.(\[(?P<extras>[\w,-]+)\])?", target)
        if not match:
            raise AssertionError(f"pip install {target}: the docs install only this project (.)")
        for extra in (match["extras"] or "").split(","):
            if extra and extra not in declared:
                raise AssertionError(f"pip install {target}: pyproject.toml declares no extra {extra!r} "
                                     f"(it has: {', '.join(sorted(declared))})")


@lru_cache(maxsize=1)
def pyproject_extras():
    with open(os.path.join(REPO_ROOT, "pyproject.toml"), "rb") as f:
        return set(tomllib.load(f)["project"].get("optional-dependencies", {}))


# ------------------------------------------------------------------------- python blocks

class QuotingPythonParser(PythonCodeBlockParser):
    """Python blocks run (or doctested) by sybil, except quotations of the source, which are checked."""

    def __call__(self, document):
        for region in super().__call__(document):
            if isinstance(region.parsed, str) and QUOTE.match(region.parsed):
                region.evaluator = evaluate_quote
            yield region


def evaluate_quote(example):
    """The block's lines, after its `# from PATH` line, appear in PATH in the same order, consecutively."""
    first, _, body = example.parsed.partition("\n")
    path = os.path.join(REPO_ROOT, QUOTE.match(first)["path"])
    with open(path, encoding="utf-8") as f:
        source = [line.strip() for line in f]
    quoted = [line.strip() for line in body.strip("\n").splitlines()]
    if not any(source[i:i + len(quoted)] == quoted for i in range(len(source))):
        raise AssertionError(f"this quotation is not in {os.path.relpath(path, REPO_ROOT)} as shown:\n{body}")


# ------------------------------------------------------------------------------- the suite

def docs_sybil(path=REPO_ROOT, patterns=("README.md", "docs/*.md")):
    """The Sybil that runs the docs (and, pointed elsewhere, the harness's own tests)."""
    return Sybil(
        parsers=[CodeBlockParser("console", evaluate_console),
                 QuotingPythonParser(doctest_optionflags=doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE)],
        path=path, patterns=list(patterns), setup=setup, teardown=teardown,
        document_types={".md": Page})
