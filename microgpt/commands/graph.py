"""`microgpt graph [expression|neuron|token|document] --out FILE.svg`: draw a computation graph.

A document is drawn one page per position (FILE-pos0.svg, FILE-pos1.svg, ...): each
page draws that prediction and folds the other positions into one box each.
"""

import os
import time
from dataclasses import dataclass, field

from microgpt.cli import positive_int
from microgpt.errors import MicrogptError, UsageError
from microgpt.viz.graph import DEFAULT_BUDGET

SUBJECTS = ("expression", "neuron", "token", "document")
FORMATS = ("svg", "png", "pdf", "dot")
INSTALL_HINT = "install Graphviz (apt-get install graphviz, brew install graphviz or conda install graphviz)"


def add_parser(subparsers):
    p = subparsers.add_parser(
        "graph", help="draw a computation graph (values, ops, gradients) as SVG",
        description="Draw the computation graph of a small expression, a neuron, or the GPT's loss "
                    "(one token, or a whole document) after backward, with each value's data and grad. "
                    "A GPT graph is grouped by module; groups over the budget are folded into boxes.")
    p.add_argument("subject", nargs="?", choices=SUBJECTS, default="token",
                   help="what to draw (default token: one token through the model and its loss)")
    p.add_argument("--out", required=True,
                   help="output file; its extension picks the format: .svg, .png, .pdf or .dot (source only); "
                        "a document writes one file per position, named FILE-pos0.svg, FILE-pos1.svg, ...")
    p.add_argument("--run-dir", metavar="RUN_DIR",
                   help="draw the model of this `train` run directory (default: a fresh model, seed 42)")
    p.add_argument("--text", default="emma", help="the document for token/document (default emma)")
    p.add_argument("--pos", type=int, default=0,
                   help="for token: which prediction, 0 = from BOS to the first letter (default 0)")
    p.add_argument("--expand", action="append", default=[], metavar="SCOPE",
                   help="draw this scope node by node, e.g. layer0.attn.head0 or loss; repeatable")
    p.add_argument("--budget", type=positive_int, default=DEFAULT_BUDGET,
                   help=f"most values drawn one by one; the rest fold into boxes (default {DEFAULT_BUDGET})")
    p.add_argument("--grad-colors", action="store_true", help="fill values by |grad| on a log scale")
    p.set_defaults(run=run)


def run(args):
    fmt = output_format(args.out)
    subject = build(args)
    from microgpt.viz.graph import draw_graph

    options = dict(budget=args.budget, expand=args.expand, color_by_grad=args.grad_colors,
                   title=subject.title, tensors=subject.tensors)
    pages = [(args.out, {})] if not subject.positions else [
        (page_path(args.out, p) if len(subject.pages) > 1 else args.out,
         {"positions": subject.positions, "focus": p}) for p in subject.pages]
    for path, where in pages:
        try:
            graph = draw_graph(subject.root, **options, **where)
        except ValueError as e:
            raise UsageError(f"--expand: {e}") from None
        start = time.perf_counter()
        write(graph, path, fmt)
        print(f"wrote {path} (rendered in {time.perf_counter() - start:.2f} s): {subject.title}"
              + (f" [position {where['focus']}]" if len(pages) > 1 else ""))
    return 0


def page_path(path, position):
    """graph.svg -> graph-pos3.svg"""
    stem, ext = os.path.splitext(path)
    return f"{stem}-pos{position}{ext}"


def output_format(path):
    fmt = os.path.splitext(path)[1].lstrip(".").lower()
    if fmt not in FORMATS:
        raise UsageError(f"--out {path}: end the file name with one of .{', .'.join(FORMATS)}")
    return fmt


@dataclass
class Subject:
    """What to draw: a root after backward, a title, and for the GPT how to page and label it."""

    root: object
    title: str
    tensors: dict = None                            # parameter shapes and row names, for the boxes
    positions: list = field(default_factory=list)   # [(creation mark, name)] of each position
    pages: list = field(default_factory=list)       # which positions get a page


def build(args):
    """The `Subject` chosen on the command line, its gradients filled in."""
    from microgpt.viz import subjects

    if args.subject == "expression":
        return Subject(subjects.expression(), "L = (a·b + c)·f")
    if args.subject == "neuron":
        return Subject(subjects.neuron(), "o = tanh(x1·w1 + x2·w2 + b)")
    model, tokenizer = subjects.trained_model(args.run_dir) if args.run_dir else subjects.fresh_model()
    tokens = tokenizer.document(args.text, model.config.block_size)
    source = args.run_dir or "a fresh model (seed 42)"
    name = lambda t: tokenizer.decode([t]) or "BOS"
    marks = []
    if args.subject == "document":
        loss = subjects.document_loss(model, tokens, marks)
        title = f"loss of the document {args.text!r}, {len(tokens) - 1} predictions, {source}: {loss.data:.4f}"
        pages = list(range(len(marks)))
    else:
        try:
            loss = subjects.token_loss(model, tokens, args.pos, marks)
        except ValueError as e:
            raise UsageError(f"--pos: {e}") from None
        seen = tokenizer.decode(tokens[:args.pos + 1]) or "BOS"
        title = (f"loss of predicting {name(tokens[args.pos + 1])!r} after {seen!r} (position {args.pos} of "
                 f"{args.text!r}), {source}: {loss.data:.4f}")
        pages = [args.pos]
    positions = [(mark, f"{name(tokens[p])} → {name(tokens[p + 1])}") for p, mark in enumerate(marks)]
    return Subject(loss, title, subjects.tensor_info(model, tokenizer), positions, pages)


def write(graph, path, fmt):
    """Render `graph` to `path`; without Graphviz's `dot`, write the .dot source and say how to get it."""
    import graphviz

    directory = os.path.dirname(path)
    if directory:
        os.makedirs(directory, exist_ok=True)
    if fmt == "dot":
        with open(path, "w", encoding="utf-8") as f:
            f.write(graph.source)
        return
    try:
        data = graph.pipe(format=fmt)
    except graphviz.ExecutableNotFound:
        source = os.path.splitext(path)[0] + ".dot"
        if os.path.exists(source):      # never over a file the user has: it may be theirs
            raise MicrogptError(f"Graphviz's `dot` was not found, and the source cannot be written instead: "
                                f"{source} already exists; {INSTALL_HINT}, or choose another --out") from None
        with open(source, "w", encoding="utf-8") as f:
            f.write(graph.source)
        raise MicrogptError(f"Graphviz's `dot` was not found, so only the source {source} was written: "
                            f"{INSTALL_HINT}, then run: dot -T{fmt} {source} -o {path}") from None
    with open(path, "wb") as f:
        f.write(data)
