"""README.md and docs/*.md: every relative link resolves to a file, and every ``#anchor`` to a heading of its
page, with GitHub's heading slugs."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
LINK = re.compile(r"!?\[[^\]]*\]\(([^)\s]+)(?:\s+\"[^\"]*\")?\)")


def _prose(text: str) -> list[str]:
    """The lines outside fenced code blocks."""
    lines, fenced = [], False
    for line in text.splitlines():
        if line.lstrip().startswith(("```", "~~~")):
            fenced = not fenced
        elif not fenced:
            lines.append(line)
    return lines


def slug(heading: str) -> str:
    """GitHub's anchor for a heading's text: lower case, markup and punctuation dropped (letters, digits,
    spaces, ``-`` and ``_`` kept), spaces to ``-``."""
    text = re.sub(r"!?\[([^\]]*)\]\([^)]*\)", r"\1", heading.strip().lower())  # a link's text only
    return re.sub(r"[^\w\- ]", "", text.replace("`", "")).replace(" ", "-")


def anchors(page: Path) -> set[str]:
    """Every anchor of ``page``: its headings' slugs, a repeated slug numbered ``-1``, ``-2``, ... as GitHub does."""
    seen: dict[str, int] = {}
    out = set()
    for line in _prose(page.read_text()):
        match = re.match(r" {0,3}#{1,6}\s+(.*?)\s*#*\s*$", line)
        if match:
            base = slug(match.group(1))
            n = seen.get(base, 0)
            seen[base] = n + 1
            out.add(base if n == 0 else f"{base}-{n}")
    return out


def links(page: Path) -> list[str]:
    """The relative link targets of ``page`` (web and mail links left out)."""
    targets = [t for line in _prose(page.read_text()) for t in LINK.findall(re.sub(r"`[^`]*`", "", line))]
    return [t for t in targets if not re.match(r"[a-z][a-z0-9+.-]*:", t)]


def broken(page: Path) -> list[str]:
    """``page``'s links whose file does not exist or whose anchor is no heading there."""
    bad = []
    for target in links(page):
        path, _, anchor = target.partition("#")
        dest = (page.parent / path).resolve() if path else page
        if not dest.exists():
            bad.append(f"{target}: no such file")
        elif anchor and dest.suffix == ".md" and anchor not in anchors(dest):
            bad.append(f"{target}: no heading #{anchor} in {dest.name}")
    return bad


@pytest.mark.parametrize("heading,expected", [
    ("Quick start: what `make train` prints", "quick-start-what-make-train-prints"),
    ("Data pipeline (streamed)", "data-pipeline-streamed"),
    ("Weight conversion and parity with PyTorch", "weight-conversion-and-parity-with-pytorch"),
    ("CPU targets -- 1.0x, not_met?", "cpu-targets----10x-not_met"),
    ("See [the docs](docs/a.md)", "see-the-docs"),
])
def test_slugs_follow_github(heading, expected):
    assert slug(heading) == expected


def test_repeated_headings_are_numbered(tmp_path):
    page = tmp_path / "p.md"
    page.write_text("# A\n## Notes\n```bash\n# Notes\n```\n## Notes\n### Notes ##\n")
    assert anchors(page) == {"a", "notes", "notes-1", "notes-2"}


def test_a_dead_link_and_a_dangling_anchor_are_found(tmp_path):
    (tmp_path / "b.md").write_text("## Here\n")
    page = tmp_path / "a.md"
    page.write_text("[ok](b.md#here) [web](https://x.org/#y) `[code](nope.md)` [gone](c.md) [bad](b.md#there) "
                    "[self](#top)\n# Top\n")
    assert broken(page) == ["c.md: no such file", "b.md#there: no heading #there in b.md"]


def test_the_pages_exist():
    names = {p.name for p in PAGES}
    assert {"README.md", "data.md", "training.md", "parity.md", "inference.md", "study.md", "speed.md",
            "troubleshooting.md"} <= names


@pytest.mark.parametrize("page", PAGES, ids=lambda p: str(p.relative_to(ROOT)))
def test_every_relative_link_resolves(page):
    assert links(page) or page.name != "README.md"  # the README does link to docs/
    assert broken(page) == []
