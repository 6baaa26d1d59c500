"""Draw a `Value` DAG with Graphviz: a record per value, an op node before it, left to right.

Small graphs are drawn whole, the picture micrograd's users know:

    [ a | data 2 | grad -3 ] ──> ( * ) ──> [ * | data -6 | grad 1 ]
    [ b | data -3 | grad 2 ] ──┘

A GPT is thousands of values per token, far more than Graphviz lays out in
seconds, so nodes are grouped by where they were made: activations by their name
scope (`embed`, `layer0.attn`, `layer0.attn.head2`, `layer0.mlp`, `lm_head`,
`loss`), parameters by their tensor (`layer0.attn_wq`). If the whole graph fits
in `budget` values it is drawn whole; otherwise every group is folded into one box
that says how many values it holds, except the scopes named in `expand`. Scopes
become nested clusters, and a note at the top of the picture says what was folded.

The result is a `graphviz.Digraph`: `.pipe("svg")`, `.render(...)`, or leave it as
the last expression of a Jupyter cell to see it inline.
"""

import math
from collections import Counter, defaultdict

DEFAULT_BUDGET = 250  # values drawn one by one; a GPT token graph at this size lays out in about a second


def draw_graph(roots, budget=DEFAULT_BUDGET, expand=(), color_by_grad=False, title=""):
    """A `graphviz.Digraph` of everything `roots` (a Value or a list of Values) depends on.

    budget         the most values drawn one by one; the rest are folded into boxes
    expand         scopes to draw node by node when the graph is over budget: "layer0.attn"
                   opens that scope and the scopes inside it, "layer0.attn.head0" just that
                   head; a parameter tensor ("layer0.attn_wq") opens only by its exact name
    color_by_grad  fill each value by |grad| on a log scale (pale yellow small, dark red large);
                   a folded box by the largest |grad| it holds; non-finite gradients in violet
    title          a first line for the note at the top
    """
    import graphviz

    nodes = reachable(roots)
    groups = group_nodes(nodes)
    opened = choose_open(nodes, groups, budget, expand)
    shade = grad_shader(nodes) if color_by_grad else None
    unit = {}  # node -> the id it is drawn as: its own record, or its group's box
    for index, (key, members) in enumerate(groups.items()):
        box = f"group{index}"
        for node in members:
            unit[node] = f"v{node._id}" if node in opened else box

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
            parent = "" if key.is_param else key.parent
            clusters.add(parent, [(unit[folded[0]], box_label(key, folded, partly=bool(shown)),
                                   box_attrs(key, folded, shade))])
    clusters.emit(dot)
    for src, dst in edges(nodes, unit, opened):
        dot.edge(src, dst)
    dot.attr(label=note(title, nodes, opened, groups, budget, color_by_grad))
    return dot


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
    """Where a node was made: a name scope ("layer0.attn.head2") or a parameter tensor ("lm_head")."""

    __slots__ = ("name", "is_param")

    def __init__(self, name, is_param):
        self.name, self.is_param = name, is_param

    def __eq__(self, other):
        return (self.name, self.is_param) == (other.name, other.is_param)

    def __hash__(self):
        return hash((self.name, self.is_param))

    @property
    def parent(self):
        """The scope around this one: "layer0.attn" for "layer0.attn.head2", "" at the top."""
        return self.name.rpartition(".")[0]

    def matches(self, scope):
        """Whether `expand=[scope]` opens this group."""
        if self.is_param:
            return self.name == scope
        return self.name == scope or self.name.startswith(scope + ".")


def group_of(node):
    """Parameters ("layer0.attn_wq[3,5]") group by tensor; everything else by scope."""
    if not node._children and "[" in node.label:
        return GroupKey(node.label[:node.label.index("[")], is_param=True)
    return GroupKey(node.scope, is_param=False)


def group_nodes(nodes):
    """GroupKey -> its nodes (in creation order), groups in order of first appearance."""
    groups = defaultdict(list)
    for node in nodes:
        groups[group_of(node)].append(node)
    return dict(groups)


def choose_open(nodes, groups, budget, expand):
    """The set of nodes drawn one by one.

    All of them if they fit in the budget; else those of the expanded groups, the
    ones nearest the output first (the latest made) until the budget is spent.
    """
    unknown = [scope for scope in expand if not any(key.matches(scope) for key in groups)]
    if unknown:
        scopes = sorted({key.name for key in groups if key.name})
        raise ValueError(f"nothing to expand called {', '.join(unknown)}; "
                         f"the graph has: {', '.join(scopes)}")
    if len(nodes) <= budget:
        return set(nodes)
    wanted = [node for key, members in groups.items()
              if any(key.matches(scope) for scope in expand) for node in members]
    wanted.sort(key=lambda node: node._id, reverse=True)
    return set(wanted[:budget])


# ------------------------------------------------------------------- how things look

def value_node_statements(node, shade):
    """The record of one value, and the op node in front of it if it was computed."""
    fields = [escape_record(node.name), f"data {node.data:.4g}", f"grad {node.grad:.4g}"]
    attrs = {"shape": "record"}
    if shade:
        attrs.update(shade(abs(node.grad)))
    statements = [(f"v{node._id}", "{" + " | ".join(fields) + "}", attrs)]
    if node._children:
        statements.append((f"v{node._id}op", node._op, {"shape": "circle", "margin": "0.02",
                                                         "width": "0.3", "fontsize": "9"}))
    return statements


def box_label(key, folded, partly):
    """'layer0.attn.head1 · 13 values' and the most common ops, or 'layer0.attn_wq · 256 parameters'."""
    count = f"{len(folded):,}{' more' if partly else ''}"
    if key.is_param:
        return f"{key.name}\\n{count} parameters"
    ops = Counter(node.name if not node._children else node._op for node in folded).most_common(3)
    return (f"{key.name or '(no scope)'}\\n{count} values\\n"
            + ", ".join(f"{op} ×{n}" for op, n in ops))


def box_attrs(key, folded, shade):
    """Grey for values, blue for parameters; or shaded by the largest |grad| inside."""
    attrs = {"shape": "box", "style": "rounded,filled", "fontsize": "11",
             "fillcolor": "lightblue" if key.is_param else "lightgrey"}
    if shade:
        attrs.update(shade(max(abs(node.grad) for node in folded)))
        attrs["style"] = "rounded,filled"
    return attrs


def escape_record(text):
    """Text safe inside a Graphviz record label, where {} | <> and quotes have meanings."""
    for ch in '\\{}|<>"':
        text = text.replace(ch, "\\" + ch)
    return text


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


def note(title, nodes, opened, groups, budget, color_by_grad):
    """The text at the top of the picture: what is drawn and what was folded away."""
    lines = [title] if title else []
    folded = len(nodes) - len(opened)
    if folded:
        boxes = sum(1 for members in groups.values() if any(n not in opened for n in members))
        lines.append(f"{len(nodes):,} values: {len(opened):,} drawn one by one, "
                     f"{folded:,} folded into {boxes} boxes (budget {budget:,}; "
                     f"blue boxes hold parameters).")
        closed = [k.name for k, members in groups.items()
                  if not k.is_param and k.name and not any(n in opened for n in members)]
        if closed:
            lines.append(f"Open a scope with expand=[...] (--expand on the command line): "
                         f"{', '.join(closed)}.")
    else:
        lines.append(f"{len(nodes):,} values, all drawn.")
    if color_by_grad:
        lines.append("Fill: |grad| on a log scale, pale yellow = smallest, dark red = largest; "
                     "white = 0, violet = not finite.")
    return "".join(line + "\\l" for line in lines)


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
