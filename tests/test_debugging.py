"""Backward, step by step: backward_steps agrees with backward, and docs/05-debugging-backward.md is true."""

import math
import os
import subprocess
import sys

import pytest
from sybil import Document
from sybil.parsers.markdown.lexers import FencedCodeBlockLexer

from microgpt.engine import Value
from microgpt.scalar_gpt import ScalarGPT

from tests.conftest import REPO_ROOT

GUIDE = os.path.join(REPO_ROOT, "docs", "05-debugging-backward.md")


def yield_line():
    """The line of `yield node` in Value.backward_steps: where the guide's breakpoints go."""
    import inspect
    lines, first = inspect.getsourcelines(Value.backward_steps)
    return first + next(i for i, line in enumerate(lines) if line.strip() == "yield node")


def tiny_loss(params):
    return ScalarGPT(params).loss([[6, 0, 3, 3, 1, 6], [6, 2, 6]])


def test_backward_steps_gives_the_same_gradients_as_backward(tiny_params):
    stepped, plain = tiny_loss(tiny_params), tiny_loss(tiny_params)
    for _ in stepped.backward_steps():
        pass
    plain.backward()
    for a, b in zip(stepped.topological_order(), plain.topological_order()):
        assert a.grad == pytest.approx(b.grad, rel=1e-12, abs=1e-15)
    assert any(abs(a.grad) > 1e-3 for a in stepped.topological_order())


def test_each_node_is_yielded_after_every_parent_and_with_its_final_grad(tiny_params):
    loss = tiny_loss(tiny_params)
    parents = {}
    for node in loss.topological_order():
        for child in node._children:
            parents.setdefault(child, set()).add(node)
    yielded, grad_when_yielded = set(), {}
    for node in loss.backward_steps():
        assert parents.get(node, set()) <= yielded, f"{node} yielded before a parent"
        grad_when_yielded[node] = node.grad
        yielded.add(node)
    assert len(yielded) == len(loss.topological_order())
    for node, grad in grad_when_yielded.items():  # nothing added to a node after it was yielded
        assert node.grad == grad


def test_a_reused_node_accumulates_before_it_is_yielded():
    a = Value(3.0, label="a")
    b = a * a + a          # db/da = 2a + 1 = 7
    seen = {node.label: node.grad for node in b.backward_steps() if node.label}
    assert seen["a"] == pytest.approx(7.0, rel=1e-12)


def test_repr_says_what_a_node_is():
    x = Value(2.0, label="layer0.attn_wq[3,5]")
    y = x.relu()
    y.backward()
    assert repr(x) == "Value(layer0.attn_wq[3,5], data=2, grad=1)"
    assert repr(y) == "Value(relu, data=2, grad=1, children=1)"


# ----------------------------------------- the pdb sessions of docs/05-debugging-backward.md

def guide_sessions():
    """[(argv, commands, expected output lines)] from each ```pdb block of the guide (found by sybil's lexer)."""
    with open(GUIDE, encoding="utf-8") as f:
        document = Document(f.read(), GUIDE)
    sessions = []
    for region in FencedCodeBlockLexer("pdb")(document):
        lines = str(region.lexemes["source"]).strip().splitlines()
        if lines[0].startswith("$ "):
            sessions.append((lines[0][2:].split()[4:], [], []))
            lines = lines[1:]
        for line in lines:  # a block without a $ line continues the session before it
            if line.startswith("(Pdb) "):
                sessions[-1][1].append(line[len("(Pdb) "):])
            else:
                sessions[-1][2].append(line.strip())
    return sessions


def run_pdb(argv, commands):
    """pdb's output for the example run with `commands` on stdin, paths relative to the repo."""
    script = os.path.join("examples", "step_backward.py")
    result = subprocess.run([sys.executable, "-m", "pdb", script, *argv], cwd=REPO_ROOT,
                            input="\n".join(commands + ["q"]) + "\n",
                            capture_output=True, text=True, timeout=120)
    out = result.stdout.replace(REPO_ROOT + os.sep, "").replace("(Pdb) ", "\n")
    return [line.strip() for line in out.splitlines()]


def test_the_guide_has_the_sessions_it_promises():
    sessions = guide_sessions()
    assert [argv for argv, _, _ in sessions] == [[], ["--poison"]]
    commands = [c for _, cmds, _ in sessions for c in cmds]
    at = f"b microgpt/engine.py:{yield_line()}"
    assert f'{at}, node.label.startswith("layer0.attn_wq")' in commands
    assert f"{at}, not math.isfinite(node.grad)" in commands
    assert "p node._local_grads" in commands


@pytest.mark.parametrize("argv, commands, expected",
                         [pytest.param(*session, id=" ".join(session[0]) or "emma")
                          for session in guide_sessions()])
def test_pdb_prints_what_the_guide_shows(argv, commands, expected):
    actual = run_pdb(argv, commands)
    position = 0
    for line in expected:  # every line the guide shows, in the guide's order
        try:
            position = actual.index(line, position) + 1
        except ValueError:
            pytest.fail(f"pdb did not print {line!r} (after line {position})\n" + "\n".join(actual))


def test_the_example_runs_on_its_own():
    result = subprocess.run([sys.executable, os.path.join(REPO_ROOT, "examples", "step_backward.py")],
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert "first layer0.attn_wq weight reached: Value(layer0.attn_wq[" in result.stdout
