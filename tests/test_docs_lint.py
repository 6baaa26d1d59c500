"""Every page follows docs/writing-docs.md: known fences, no hidden commands, links that lead somewhere."""

import glob
import os
import re

import pytest
from sybil import Document
from sybil.parsers.markdown.lexers import RawFencedCodeBlockLexer

from tests.docs_harness import NOT_RUN, REPO_ROOT

PAGES = ["README.md"] + sorted(os.path.relpath(p, REPO_ROOT) for p in glob.glob(f"{REPO_ROOT}/docs/*.md"))
LANGUAGES = {"console", "python", "pdb", "text", "mermaid"}
COMMAND = re.compile(r"^\s*(\$ |(python|pip|bash|jupyter|microgpt) )")
LINK = re.compile(r"\]\((?!https?:)([^)\s]+)\)")


def fenced_blocks(page):
    """[(language, source, start offset, end offset)] of every fenced block of the page."""
    with open(os.path.join(REPO_ROOT, page), encoding="utf-8") as f:
        document = Document(f.read(), page)
    lexer = RawFencedCodeBlockLexer(info_pattern=re.compile(r"(?P<language>[^\n]*)$\n", re.M))
    return document.text, [(region.lexemes["language"].strip(), str(region.lexemes["source"]),
                            region.start, region.end) for region in lexer(document)]


def outside_fences(text, blocks):
    """The page's text with its fenced blocks blanked out (from the last: blanking shifts what follows)."""
    for _, _, start, end in sorted(blocks, key=lambda block: block[2], reverse=True):
        text = text[:start] + "\n" * text[start:end].count("\n") + text[end:]
    return text


@pytest.mark.parametrize("page", PAGES)
def test_every_fence_is_a_kind_the_harness_knows(page):
    _, blocks = fenced_blocks(page)
    for language, source, _, _ in blocks:
        assert language in LANGUAGES, f"{page}: a ```{language} block; use one of {sorted(LANGUAGES)}"
        if language == "text":
            assert not any(COMMAND.match(line) for line in source.splitlines()), \
                f"{page}: a command in a text block, where nothing runs it:\n{source}"
        if language == "console":
            assert source.lstrip().startswith("$ "), f"{page}: a console block must start with a command"
            for line in source.splitlines():
                if line.startswith("$ ") and "not run" in line:
                    assert NOT_RUN.search(line), f"{page}: write `# not run by the test suite: REASON`: {line}"


@pytest.mark.parametrize("page", PAGES)
def test_no_command_hides_outside_a_fence(page):
    text, blocks = fenced_blocks(page)
    hidden = [line for line in outside_fences(text, blocks).splitlines() if re.match(r"^ {4,}\$ ", line)]
    assert not hidden, f"{page}: indented commands are not run; fence them as console: {hidden}"


def anchors(path):
    """GitHub's anchors for the headings of a page: lower case, punctuation dropped, spaces to hyphens."""
    text, blocks = fenced_blocks(os.path.relpath(path, REPO_ROOT))
    headings = re.findall(r"^#+ (.+)$", outside_fences(text, blocks), flags=re.M)
    return {re.sub(r"[^\w\- ]", "", h.strip().lower()).replace(" ", "-") for h in headings}


@pytest.mark.parametrize("page", PAGES)
def test_links_lead_to_pages_and_headings_that_exist(page):
    text, blocks = fenced_blocks(page)
    for target in LINK.findall(outside_fences(text, blocks)):
        path, _, anchor = target.partition("#")
        full = os.path.normpath(os.path.join(REPO_ROOT, os.path.dirname(page), path)) if path else \
            os.path.join(REPO_ROOT, page)
        assert os.path.exists(full), f"{page}: the link {target} leads nowhere"
        if anchor and full.endswith(".md"):
            assert anchor in anchors(full), f"{page}: no heading for #{anchor} in {path or page}"


def test_the_course_index_lists_every_page():
    with open(os.path.join(REPO_ROOT, "docs", "README.md"), encoding="utf-8") as f:
        index = f.read()
    for page in PAGES:
        if page.startswith("docs/") and page != "docs/README.md":
            assert f"]({os.path.basename(page)})" in index, f"docs/README.md does not link {page}"
