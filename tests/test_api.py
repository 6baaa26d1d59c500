"""The public API: `from microgpt import ...` gives the library's objects, and importing is light."""

import importlib
import subprocess
import sys

import pytest

import microgpt
from tests.conftest import REPO_ROOT

HEAVY = ("numpy", "numba", "matplotlib", "graphviz")


def modules_loaded_after(code):
    """Which of HEAVY a fresh Python has imported after running `code`."""
    probe = f"{code}\nimport sys\nprint(' '.join(m for m in {HEAVY!r} if m in sys.modules))"
    result = subprocess.run([sys.executable, "-c", probe], cwd=REPO_ROOT, capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    return set(result.stdout.split())


def test_importing_the_package_imports_nothing_heavy():
    assert modules_loaded_after("import microgpt") == set()


def test_the_engine_alone_needs_no_numpy():
    assert modules_loaded_after("from microgpt import Value\nValue(2.0) * 3") == set()


def test_every_public_name_without_numba_or_drawing_libraries():
    names = ", ".join(microgpt.__all__)
    assert modules_loaded_after(f"from microgpt import {names}") == {"numpy"}


@pytest.mark.parametrize("name", microgpt.__all__)
def test_each_public_name_is_the_object_its_module_defines(name):
    module = importlib.import_module(microgpt._EXPORTS[name])
    assert getattr(microgpt, name) is getattr(module, name)
    assert name in dir(microgpt)


def test_an_unknown_name_is_an_attribute_error():
    with pytest.raises(AttributeError, match="no attribute 'Valu'"):
        microgpt.Valu  # noqa: B018
    with pytest.raises(ImportError):
        exec("from microgpt import Valu", {})
