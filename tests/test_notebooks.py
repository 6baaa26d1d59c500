"""The notebooks in examples/: stored without outputs, and they run top to bottom, drawing what they say."""

import glob
import html
import os
import re
import shutil

import nbformat
import pytest
from nbclient import NotebookClient

from tests.conftest import REPO_ROOT

NOTEBOOKS = sorted(os.path.basename(p) for p in glob.glob(os.path.join(REPO_ROOT, "examples", "*.ipynb")))


def read(name):
    return nbformat.read(os.path.join(REPO_ROOT, "examples", name), as_version=4)


def test_there_are_the_three_notebooks_the_readme_names():
    assert NOTEBOOKS == ["gpt_on_names.ipynb", "value_engine.ipynb", "watching_backward.ipynb"]


@pytest.mark.parametrize("name", NOTEBOOKS)
def test_stored_without_outputs(name):
    notebook = read(name)
    nbformat.validate(notebook)
    for cell in notebook.cells:
        if cell.cell_type == "code":
            assert cell.outputs == [] and cell.execution_count is None, f"{name}: clear the outputs before committing"


def run(name, tmp_path, monkeypatch):
    """The notebook executed in a copy of examples/ beside a copy of data/, as in a clone; its outputs by cell."""
    for folder in ("examples", "data"):
        shutil.copytree(os.path.join(REPO_ROOT, folder), tmp_path / folder)
    monkeypatch.setenv("PYTHONPATH", REPO_ROOT + os.pathsep + os.environ.get("PYTHONPATH", ""))
    notebook = read(name)
    NotebookClient(notebook, timeout=300, kernel_name="python3",
                   resources={"metadata": {"path": str(tmp_path / "examples")}}).execute()
    return [cell.outputs for cell in notebook.cells if cell.cell_type == "code"]


def texts(outputs):
    return "".join(o.get("text", "") + o.get("data", {}).get("text/plain", "") for o in outputs)


def images(outputs, mime):
    return [o["data"][mime] for o in outputs if mime in o.get("data", {})]


def svg_texts(outputs):
    """The text elements of the one SVG among `outputs`."""
    [svg] = images(outputs, "image/svg+xml")
    return [html.unescape(t) for t in re.findall(r"<text[^>]*>([^<]*)</text>", svg)]


def test_value_engine_draws_its_graphs_inline(tmp_path, monkeypatch):
    cells = run("value_engine.ipynb", tmp_path, monkeypatch)
    expression, reused, neuron, loop = cells[1], cells[2], cells[3], cells[4]
    assert "L = -8.0, dL/da = 6.0, dL/db = -4.0, dL/dc = -2.0, dL/df = 4.0" in texts(expression)
    assert {"grad 6", "data -8", "grad -4"} <= set(svg_texts(expression))
    assert "db/da = 2.0" in texts(reused) and images(reused, "image/svg+xml")
    assert "o = 0.7071" in texts(neuron)
    drawn = svg_texts(neuron)
    assert drawn[drawn.index("w2") + 2] == "grad 0"     # x2 = 0: w2 gets no gradient
    assert "by the loop: -2.0 2.0   by hand: dc/da = b + 1 = -2.0 , dc/db = a = 2.0" in texts(loop)


def test_gpt_on_names_trains_and_plots_inline(tmp_path, monkeypatch):
    cells = run("gpt_on_names.ipynb", tmp_path, monkeypatch)
    imports, training, curve, samples, predicting, attention = cells
    assert "32,000 documents, 2,000 held out for validation; vocabulary abcdefghijklmnopqrstuvwxyz + BOS" \
        in texts(imports)
    mean_loss, val_loss = (float(part.split()[-1]) for part in texts(training).split(";")[1:])
    assert 2.0 < mean_loss < 3.0 and 2.0 < val_loss < 3.0   # learned something: a uniform guess scores 3.30
    for cell in (curve, predicting, attention):
        assert images(cell, "image/png"), "a figure drawn inline"
    assert len(texts(samples).split(", ")) == 12
    assert "MLP units off at every position of 'emma'" in texts(attention)


def test_watching_backward_shows_gradients_arriving(tmp_path, monkeypatch):
    cells = run("watching_backward.ipynb", tmp_path, monkeypatch)
    steps, halfway, finished, gpt, nan = cells[1], cells[2], cells[3], cells[4], cells[5]
    assert texts(steps).splitlines()[0] == " L: grad 1; passes: d gets -2, f gets 4"
    assert "a: grad 6" in texts(steps) and "b: grad -4" in texts(steps)
    assert "grad 0" in svg_texts(halfway)        # a, b, e have not been reached yet
    assert "grad 0" not in svg_texts(finished)
    order = [line.split()[0] for line in texts(gpt).splitlines()]
    assert order[0] == "lm_head" and set(order[-2:]) == {"wte", "wpe"}
    assert "where the forward pass went wrong: Value(wte[12,0], data=nan" in texts(nan)
