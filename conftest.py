"""Collects README.md and docs/*.md as tests: every command and Python block in them runs (tests/docs_harness.py)."""

import os

# Numba prints its error messages with terminal bold codes when colorama is installed.
# The docs show them as plain text; this makes the suite see what the docs show, with
# or without colorama. Numba reads it once, at import, so it is set before anything
# imports numba.
os.environ.setdefault("NUMBA_DISABLE_ERROR_MESSAGE_HIGHLIGHTING", "1")

from tests.docs_harness import docs_sybil  # noqa: E402  (after the environment is set)

pytest_collect_file = docs_sybil().pytest()
