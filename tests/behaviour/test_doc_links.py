"""Every link between the README and the pages under docs/ leads somewhere, and so does every citation.

- Every relative link and every `#anchor` in README.md and docs/*.md resolves: the file (or folder)
  exists, and an anchor names a heading of the file it points into, under GitHub's rules (see `slug`).
- Every citation of a section in the package's code and in its frozen SQL, `README, "The contract"` or
  `docs/operations.md, 'Without pg_cron'`, names a heading of that file, and every docs/ page the code
  names exists. The SQL files cannot change (SHA256SUMS), so their citations hold only as long as the
  README keeps the headings they name.

No database: this reads files only.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

# The repository: the first folder up from here with a pyproject.toml (this file may move into a subfolder).
ROOT = next(folder for folder in Path(__file__).resolve().parents if (folder / "pyproject.toml").exists())
PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]

FENCE = re.compile(r"^\s*(```|~~~)")
HEADING = re.compile(r"^(#{1,6})\s+(.*?)\s*#*\s*$")
CODE_SPAN = re.compile(r"(`+)(.+?)\1")
# [text](target) and ![alt](target); the text may hold code spans and brackets one level deep.
LINK = re.compile(r"!?\[(?:[^\[\]]|\[[^\[\]]*\])*\]\(\s*<?([^)\s>]+)>?(?:\s+\"[^\"]*\")?\s*\)")
EXTERNAL = re.compile(r"^[a-z][a-z0-9+.-]*:", re.I)  # https:, mailto:, ...
# README, "Section" / README, 'Section' / docs/x.md, "Section", with the quote escaped inside a Python
# string (\"), or the citation broken over two lines of SQL comment (README,\n-- "Section").
CITATION = re.compile(r"(README(?:\.md)?|docs/[\w.-]+\.md),?\s*(?:--\s*)?\\?([\"'])(.+?)\\?\2")
DOC_PATH = re.compile(r"\bdocs/[\w.-]+\.md\b")


def prose(text: str) -> list[tuple[int, str]]:
    """(line number, line) outside fenced code blocks, with code spans blanked out."""
    out, fenced = [], False
    for number, line in enumerate(text.splitlines(), 1):
        if FENCE.match(line):
            fenced = not fenced
            continue
        if not fenced:
            out.append((number, CODE_SPAN.sub(lambda m: " " * len(m.group(0)), line)))
    return out


def slug(heading: str) -> str:
    """GitHub's anchor for a heading's text: markup dropped, lower case, punctuation but - and _
    removed, each space a -. (`proxy_address(proxy proxies) → text` gives proxy_addressproxy-proxies--text.)"""
    text = re.sub(r"!?\[([^\]]*)\]\([^)]*\)", r"\1", heading)  # a link keeps its text
    text = re.sub(r"<[^>]+>", "", text)                          # inline HTML
    text = text.replace("`", "").replace("*", "")
    text = re.sub(r"(?<!\w)_(.+?)_(?!\w)", r"\1", text)           # _emphasis_, not snake_case
    text = text.strip().lower()
    text = re.sub(r"[^\w\- ]", "", text)
    return text.replace(" ", "-")


def anchors(path: Path) -> set[str]:
    """The anchors of a Markdown file's headings; a repeated one gets -1, -2, ... as on GitHub."""
    seen: dict[str, int] = {}
    out = set()
    fenced = False
    for line in path.read_text().splitlines():
        if FENCE.match(line):
            fenced = not fenced
            continue
        match = None if fenced else HEADING.match(line)
        if match:
            base = slug(match.group(2))
            count = seen.get(base, 0)
            seen[base] = count + 1
            out.add(base if count == 0 else f"{base}-{count}")
    return out


def headings(path: Path) -> set[str]:
    """The text of every heading, code spans' backticks dropped: what a citation quotes."""
    fenced, out = False, set()
    for line in path.read_text().splitlines():
        if FENCE.match(line):
            fenced = not fenced
        elif not fenced and (match := HEADING.match(line)):
            out.add(match.group(2).replace("`", ""))
    return out


def shown(path: Path) -> str:
    """A path as a message shows it: from the repository's root, or from the test's own folder."""
    for base in (ROOT, *path.parents):
        if base.name != "docs" and path.is_relative_to(base):
            return str(path.relative_to(base))
    return str(path)


def broken_links(page: Path) -> list[str]:
    problems = []
    for number, line in prose(page.read_text()):
        for target in LINK.findall(line):
            if EXTERNAL.match(target):
                continue
            where = f"{shown(page)}:{number}: ({target})"
            file_part, _, anchor = target.partition("#")
            destination = (page.parent / file_part).resolve() if file_part else page
            if not destination.exists():
                problems.append(f"{where}: {file_part} does not exist")
            elif anchor:
                if destination.suffix != ".md":
                    problems.append(f"{where}: an anchor into a file that is not Markdown")
                elif anchor not in anchors(destination):
                    problems.append(f"{where}: no heading of {shown(destination)} has the anchor #{anchor}")
    return problems


@pytest.mark.parametrize("page", PAGES, ids=lambda page: str(page.relative_to(ROOT)))
def test_every_relative_link_and_anchor_resolves(page):
    assert broken_links(page) == []


def test_the_readme_is_a_landing_page():
    """At most 200 lines: the rest lives in docs/, one page per concern."""
    assert len((ROOT / "README.md").read_text().splitlines()) <= 200


def cited_files() -> list[Path]:
    package = ROOT / "proxy_leases"
    return sorted([*package.rglob("*.py"), *package.rglob("*.sql")])


def broken_citations(path: Path) -> list[str]:
    text = path.read_text()
    problems = []
    for match in CITATION.finditer(text):
        cited, section = match.group(1), match.group(3)
        target = ROOT / ("README.md" if cited.startswith("README") else cited)
        number = text.count("\n", 0, match.start()) + 1
        where = f"{shown(path)}:{number}: {cited}, {section!r}"
        if not target.exists():
            problems.append(f"{where}: {cited} does not exist")
        elif section not in headings(target):
            problems.append(f"{where}: {cited} has no heading {section!r}")
    for match in DOC_PATH.finditer(text):
        if not (ROOT / match.group(0)).exists():
            number = text.count("\n", 0, match.start()) + 1
            problems.append(f"{shown(path)}:{number}: {match.group(0)} does not exist")
    return problems


def test_every_section_the_code_and_the_frozen_sql_cite_exists():
    files = cited_files()
    assert len(files) > 100, "the package's .py and .sql files were not found"
    problems = [problem for path in files for problem in broken_citations(path)]
    assert problems == []


def test_the_checks_can_fail(tmp_path):
    """A missing file, a missing anchor and a citation of a missing section are each reported."""
    docs = tmp_path / "docs"
    docs.mkdir()
    (docs / "a.md").write_text("# A page\n\n## Two words\n\n## Two words\n\n"
                               "[ok](#two-words) [ok too](#two-words-1) [ok](b.md#b-c_d) [ok](../docs)\n"
                               "[no file](missing.md) [no anchor](#two-words-2) [no anchor](b.md#nope)\n"
                               "`[in code](missing.md)`\n\n```\n[in a block](missing.md)\n```\n")
    (docs / "b.md").write_text("# B `c_d`!\n")
    assert [problem.split(": ", 2)[2] for problem in broken_links(docs / "a.md")] == [
        "missing.md does not exist",
        "no heading of docs/a.md has the anchor #two-words-2",
        "no heading of docs/b.md has the anchor #nope",
    ]

    fake = tmp_path / "fake.sql"
    fake.write_text("-- (README,\n-- \"The contract\") holds; (README,\n-- \"No such section\") does not;\n"
                    "-- (docs/install.md, 'Nor this'), (docs/nowhere.md) neither.\n")
    assert [problem.split(": ", 1)[1] for problem in broken_citations(fake)] == [
        "README, 'No such section': README has no heading 'No such section'",
        "docs/install.md, 'Nor this': docs/install.md has no heading 'Nor this'",
        "docs/nowhere.md does not exist",
    ]
    assert slug("`proxy_address(proxy proxies) → text`") == "proxy_addressproxy-proxies--text"
    assert slug("What the fleet's code must respect") == "what-the-fleets-code-must-respect"
