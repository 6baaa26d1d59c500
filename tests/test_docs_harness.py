"""The docs harness itself: a doc whose commands or outputs are wrong must fail."""

import os

import pytest

from tests.docs_harness import docs_sybil, normalise


def run_page(tmp_path, markdown):
    """Evaluate every block of a one-page doc the way the suite does; raises what the first failure raises."""
    page = tmp_path / "page.md"
    page.write_text(markdown, encoding="utf-8")
    sybil = docs_sybil(path=str(tmp_path), patterns=["page.md"])
    document = sybil.parse(page)
    sybil.setup(document.namespace)
    try:
        for example in document.examples():
            failure = example.evaluate()
            if failure:
                raise AssertionError(failure)
    finally:
        sybil.teardown(document.namespace)
    return document


def console(*lines):
    return "```console\n" + "\n".join(lines) + "\n```\n"


def test_the_shown_output_is_checked(tmp_path):
    run_page(tmp_path, console("$ echo hello", "hello"))
    with pytest.raises(AssertionError, match="printed something else"):
        run_page(tmp_path, console("$ echo hello", "goodbye"))


def test_an_ellipsis_stands_for_any_text_and_times_may_differ(tmp_path):
    run_page(tmp_path, console("$ printf 'a\\nb\\nc\\n'", "a", "...", "c"))
    run_page(tmp_path, console("$ echo 'rendered in 0.51 s, 30.20step/s [00:33<00:00]'",
                               "rendered in 0.13 s, 12.00step/s [00:10<00:00]"))
    with pytest.raises(AssertionError):   # a count is not a time
        run_page(tmp_path, console("$ echo '4,192 parameters'", "4,193 parameters"))


def test_a_progress_bar_is_read_as_the_terminal_leaves_it(tmp_path):
    run_page(tmp_path, console("$ printf ' 10%%\\r 50%%\\r100%% done\\n'", "100% done"))


def test_a_failing_command_fails_unless_the_doc_shows_microgpts_error(tmp_path):
    with pytest.raises(AssertionError, match="exited with 3"):
        run_page(tmp_path, console("$ exit 3"))
    run_page(tmp_path, console("$ python -m microgpt sample nowhere",
                               "microgpt sample: error: ..."))
    with pytest.raises(AssertionError, match="succeeded, but the doc shows an error"):
        run_page(tmp_path, console("$ echo fine", "microgpt sample: error: ..."))


def test_blocks_of_a_page_share_a_fresh_directory(tmp_path):
    document = run_page(tmp_path, console("$ ls", "benchmarks", "data", "examples",
                                          "$ echo made > note.txt")
                        + console("$ cat note.txt", "made"))
    assert not os.path.exists(document.namespace["_page_dir"])   # removed after the page


def test_python_blocks_run_and_doctests_compare(tmp_path):
    run_page(tmp_path, "```python\nfrom microgpt import Value\nx = Value(2.0) * 3\n```\n"
                       "```python\n>>> x.data\n6.0\n```\n")
    with pytest.raises(AssertionError):
        run_page(tmp_path, "```python\n>>> 1 + 1\n3\n```\n")
    with pytest.raises(ZeroDivisionError):
        run_page(tmp_path, "```python\n1 / 0\n```\n")


def test_a_quotation_must_be_in_the_source(tmp_path):
    run_page(tmp_path, "```python\n# from microgpt/engine.py\n"
                       "for child, local_grad in zip(node._children, node._local_grads):\n"
                       "    child.grad += local_grad * grad\n```\n")
    with pytest.raises(AssertionError, match="not in microgpt/engine.py"):
        run_page(tmp_path, "```python\n# from microgpt/engine.py\nchild.grad = local_grad * grad\n```\n")


def test_a_command_not_run_must_still_parse(tmp_path):
    run_page(tmp_path, console("$ python -m microgpt bench --config 16/4/1/16/1   # not run by the test suite: slow"))
    with pytest.raises(AssertionError, match="microgpt would refuse"):
        run_page(tmp_path, console("$ python -m microgpt graph --expand a b   # not run by the test suite: slow"))
    with pytest.raises(AssertionError, match="there is no"):
        run_page(tmp_path, console("$ python benchmarks/nothing.py   # not run by the test suite: slow"))


def test_pip_install_names_only_declared_extras(tmp_path):
    run_page(tmp_path, console("$ pip install .", "$ pip install \".[notebooks]\""))
    with pytest.raises(AssertionError, match="declares no extra 'notebook'"):
        run_page(tmp_path, console("$ pip install \".[notebook]\""))
    with pytest.raises(AssertionError, match="only this project"):
        run_page(tmp_path, console("$ pip install requests"))


def test_normalise_drops_trailing_space_and_blank_lines():
    assert normalise(["a  ", "", "b", "", ""]) == "a\n\nb\n"
