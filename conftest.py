"""Collects README.md and docs/*.md as tests: every command and Python block in them runs (tests/docs_harness.py)."""

from tests.docs_harness import docs_sybil

pytest_collect_file = docs_sybil().pytest()
