"""draw_graph: the picture of a Value DAG, whole when small, folded by scope when GPT-sized."""

import math
import os
import re
import sys
import xml.etree.ElementTree as ET

import pytest

from microgpt.engine import Value
from microgpt.viz import subjects
from microgpt.viz.graph import DEFAULT_BUDGET, draw_graph, draw_pages, group_nodes, reachable

sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "benchmarks"))
from bench_graph import FILL_THE_BUDGET  # noqa: E402  (the benchmark's own case)

SVG_TEXT = "{http://www.w3.org/2000/svg}text"

def svg_texts(graph):
    """Every text element of the rendered SVG (it must parse as XML)."""
    root = ET.fromstring(graph.pipe(format="svg"))
    return [el.text for el in root.iter(SVG_TEXT) if el.text]


def drawn_ids(graph):
    """Ids of the values drawn as records ("v12"), from the DOT source."""
    return set(re.findall(r"^\s*(v\d+) \[", graph.source, flags=re.M))


@pytest.fixture(scope="module")
def token_loss():
    model, tokenizer = subjects.fresh_model()
    return subjects.token_loss(model, tokenizer.document("emma", model.config.block_size), pos=1)


def test_expression_svg_has_every_value_with_data_and_grad():
    texts = svg_texts(draw_graph(subjects.expression()))
    for label in ["a", "b", "c", "d", "e", "f", "L", "*", "+"]:
        assert label in texts
    # L = (a·b + c)·f = -8; dL/da = b·f = 6, dL/db = a·f = -4, dL/df = d = 4
    for field in ["data -8", "grad 1", "grad 6", "grad -4", "data 4", "grad -2"]:
        assert field in texts


def test_small_graph_is_drawn_whole_with_one_op_node_per_computed_value():
    graph = draw_graph(subjects.neuron())
    assert len(drawn_ids(graph)) == 10  # x1 x2 w1 w2 b, x1w1 x2w2, their sum, n, o
    assert len(re.findall(r"^\s*v\d+op \[", graph.source, flags=re.M)) == 5
    assert "10 values, all drawn" in graph.source


def test_a_reused_value_has_one_edge_and_both_contributions():
    a = Value(3.0, label="a")
    b = a + a
    b.backward()
    graph = draw_graph(b)
    assert graph.source.count(f"v{a._id} -> v{b._id}op") == 1
    assert "grad 2" in svg_texts(graph)


def test_gpt_token_graph_folds_into_one_box_per_scope_and_tensor(token_loss):
    nodes = reachable(token_loss)
    assert len(nodes) > DEFAULT_BUDGET
    graph = draw_graph(token_loss)
    texts = svg_texts(graph)
    groups = group_nodes(nodes)
    for key, members in groups.items():
        assert key.name in texts
        assert f"{len(members):,} {'parameters' if key.is_param else 'values'}" in texts
    assert not drawn_ids(graph)
    assert f"{len(nodes):,} values: 0 drawn one by one" in graph.source
    for scope in ["layer0", "layer0.attn"]:       # clusters nest by dotted scope
        assert re.search(f'subgraph "?cluster_{re.escape(scope)}"? {{', graph.source)


def test_expand_draws_that_scope_node_by_node(token_loss):
    graph = draw_graph(token_loss, expand=["layer0.attn.head0"])
    head0 = {f"v{n._id}" for n in reachable(token_loss) if n.scope == "layer0.attn.head0"}
    assert drawn_ids(graph) == head0
    texts = svg_texts(graph)
    assert "layer0.attn.head1" in texts and "layer0.attn.head0" in texts  # the box and the cluster


def test_expanding_a_parent_opens_its_children(token_loss):
    everything_but_one = len(reachable(token_loss)) - 1   # over budget, yet room for all of attn
    graph = draw_graph(token_loss, expand=["layer0.attn"], budget=everything_but_one)
    drawn = drawn_ids(graph)
    scopes = {n.scope for n in reachable(token_loss) if f"v{n._id}" in drawn}
    assert scopes == {"layer0.attn", "layer0.attn.residual", *(f"layer0.attn.head{h}" for h in range(4))}


def test_budget_caps_what_is_drawn_and_the_picture_says_so(token_loss):
    graph = draw_graph(token_loss, expand=["layer0.mlp"], budget=40)
    drawn = drawn_ids(graph)
    assert len(drawn) == 40
    opened = [n for n in reachable(token_loss) if n.scope.startswith("layer0.mlp")]   # mlp and mlp.residual
    # the 40 drawn are the ones nearest the output, the latest made
    assert drawn == {f"v{n._id}" for n in sorted(opened, key=lambda n: n._id)[-40:]}
    mlp = [n for n in opened if n.scope == "layer0.mlp"]
    assert f"{sum(f'v{n._id}' not in drawn for n in mlp):,} more values" in svg_texts(graph)


def test_unknown_scope_lists_the_ones_there_are(token_loss):
    with pytest.raises(ValueError, match="layer0.attn.head0"):
        draw_graph(token_loss, expand=["layer0.attention"])


def test_grad_colors_span_the_scale_and_flag_non_finite():
    a, b = Value(1e-3, label="a"), Value(2.0, label="b")
    out = a * b
    out.backward()                              # grads: a 2, b 1e-3, out 1
    b.grad = float("nan")
    graph = draw_graph(out, color_by_grad=True)
    attrs = {name: line for line in graph.source.splitlines()
             for name, node in [("a", a), ("b", b), ("out", out)] if line.strip().startswith(f"v{node._id} [")}
    assert 'fillcolor=9' in attrs["a"]          # largest |grad|
    assert 'fillcolor=1' in attrs["out"]         # smallest finite |grad|
    assert 'fillcolor=violet' in attrs["b"]


def test_jupyter_gets_svg_inline():
    bundle = draw_graph(subjects.expression())._repr_mimebundle_()
    assert "image/svg+xml" in bundle and "<svg" in bundle["image/svg+xml"]


def test_token_graph_at_full_budget_draws_exactly_the_budget_and_renders(token_loss):
    """The benchmark's own case (benchmarks/bench_graph.py times it): the budget is filled, not exceeded."""
    graph = draw_graph(token_loss, expand=FILL_THE_BUDGET)
    ET.fromstring(graph.pipe(format="svg"))
    assert len(drawn_ids(graph)) == DEFAULT_BUDGET


# ------------------------------------------------------------------------ the CLI

def test_graph_command_draws_an_expression(cli, tmp_path):
    out = tmp_path / "expr.svg"
    result = cli("graph", "expression", "--out", out)
    assert result.returncode == 0, result.stderr
    texts = [el.text for el in ET.parse(out).getroot().iter(SVG_TEXT)]
    assert "L" in texts and "data -8" in texts


def test_graph_command_draws_a_document_with_an_expanded_scope(cli, tmp_path):
    out = tmp_path / "doc.svg"
    result = cli("graph", "document", "--text", "ava", "--expand", "loss", "--budget", "60",
                 "--grad-colors", "--out", out)
    assert result.returncode == 0, result.stderr
    assert "loss of the document 'ava', 4 predictions" in result.stdout
    for position in range(4):   # one page per position
        texts = [el.text or "" for el in ET.parse(tmp_path / f"doc-pos{position}.svg").getroot().iter(SVG_TEXT)]
        assert any("60 drawn one by one" in t for t in texts)
        assert "layer0.attn.head3" in texts
    assert not out.exists()


def test_graph_command_writes_dot_source_without_graphviz(cli, tmp_path):
    out = tmp_path / "token.dot"
    result = cli("graph", "token", "--pos", "2", "--out", out)
    assert result.returncode == 0, result.stderr
    assert out.read_text().startswith("digraph {")


def test_without_dot_it_writes_the_source_and_says_how_to_install(cli, tmp_path, monkeypatch):
    monkeypatch.setenv("PATH", str(tmp_path))  # a PATH with no `dot` on it
    result = cli("graph", "neuron", "--out", tmp_path / "neuron.svg")
    assert result.returncode == 1
    assert (tmp_path / "neuron.dot").read_text().startswith("digraph {")
    assert not (tmp_path / "neuron.svg").exists()
    assert len(result.stderr.strip().splitlines()) == 1
    assert "apt-get install graphviz" in result.stderr and "neuron.dot" in result.stderr


@pytest.mark.parametrize("args, message", [
    (["--out", "g.jpg"], "end the file name with one of .svg"),
    (["--out", "g.svg", "--expand", "layer9"], "nothing to expand called layer9"),
    (["--out", "g.svg", "--pos", "4", "--text", "ab"], "pos 4 is out of range"),
    (["--out", "g.svg", "--run-dir", "nowhere"], "not a run directory"),
])
def test_graph_command_errors_are_one_line(cli, tmp_path, args, message):
    result = cli("graph", *args, cwd=tmp_path)
    assert result.returncode in (1, 2)
    assert message in result.stderr and "Traceback" not in result.stderr


# ------------------------------------------------- what a learner reads in the picture

def labelled(token_loss, label):
    return [n for n in reachable(token_loss) if n.label == label]


def test_attention_values_are_named_by_their_role(token_loss):
    """The names are right: each named value is computed from the values its name says."""
    scales = labelled(token_loss, "1/√head_dim")
    assert len(scales) == 4 and all(s.data == 0.5 for s in scales)  # position 1's 4 heads, head_dim 4
    for scaled in labelled(token_loss, "q·k/√head_dim"):
        score, scale = scaled._children
        assert score.label == "q·k" and score._op == "dot" and scale.label == "1/√head_dim"
        assert scaled.data == score.data * 0.5
    for total in labelled(token_loss, "Σ exp (normaliser)"):   # attention divides by it, the loss takes its log
        assert total._op == "sum" and all(e._op == "exp" for e in total._children)
        [after] = [n for n in reachable(token_loss) if n._children == (total,)]
        if total.scope == "loss":
            assert after.label == "log Σ exp" and after.data == pytest.approx(math.log(total.data), rel=1e-15)
        else:
            assert after.label == "1/Σ exp" and after.data == pytest.approx(1 / total.data, rel=1e-15)
    for shift in labelled(token_loss, "−max (softmax shift)"):
        shifted = [n for n in reachable(token_loss) if shift in n._children]
        assert max(n.data for n in shifted) == 0.0    # the largest score, shifted, is exactly 0
    for add in labelled(token_loss, "x (residual stream)"):
        assert add._op == "+" or add.scope == "embed"


def test_residual_adds_are_their_own_scope(token_loss):
    adds = [n for n in reachable(token_loss) if n.scope == "layer0.attn.residual"]
    assert len(adds) == 16 and all(n._op == "+" and n.label == "x (residual stream)" for n in adds)


def test_a_model_built_for_training_names_nothing(tiny_params):
    from microgpt.scalar_gpt import ScalarGPT
    loss = ScalarGPT(tiny_params).loss([[6, 0, 3, 6]])
    assert {n.label for n in loss.topological_order() if n._children} == {""}


def test_expanded_head_shows_the_role_names(token_loss):
    texts = svg_texts(draw_graph(token_loss, expand=["layer0.attn.head0"]))
    for role in ["q·k", "1/√head_dim", "q·k/√head_dim", "−max (softmax shift)", "score − max",
                 "Σ exp (normaliser)", "1/Σ exp", "attention weight", "head output"]:
        assert role in texts, role


def edge_attrs(graph, src_name, dst_name):
    """The attributes of the edge between the folded scopes src_name and dst_name; None if there is none."""
    ids = {name: re.search(rf'^\s*(group\d+) \[label="{re.escape(name)}\\n[^\n]*fillcolor=lightgrey',
                           graph.source, flags=re.M).group(1)
           for name in (src_name, dst_name)}
    match = re.search(rf"^\s*{ids[src_name]} -> {ids[dst_name]}(.*)$", graph.source, flags=re.M)
    return match.group(1) if match else None


def test_overview_shows_the_residual_stream_as_thick_edges(token_loss):
    graph = draw_graph(token_loss)
    assert "penwidth=2.5" in edge_attrs(graph, "embed", "layer0.attn.residual")             # the skip around attention
    assert "penwidth=2.5" in edge_attrs(graph, "layer0.attn.residual", "layer0.mlp.residual")  # and around the MLP
    assert "penwidth=2.5" in edge_attrs(graph, "layer0.mlp.residual", "lm_head")
    assert "penwidth" not in edge_attrs(graph, "layer0.mlp", "layer0.mlp.residual")          # a branch, not the stream
    assert "thick edge: the residual stream x" in svg_texts(graph)


def test_parameter_boxes_say_which_rows_of_which_table(token_loss):
    model, tokenizer = subjects.fresh_model()
    texts = svg_texts(draw_graph(token_loss, tensors=subjects.tensor_info(model, tokenizer)))
    # position 1 of "emma" reads wte rows BOS (position 0) and e (position 1), wpe rows 0 and 1
    assert {"wte (27×16)", "rows e, BOS", "32 of 432 parameters"} <= set(texts)
    assert {"wpe (16×16)", "rows 0–1", "32 of 256 parameters"} <= set(texts)
    assert {"lm_head (27×16)", "every row", "all 432 parameters"} <= set(texts)


def test_legend_names_what_the_picture_holds(token_loss):
    texts = svg_texts(draw_graph(token_loss, expand=["loss"]))
    assert {"name | data | grad: one value; ○ the op that made it", "values made in a scope, folded",
            "parameters: rows of a weight table", "thick edge: the residual stream x"} <= set(texts)


@pytest.fixture(scope="module")
def document():
    """The loss of "emma" through the fresh model, and where each of its 5 positions begins."""
    model, tokenizer = subjects.fresh_model()
    marks = []
    loss = subjects.document_loss(model, tokenizer.document("emma", 16), marks)
    positions = [(mark, f"p{i}") for i, mark in enumerate(marks)]
    return loss, positions


def test_a_page_draws_one_position_and_folds_the_others(document):
    loss, positions = document
    pages = draw_pages(loss, positions, expand=["layer0.attn.head0"])
    assert len(pages) == 5
    for focus, page in enumerate(pages):
        texts = svg_texts(page)
        earlier = {"position 0: p0"} if focus == 1 else ({f"positions 0–{focus - 1}: " + ", ".join(
            f"p{i}" for i in range(focus))} if focus > 1 else set())
        assert earlier <= set(texts)
        drawn = {int(i[1:]) for i in drawn_ids(page)}
        made_here = range(positions[focus][0], positions[focus + 1][0] if focus < 4 else 10 ** 12)
        assert drawn and all(i in made_here for i in drawn)     # only this position is drawn
        assert "another position, folded" in texts


def test_pages_stay_a_readable_size(document):
    """Each page of a document, with a head opened at the default budget, is at most a few screens."""
    loss, positions = document
    for page in draw_pages(loss, positions, expand=["layer0.attn"]):
        root = ET.fromstring(page.pipe(format="svg"))
        width, height = (float(root.get(side).removesuffix("pt")) for side in ("width", "height"))
        assert width <= 3600 and height <= 3600, (width, height)
