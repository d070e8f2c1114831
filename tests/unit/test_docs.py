"""docs/ against the code: the generated parts are current, every image has a page, every reference resolves.

References checked (docs/README.md, "Referring to the docs"): a `docs/<file>.md` path anywhere in the repository's
code and documents, with an optional `#anchor` or `, "Heading"` list after it; and every relative Markdown link
inside docs/. Documents outside the repository must not be cited.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

import pytest

from tools import make_docs

REPO = Path(__file__).resolve().parents[2]
DOCS = REPO / "docs"
SKIP_DIRS = {".git", "build", "node_modules", "__pycache__", ".ruff_cache", ".pytest_cache", ".mypy_cache",
             ".hypothesis"}
SUFFIXES = {".py", ".md", ".sh", ".mk", ".yaml", ".yml", ".toml", ".cfg", ".txt"}
NAMES = {"Makefile", "Dockerfile"}

# docs/<file>.md, then #anchor or `, "Heading", "Heading"`; not part of a longer path or URL.
DOC_REFERENCE = re.compile(r'(?<![\w/.-])docs/(\w[\w./-]*?\.md)(#[\w-]+)?((?:,\s*"[^"\n]+")*)')
QUOTED = re.compile(r'"([^"\n]+)"')
LINK = re.compile(r"\[[^\]\n]*\]\(([^)\s]+)\)")
HEADING = re.compile(r"^(#{1,6})\s+(.+?)\s*#*\s*$")
# Citations of documents that are not in the repository (section numbers of outside specs and briefs).
OUTSIDE = re.compile("|".join([
    r"\bspec [a-z_]+\.md", r"\b(?:spec|contract|design) §", r"\bdesign\.md\b", r"§\s*\d", r"\bspec/[a-z]",
    r"\bopen question \d", r"/work/shared", r"\bthe spec(?:'s)?\b",
]), re.IGNORECASE)


def _files() -> list[Path]:
    found = []
    for root, dirs, names in os.walk(REPO):
        dirs[:] = [d for d in dirs if d not in SKIP_DIRS and not d.startswith(".venv") and not d.endswith(".egg-info")]
        found += [Path(root, n) for n in names if Path(n).suffix in SUFFIXES or n in NAMES]
    return sorted(found)


def _text(path: Path) -> str:
    try:
        return path.read_text()
    except (UnicodeDecodeError, OSError):
        return ""


def _outside_code(markdown: str) -> list[tuple[int, str]]:
    """(line number, line) for the lines of a Markdown text that are not inside fenced code blocks."""
    lines, fenced = [], False
    for number, line in enumerate(markdown.splitlines(), start=1):
        if line.lstrip().startswith("```"):
            fenced = not fenced
            continue
        if not fenced:
            lines.append((number, line))
    return lines


def headings(path: Path) -> tuple[set[str], set[str]]:
    """A Markdown file's heading texts (as written and without backticks) and their GitHub anchors."""
    texts, anchors, seen = set(), set(), {}
    for _, line in _outside_code(path.read_text()):
        match = HEADING.match(line)
        if not match:
            continue
        text = match.group(2)
        texts.update({text, text.replace("`", "")})
        slug = re.sub(r"[^\w\- ]", "", text.lower()).replace(" ", "-")
        count = seen.get(slug, 0)
        seen[slug] = count + 1
        anchors.add(slug if count == 0 else f"{slug}-{count}")
    return texts, anchors


def _check_target(target: Path, anchor: str, quoted: list[str], where: str) -> list[str]:
    if not target.exists():
        return [f"{where}: {target.relative_to(REPO)} does not exist"]
    if target.suffix != ".md" or not (anchor or quoted):
        return []
    texts, anchors = headings(target)
    problems = [f"{where}: {target.relative_to(REPO)} has no heading {q!r}" for q in quoted if q not in texts]
    if anchor and anchor not in anchors:
        problems.append(f"{where}: {target.relative_to(REPO)} has no heading whose anchor is #{anchor}")
    return problems


# ---- generated parts ---------------------------------------------------------------------------------

def test_generated_parts_are_current() -> None:
    stale = [str(path.relative_to(REPO)) for path, text in make_docs.render_all().items()
             if not path.exists() or path.read_text() != text]
    assert not stale, (f"out of date with the code: {', '.join(stale)}; run .venv/bin/python -m tools.make_docs "
                       "and review the diff")


def test_fill_refuses_a_page_without_markers() -> None:
    with pytest.raises(ValueError, match="markers of the generated block 'metrics'"):
        make_docs.fill("# page\n", {"metrics": "table"}, "a page")


def test_every_image_has_a_page_linked_from_the_index() -> None:
    index = (DOCS / "README.md").read_text()
    for image in make_docs.images():
        assert make_docs.page_path(image).is_file(), f"docs/images/{image}.md is missing: run tools/make_docs.py"
        assert f"(images/{image}.md)" in index, f"docs/README.md does not link images/{image}.md"
    for page in sorted(DOCS.rglob("*.md")):
        relative = page.relative_to(DOCS).as_posix()
        assert relative == "README.md" or f"({relative})" in index, f"docs/README.md does not link {relative}"


# ---- references -------------------------------------------------------------------------------------

def test_every_docs_reference_resolves() -> None:
    problems = []
    for path in _files():
        text = _text(path)
        if "docs/" not in text:
            continue
        for number, line in enumerate(text.splitlines(), start=1):
            for match in DOC_REFERENCE.finditer(line):
                where = f"{path.relative_to(REPO)}:{number}"
                problems += _check_target(DOCS / match.group(1), (match.group(2) or "").lstrip("#"),
                                          QUOTED.findall(match.group(3)), where)
    assert not problems, "\n".join(problems)


def test_every_link_inside_docs_resolves() -> None:
    problems = []
    for page in sorted(DOCS.rglob("*.md")):
        for number, line in _outside_code(page.read_text()):
            for target in LINK.findall(re.sub(r"`[^`]*`", "", line)):
                if re.match(r"^[a-z]+:", target):  # https:, mailto:
                    continue
                file_part, _, anchor = target.partition("#")
                resolved = (page.parent / file_part).resolve() if file_part else page
                problems += _check_target(resolved, anchor, [], f"{page.relative_to(REPO)}:{number}")
    assert not problems, "\n".join(problems)


def test_no_citations_of_documents_outside_the_repository() -> None:
    this = Path(__file__).resolve()
    found = [f"{path.relative_to(REPO)}:{number}: {line.strip()[:100]}"
             for path in _files() if path.resolve() != this
             for number, line in enumerate(_text(path).splitlines(), start=1) if OUTSIDE.search(line)]
    assert not found, ("these cite documents that are not in the repository; cite the docs/ file and heading that "
                       "holds the fact (docs/README.md, \"Referring to the docs\"), or drop the citation:\n"
                       + "\n".join(found))
