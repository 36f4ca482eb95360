"""The repository stands alone for someone who cloned it: its docs, help texts and source
never send a reader to files outside it (`../shared`, the development machines' contract),
and every relative link in README.md and docs/*.md leads to a file of the repository.

Allowed: tests/ (they use the shared models on the development machines), scripts/serve.sh's
documented GLIMPSE_LOCAL_MODELS fallback, and README lines about "this project's
development machines" that a reader needs nothing from."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

import pytest

from cli.main import build_parser

REPO = Path(__file__).resolve().parents[1]
OUTSIDE = re.compile(r"\.\./shared|CONTRACT")
DEV_MACHINES = "this project's development machines"
SOURCE_SUFFIXES = {".py", ".html", ".js", ".css", ".md", ".txt", ".json"}
# [text](target) and ![alt](target), and reference definitions `[name]: target`.
INLINE_LINK = re.compile(r"!?\[[^\]]*\]\(\s*<?([^)\s>]+)>?(?:\s+\"[^\"]*\")?\s*\)")
REFERENCE_LINK = re.compile(r"^\s*\[[^\]]+\]:\s*<?(\S+?)>?(?:\s+.*)?$", re.MULTILINE)
DOCS_PATH = re.compile(r"\bdocs/[\w.-]+\.(?:md|png)\b")


def docs() -> list[Path]:
    return [REPO / "README.md", *sorted((REPO / "docs").glob("*.md"))]


def sources() -> Iterator[Path]:
    for package in ("app", "glimpse", "worker", "cli"):
        for path in sorted((REPO / package).rglob("*")):
            if path.suffix in SOURCE_SUFFIXES and "__pycache__" not in path.parts:
                yield path


def offending_lines(path: Path) -> list[str]:
    lines = path.read_text(encoding="utf-8").splitlines()
    return [
        f"{path.relative_to(REPO)}:{n}: {line.strip()}"
        for n, line in enumerate(lines, 1)
        if OUTSIDE.search(line) and not (path.name == "README.md" and DEV_MACHINES in line)
    ]


def help_texts() -> Iterator[tuple[str, str]]:
    """`glimpse --help` and every subcommand's, as argparse prints them."""
    pending = [("glimpse", build_parser())]
    while pending:
        name, parser = pending.pop()
        yield name, parser.format_help()
        for action in parser._actions:
            if action.choices and hasattr(action, "_name_parser_map"):
                for sub_name, sub in action._name_parser_map.items():
                    pending.append((f"{name} {sub_name}", sub))


def test_the_docs_never_point_outside_the_repository() -> None:
    paths = [*docs(), REPO / "SECURITY.md"]
    assert len(paths) >= 5  # README, docs/api.md, docs/cli.md, docs/models.md, SECURITY.md
    found = [line for path in paths for line in offending_lines(path)]
    assert found == []


def test_the_source_never_points_outside_the_repository() -> None:
    found = [line for path in sources() for line in offending_lines(path)]
    assert found == []


def test_the_help_texts_never_point_outside_the_repository() -> None:
    texts = dict(help_texts())
    assert {"glimpse", "glimpse explain", "glimpse models add", "glimpse keys hash"} <= set(texts)
    assert [name for name, text in texts.items() if OUTSIDE.search(text)] == []


def relative_links(path: Path) -> list[str]:
    text = path.read_text(encoding="utf-8")
    text = re.sub(r"```.*?```", "", text, flags=re.DOTALL)  # code is not links
    targets = INLINE_LINK.findall(text) + REFERENCE_LINK.findall(text)
    return [t for t in targets if not re.match(r"[a-z][a-z0-9+.-]*:|#", t)]


@pytest.mark.parametrize("doc", docs(), ids=lambda p: str(p.relative_to(REPO)))
def test_every_relative_link_leads_to_a_file_of_the_repository(doc: Path) -> None:
    broken = []
    for target in relative_links(doc):
        resolved = (doc.parent / target.split("#", 1)[0]).resolve()
        if not (resolved.is_relative_to(REPO) and resolved.exists()):
            broken.append(target)
    assert broken == []


def test_the_docs_files_named_in_the_source_and_docs_exist() -> None:
    named = {
        (path.relative_to(REPO), match)
        for path in [*sources(), *docs()]
        for match in DOCS_PATH.findall(path.read_text(encoding="utf-8"))
    }
    assert [(str(p), m) for p, m in sorted(named) if not (REPO / m).is_file()] == []
    assert {"docs/api.md", "docs/cli.md", "docs/models.md"} <= {m for _, m in named}
