"""Every Markdown file that code, configs, tests and docs cite exists in the repository.

A citation is a path ending in ``.md`` written in a ``.py``, ``.yaml``, ``.md`` file or the Makefile; it
resolves if it names a file inside the repo relative to the repo root, to ``docs/`` or to the citing file.
A quoted bare name in Python (``out / "report.md"``) is a file the code reads or writes, not a citation.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
SKIP_DIRS = {".venv", "venv", "cache", "build", "dist", "node_modules", "__pycache__"}
SUFFIXES = {".py", ".yaml", ".yml", ".md"}
# a path of word/dot/dash segments ending in .md, not inside a longer path or URL
REFERENCE = re.compile(r"(?<![\w./-])((?:[\w.-]+/)*[\w-][\w.-]*\.md)(?![\w-])")
QUOTES = "'\""


def cited_files(root: Path) -> Iterator[Path]:
    """The files whose citations are checked, skipping virtual environments, caches and build output."""
    for path in sorted(root.rglob("*")):
        rel = path.relative_to(root)
        if any(p in SKIP_DIRS or p.startswith(".") or p.endswith(".egg-info") for p in rel.parts[:-1]):
            continue
        if path.is_file() and (path.suffix in SUFFIXES or path.name == "Makefile"):
            yield path


def _resolves(root: Path, citing: Path, ref: str) -> bool:
    for base in (root, root / "docs", citing.parent):
        target = (base / ref).resolve()
        if target.is_file() and target.is_relative_to(root.resolve()):
            return True
    return False


def broken_citations(root: Path) -> list[str]:
    """``file:line: target`` for every cited Markdown file that is not in the repo under ``root``."""
    problems = []
    for path in cited_files(root):
        text = path.read_text(encoding="utf-8", errors="replace")
        for lineno, line in enumerate(text.splitlines(), 1):
            for m in REFERENCE.finditer(line):
                ref = m.group(1)
                before = line[m.start() - 1] if m.start() > 0 else ""
                after = line[m.end()] if m.end() < len(line) else ""
                if path.suffix == ".py" and before in QUOTES and after == before:
                    continue  # a file name the code uses, not a citation
                if not _resolves(root, path, ref):
                    problems.append(f"{path.relative_to(root)}:{lineno}: {ref}")
    return sorted(set(problems))


def test_every_cited_markdown_file_exists():
    problems = broken_citations(REPO)
    assert not problems, "cited Markdown files missing from the repo:\n" + "\n".join(problems)


def test_the_scan_sees_the_repos_own_citations():
    """The scan is not vacuous: it finds the docs the code cites, e.g. docs/method.md in fusion.py."""
    files = {p.relative_to(REPO).as_posix() for p in cited_files(REPO)}
    assert {"stage2_train3d/fusion.py", "README.md", "Makefile", "configs/train/paper.yaml"} <= files
    assert ".venv" not in {p.relative_to(REPO).parts[0] for p in cited_files(REPO)}


def test_a_planted_bad_reference_is_reported(tmp_path):
    md = ".md"  # planted names are built at run time, so this file cites nothing itself
    guide, store, missing, notes = (
        f"guide{md}",
        f"store{md}",
        f"handbook_only{md}",
        f"../shared/notes/data{md}",
    )
    docs = tmp_path / "docs"
    docs.mkdir()
    (docs / guide).write_text(f"# guide\nsee [the store]({store}) and ../README{md}\n", encoding="utf-8")
    (docs / store).write_text("# store\n", encoding="utf-8")
    (tmp_path / f"README{md}").write_text(f"read docs/{guide}\n", encoding="utf-8")
    pkg = tmp_path / "pkg"
    pkg.mkdir()
    (pkg / "mod.py").write_text(
        f'"""Cites docs/{store} and {guide}."""\n'
        f"# the method: {missing}, bug 3\n"
        f'OUT = "report{md}"  # written by the code\n'
        f"# team notes: {notes}\n",
        encoding="utf-8",
    )
    (tmp_path / "Makefile").write_text(f"doc:\n\tcat docs/{missing}\n", encoding="utf-8")
    venv = tmp_path / ".venv" / "lib"
    venv.mkdir(parents=True)
    (venv / "ignored.py").write_text(f"# {missing}\n", encoding="utf-8")

    problems = broken_citations(tmp_path)
    assert problems == [f"Makefile:2: docs/{missing}", f"pkg/mod.py:2: {missing}", f"pkg/mod.py:4: {notes}"]
    (docs / missing).write_text("# now it exists\n", encoding="utf-8")
    assert broken_citations(tmp_path) == [f"pkg/mod.py:4: {notes}"]
