"""Draw a `Value` DAG with Graphviz: a record per value, an op node before it, left to right.

Small graphs are drawn whole, the picture micrograd's users know:

    [ a | data 2 | grad -3 ] ──> ( * ) ──> [ * | data -6 | grad 1 ]
    [ b | data -3 | grad 2 ] ──┘

A GPT is thousands of values per token, far more than Graphviz lays out in
seconds, so nodes are grouped by where they were made: activations by their name
scope (`embed`, `layer0.attn`, `layer0.attn.head2`, `layer0.attn.residual`,
`layer0.mlp`, `lm_head`, `loss`), parameters by their tensor (`layer0.attn_wq`).
If the whole graph fits in `budget` values it is drawn whole; otherwise every group
is folded into one box that says how many values it holds (a parameter box: which
rows of which table), except the scopes named in `expand`. Scopes become nested
clusters; the residual stream (the embedding and every residual add) is drawn with
thick edges, so the skip connections show even when everything is folded. A note
and a legend at the top say what was folded and how to read the picture.

A graph that spans several positions of a document can be drawn one position at a
time (`draw_pages`): each page draws one position's values and folds every other
position into a single box, so a page stays a readable size however long the text.

The result is a `graphviz.Digraph`: `.pipe("svg")`, `.render(...)`, or leave it as
the last expression of a Jupyter cell to see it inline.
"""

import bisect
import html
import math
from collections import Counter, defaultdict

DEFAULT_BUDGET = 120  # values drawn one by one: a page stays a few screens big and lays out in about a second

PARAM_FILL, SCOPE_FILL, POSITION_FILL = "lightblue", "lightgrey", "wheat"
STREAM_PENWIDTH = "2.5"


def draw_graph(roots, budget=DEFAULT_BUDGET, expand=(), color_by_grad=False, title="",
               tensors=None, positions=None, focus=None):
    """A `graphviz.Digraph` of everything `roots` (a Value or a list of Values) depends on.

    budget         the most values drawn one by one; the rest are folded into boxes
    expand         scopes to draw node by node when the graph is over budget: "layer0.attn"
                   opens that scope and the scopes inside it, "layer0.attn.head0" just that
                   head; a parameter tensor ("layer0.attn_wq") opens only by its exact name
    color_by_grad  fill each value by |grad| on a log scale (pale yellow small, dark red large);
                   a folded box by the largest |grad| it holds; non-finite gradients in violet
    title          a first line for the note at the top
    tensors        {name: (shape, row names or None)} of the parameter tensors, so a folded
                   parameter box can say "rows e, BOS of 27×16" (see `subjects.tensor_info`)
    positions      [(creation mark, name)] where each position of a document begins
                   (`subjects.document_loss(..., marks=...)`), and
    focus          the index of the position to draw: every other position folds into one box
    """
    import graphviz

    nodes = reachable(roots)
    groups = group_nodes(nodes, positions, focus)
    opened = choose_open(groups, budget, expand)
    shade = grad_shader(nodes) if color_by_grad else None
    unit = {}  # node -> the id it is drawn as: its own record, or its group's box
    for index, (key, members) in enumerate(groups.items()):
        for node in members:
            unit[node] = f"v{node._id}" if node in opened else f"group{index}"

    dot = graphviz.Digraph(graph_attr={"rankdir": "LR", "labelloc": "t", "labeljust": "l",
                                       "fontsize": "12", "nodesep": "0.15", "ranksep": "0.3"},
                           node_attr={"fontsize": "10", "height": "0.2"})
    clusters = ClusterTree()
    for key, members in groups.items():
        shown = [node for node in members if node in opened]
        folded = [node for node in members if node not in opened]
        for node in shown:
            clusters.add(node.scope, value_node_statements(node, shade))
        if folded:
            clusters.add(key.cluster, [(unit[folded[0]], box_label(key, folded, bool(shown), tensors),
                                        box_attrs(key, folded, shade))])
    clusters.emit(dot)
    stream = {unit[node] for key, members in groups.items() if key.is_stream for node in members}
    elsewhere = {unit[node] for key, members in groups.items() if key.kind == "position" for node in members}
    params = {unit[node] for key, members in groups.items() if key.is_param for node in members}
    for src, dst in edges(nodes, unit, opened):
        if dst in elsewhere and (src in elsewhere or src in params):
            continue  # how the other positions are computed is their own page's story
        dot.edge(src, dst, **({"penwidth": STREAM_PENWIDTH} if src in stream else {}))
    dot.attr(label=note(title, nodes, opened, groups, budget, shade))
    return dot


def draw_pages(roots, positions, **options):
    """One `draw_graph` per position of `positions`, each drawing that position and folding the rest."""
    return [draw_graph(roots, positions=positions, focus=index, **options) for index in range(len(positions))]


# ------------------------------------------------------------ which nodes, which groups

def reachable(roots):
    """Every Value the roots depend on, roots included, in creation (topological) order."""
    from microgpt.engine import Value

    roots = [roots] if isinstance(roots, Value) else list(roots)
    found = {}
    for root in roots:
        for node in root.topological_order():
            found[node._id] = node
    return [found[i] for i in sorted(found)]


class GroupKey:
    """Where a node was made: a name scope ("layer0.attn.head2"), a parameter tensor ("lm_head"),
    or, on a page of `draw_pages`, another position ("position 3")."""

    __slots__ = ("name", "kind")

    def __init__(self, name, kind):
        self.name, self.kind = name, kind   # kind: "scope", "param" or "position"

    def __eq__(self, other):
        return (self.name, self.kind) == (other.name, other.kind)

    def __hash__(self):
        return hash((self.name, self.kind))

    @property
    def is_param(self):
        return self.kind == "param"

    @property
    def is_stream(self):
        """The GPT's residual stream x: the embedding and every residual add."""
        return self.kind == "scope" and (self.name == "embed" or self.name.endswith(".residual"))

    @property
    def parent(self):
        """The scope around this one: "layer0.attn" for "layer0.attn.head2", "" at the top."""
        return self.name.rpartition(".")[0]

    @property
    def cluster(self):
        """The cluster a folded box of this group is drawn in: scopes inside their parent's."""
        return self.parent if self.kind == "scope" else ""

    def matches(self, scope):
        """Whether `expand=[scope]` opens this group."""
        if self.kind == "param":
            return self.name == scope
        if self.kind == "position":
            return False
        return self.name == scope or self.name.startswith(scope + ".")


def param_label(node):
    """(tensor, row) of a parameter labelled "wte[26,3]"; None for any other node."""
    if node._children or "[" not in node.label:
        return None
    name, _, index = node.label.partition("[")
    return name, int(index.split(",")[0])


def group_nodes(nodes, positions=None, focus=None):
    """GroupKey -> its nodes (in creation order), groups in order of first appearance.

    Parameters group by tensor, everything else by scope. With `positions` and `focus`,
    a value made before the focus position goes to one box of the earlier positions,
    one made after it to a box of the later ones, and so does a parameter that only
    those positions use.
    """
    position_of = positions_finder(positions) if focus is not None else None
    home = param_homes(nodes, position_of, focus) if position_of else {}
    groups = defaultdict(list)
    for node in nodes:
        param = param_label(node)
        where = home.get(node, focus) if param else (position_of(node) if position_of else focus)
        if where != focus:
            key = GroupKey(others_name(positions, focus, later=where > focus), "position")
        elif param:
            key = GroupKey(param[0], "param")
        else:
            key = GroupKey(node.scope, "scope")
        groups[key].append(node)
    return dict(groups)


def others_name(positions, focus, later):
    """'positions 0–2: BOS → e, e → m, m → m', the earlier (or later) positions than `focus`."""
    span = range(focus + 1, len(positions)) if later else range(focus)
    which = f"{span[0]}–{span[-1]}" if len(span) > 1 else f"{span[0]}"
    names = ", ".join(positions[p][1] for p in span)
    return f"position{'s' if len(span) > 1 else ''} {which}: {names}"


def positions_finder(positions):
    """A function node -> the index of the position it was made in (by creation number)."""
    marks = [mark for mark, _ in positions]

    def position_of(node):
        return max(bisect.bisect_right(marks, node._id) - 1, 0)
    return position_of


def param_homes(nodes, position_of, focus):
    """Parameter -> `focus` if a value at the focus position uses it, else the first position that does."""
    homes = {}
    for node in nodes:
        where = position_of(node)
        for child in node._children:
            if param_label(child) and homes.get(child) != focus:
                homes[child] = focus if where == focus else homes.get(child, where)
    return homes


def choose_open(groups, budget, expand):
    """The set of nodes drawn one by one.

    All of them (but other positions, which always fold) if they fit in the budget;
    else those of the expanded groups, the ones nearest the output first (the latest
    made) until the budget is spent.
    """
    unknown = [scope for scope in expand if not any(key.matches(scope) for key in groups)]
    if unknown:
        scopes = sorted({key.name for key in groups if key.name and key.kind != "position"})
        raise ValueError(f"nothing to expand called {', '.join(unknown)}; "
                         f"the graph has: {', '.join(scopes)}")
    here = [node for key, members in groups.items() if key.kind != "position" for node in members]
    if len(here) <= budget:
        return set(here)
    wanted = [node for key, members in groups.items()
              if any(key.matches(scope) for scope in expand) for node in members]
    wanted.sort(key=lambda node: node._id, reverse=True)
    return set(wanted[:budget])


# ------------------------------------------------------------------- how things look

def value_node_statements(node, shade):
    """The record of one value, and the op node in front of it if it was computed."""
    # In a left-to-right graph a record's fields stack top to bottom, and {braces} turn them
    # sideways: the name above, data and grad side by side below it.
    label = f"{escape_record(node.name)} | {{data {node.data:.4g} | grad {node.grad:.4g}}}"
    attrs = {"shape": "record"}
    if shade:
        attrs.update(shade(abs(node.grad)))
    statements = [(f"v{node._id}", label, attrs)]
    if node._children:
        statements.append((f"v{node._id}op", node._op, {"shape": "circle", "margin": "0.02",
                                                         "width": "0.3", "fontsize": "9"}))
    return statements


def box_label(key, folded, partly, tensors=None):
    """What a folded box says: its group, how many values it holds, and what they are.

    'layer0.attn.head1 · 13 values · dot ×5, ...', or for parameters the rows it holds:
    'wte (27×16) · row BOS · 16 of 432 parameters'.
    """
    count = f"{len(folded):,}{' more' if partly else ''}"
    if key.is_param:
        return param_box_label(key.name, folded, count, (tensors or {}).get(key.name))
    ops = Counter(node.name if not node._children else node._op for node in folded).most_common(3)
    return (f"{key.name or '(no scope)'}\\n{count} values\\n"
            + ", ".join(f"{escape_box(op)} ×{n}" for op, n in ops))


def param_box_label(name, folded, count, tensor):
    """'wte (27×16)\\nrows e, BOS\\n32 of 432 parameters'; without `tensor`, just the row numbers."""
    rows = sorted({param_label(node)[1] for node in folded})
    if tensor is None:
        return f"{name}\\nrows {row_ranges(rows)}\\n{count} parameters"
    (n_rows, n_cols), row_names = tensor
    size = n_rows * n_cols
    if len(rows) == n_rows:
        which = "every row"
    elif row_names:
        which = f"row{'s' if len(rows) > 1 else ''} {', '.join(row_names[r] for r in rows)}"
    else:
        which = f"row{'s' if len(rows) > 1 else ''} {row_ranges(rows)}"
    amount = f"all {size:,}" if len(folded) == size else f"{count} of {size:,}"
    return f"{name} ({n_rows}×{n_cols})\\n{escape_box(which)}\\n{amount} parameters"


def row_ranges(rows):
    """[0, 1, 2, 5] -> '0–2, 5'."""
    spans = []
    for row in rows:
        if spans and row == spans[-1][1] + 1:
            spans[-1][1] = row
        else:
            spans.append([row, row])
    return ", ".join(str(a) if a == b else f"{a}–{b}" for a, b in spans)


def box_attrs(key, folded, shade):
    """Blue for parameters, grey for values of a scope, wheat for another position; or shaded by |grad|."""
    fill = {"param": PARAM_FILL, "scope": SCOPE_FILL, "position": POSITION_FILL}[key.kind]
    attrs = {"shape": "box", "style": "rounded,filled", "fontsize": "11", "fillcolor": fill}
    if key.is_stream:
        attrs["penwidth"] = STREAM_PENWIDTH
    if shade:
        attrs.update(shade(max(abs(node.grad) for node in folded)))
        attrs["style"] = "rounded,filled"
    return attrs


def escape_record(text):
    """Text safe inside a Graphviz record label, where {} | <> and quotes have meanings."""
    for ch in '\\{}|<>"':
        text = text.replace(ch, "\\" + ch)
    return text


def escape_box(text):
    """Text safe inside a plain node label, where a backslash starts an escape such as \\n."""
    return text.replace("\\", "\\\\")


def grad_shader(nodes):
    """A function |grad| -> node attributes: ColorBrewer's 9 yellow-to-red shades on a log scale."""
    mags = [abs(node.grad) for node in nodes if node.grad != 0.0 and math.isfinite(node.grad)]
    lo = math.log10(min(mags)) if mags else 0.0
    hi = math.log10(max(mags)) if mags else 0.0

    def shade(mag):
        if not math.isfinite(mag):
            return {"style": "filled", "fillcolor": "violet"}
        if mag == 0.0:
            return {"style": "filled", "fillcolor": "white"}
        level = 1 + round(8 * (math.log10(mag) - lo) / (hi - lo)) if hi > lo else 9
        return {"style": "filled", "colorscheme": "ylorrd9", "fillcolor": str(level),
                "fontcolor": "white" if level >= 7 else "black"}

    shade.range = (10 ** lo, 10 ** hi)
    return shade


def note(title, nodes, opened, groups, budget, shade):
    """The HTML label at the top of the picture: what is drawn, what was folded, and a legend."""
    lines = [title] if title else []
    folded = len(nodes) - len(opened)
    if folded:
        boxes = sum(1 for members in groups.values() if any(n not in opened for n in members))
        lines.append(f"{len(nodes):,} values: {len(opened):,} drawn one by one, "
                     f"{folded:,} folded into {boxes} boxes (budget {budget:,}).")
        closed = [k.name for k, members in groups.items()
                  if k.kind == "scope" and k.name and not any(n in opened for n in members)]
        if closed:
            lines.append(f"Open a scope with expand=[...] (--expand on the command line): "
                         f"{', '.join(closed)}.")
    else:
        lines.append(f"{len(nodes):,} values, all drawn.")
    if shade:
        lines.append(f"Fill: |grad| on a log scale from {shade.range[0]:.2g} (pale yellow) to "
                     f"{shade.range[1]:.2g} (dark red); white = 0, violet = not finite.")
    rows = "".join(f'<TR><TD ALIGN="LEFT" COLSPAN="6">{html.escape(line)}</TD></TR>' for line in lines)
    return f'<<TABLE BORDER="0" CELLSPACING="2">{rows}{legend_row(groups, opened)}</TABLE>>'


def legend_row(groups, opened):
    """The legend: one cell for each kind of thing this picture holds."""
    kinds = {key.kind for key, members in groups.items() if any(n not in opened for n in members)}
    cells = []
    if opened:
        cells.append(("white", "name | data | grad: one value; ○ the op that made it"))
    if "scope" in kinds:
        cells.append((SCOPE_FILL, "values made in a scope, folded"))
    if "param" in kinds:
        cells.append((PARAM_FILL, "parameters: rows of a weight table"))
    if "position" in kinds:
        cells.append((POSITION_FILL, "another position, folded"))
    if any(key.is_stream for key in groups):
        cells.append(("white", "thick edge: the residual stream x"))
    return "<TR>" + "".join(f'<TD BORDER="1" BGCOLOR="{color}">{html.escape(text)}</TD>'
                            for color, text in cells) + "</TR>"


# ------------------------------------------------------------------------ edges

def edges(nodes, unit, opened):
    """(source id, target id) for each drawn edge, once each, children -> op -> value.

    An edge into a drawn value goes to its op node; edges inside a box are not drawn.
    """
    seen = set()
    for node in nodes:
        target = f"v{node._id}op" if node in opened else unit[node]
        if node in opened and node._children:
            yield target, unit[node]
        for child in node._children:
            pair = (unit[child], target)
            if pair[0] != pair[1] and pair not in seen:
                seen.add(pair)
                yield pair


class ClusterTree:
    """Node statements sorted into nested clusters by dotted scope ("layer0" > "attn" > "head2")."""

    def __init__(self, path=""):
        self.path = path
        self.statements = []  # (id, label, attrs)
        self.children = {}

    def add(self, scope, statements):
        tree = self
        for part in scope.split(".") if scope else []:
            path = f"{tree.path}.{part}" if tree.path else part
            tree = tree.children.setdefault(part, ClusterTree(path))
        tree.statements.extend(statements)

    def emit(self, graph):
        for node_id, label, attrs in self.statements:
            graph.node(node_id, label, **attrs)
        for child in self.children.values():
            with graph.subgraph(name=f"cluster_{child.path}") as sub:
                sub.attr(label=child.path, style="rounded", color="gray60", fontcolor="gray30",
                         labeljust="l", fontsize="11")
                child.emit(sub)
