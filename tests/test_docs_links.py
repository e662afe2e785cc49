"""The README and docs/ stay true to the tree: every relative link (and #anchor) reaches a file and a
heading that exist, and the README's layer table and docs/pages.md name every module there is.

Links are read from the Markdown outside code (fenced blocks and `inline code` are examples, not links);
an anchor is a heading's GitHub slug (lower case, punctuation dropped, spaces to hyphens).
"""

import re
from pathlib import Path

import pytest

from mnist_core.paths import REPO_ROOT

DOCS = [REPO_ROOT / "README.md", REPO_ROOT / "DEPLOY.md", REPO_ROOT / "BENCHMARKS.md",
        *sorted((REPO_ROOT / "docs").glob("*.md"))]
LINK = re.compile(r"!?\[[^\]]*\]\(([^)\s]+)(?:\s+\"[^\"]*\")?\)")
FENCE = re.compile(r"^(```|~~~).*?^\1", re.S | re.M)
INLINE_CODE = re.compile(r"`[^`\n]*`")


def prose(text: str) -> str:
    """The Markdown without its code: fenced blocks, indented blocks and inline code."""
    text = FENCE.sub("", text)
    text = "\n".join(line for line in text.splitlines() if not line.startswith("    "))
    return INLINE_CODE.sub("", text)


def slug(heading: str) -> str:
    """GitHub's anchor for a heading."""
    text = INLINE_CODE.sub(lambda m: m.group(0).strip("`"), heading.strip().lower())
    return re.sub(r"[^\w\- ]", "", text).replace(" ", "-")


def anchors(path: Path) -> set[str]:
    return {slug(line.lstrip("#")) for line in FENCE.sub("", path.read_text()).splitlines()
            if line.startswith("#")}


def broken_links(path: Path) -> list[str]:
    """Every relative link in `path` whose file or heading is missing, as `target`."""
    broken = []
    for target in LINK.findall(prose(path.read_text())):
        if re.match(r"[a-z][a-z0-9+.-]*:", target):  # http:, https:, mailto:: not ours to check
            continue
        file_part, _, anchor = target.partition("#")
        linked = (path.parent / file_part).resolve() if file_part else path
        if not linked.exists() or (anchor and linked.suffix == ".md" and anchor not in anchors(linked)):
            broken.append(target)
    return broken


@pytest.mark.parametrize("doc", DOCS, ids=lambda p: str(p.relative_to(REPO_ROOT)))
def test_every_relative_link_in_the_docs_resolves(doc):
    assert broken_links(doc) == [], f"{doc.relative_to(REPO_ROOT)} links to what is not there"


def test_a_link_to_a_missing_file_or_heading_is_found(tmp_path):
    (tmp_path / "there.md").write_text("# A heading\n")
    doc = tmp_path / "doc.md"
    doc.write_text("[ok](there.md) [ok](there.md#a-heading) ![gone](gone.png) [gone](there.md#no-such)\n"
                   "`[code](not-a-link.md)`\n```\n[example](not-a-link.md)\n```\n[web](https://example.com)\n")
    assert broken_links(doc) == ["gone.png", "there.md#no-such"]


def test_the_readme_layer_table_names_every_module_of_the_core_package():
    readme = (REPO_ROOT / "README.md").read_text()
    table = readme.split("## Layers", 1)[1].split("\n## ", 1)[0]
    modules = {p.stem for p in (REPO_ROOT / "mnist_core").iterdir()
               if (p.suffix == ".py" or (p / "__init__.py").exists()) and not p.name.startswith("__")}
    assert sorted(m for m in modules if f"`{m}`" not in table and f"`{m}/`" not in table
                  and f"`mnist_core/{m}/`" not in table) == []


def test_the_pages_doc_names_every_module_of_app_pages():
    pages = (REPO_ROOT / "docs" / "pages.md").read_text()
    modules = {p.name for p in (REPO_ROOT / "app_pages").glob("_*.py") if p.name != "__init__.py"}
    assert sorted(m for m in modules if f"`{m}`" not in pages) == []


def test_the_readme_reads_without_scrolling_sideways():
    long = [n for n, line in enumerate((REPO_ROOT / "README.md").read_text().splitlines(), 1)
            if len(line) > 120 and not line.startswith("|")]
    assert long == [], f"README.md lines over 120 characters (tables aside): {long}"
