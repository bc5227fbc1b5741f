"""End-to-end smoke test of the benchmark suite: ``bench/run_all.py --quick --out <tmp>`` writes a
BENCHMARKS.md with a ratio for every target of benchmarks 1-4 (no timing assertions: quick sizes on a
shared CPU are noise)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from bench import run_all

pytestmark = pytest.mark.slow


def _targets_table(md: str) -> list[list[str]]:
    section = md.split("## Targets", 1)[1].split("\n## ", 1)[0]
    rows = [ln for ln in section.splitlines() if ln.startswith("| ") and not ln.startswith("| benchmark")]
    return [[c.strip() for c in re.split(r"(?<!\\)\|", ln)[1:-1]] for ln in rows]


def test_run_all_quick_writes_benchmarks_md(tmp_path: Path) -> None:
    out = tmp_path / "sub" / "BENCHMARKS.md"
    rc = run_all.main(["--quick", "--out", str(out), "--json", str(tmp_path / "b.json")])
    md = out.read_text(encoding="utf-8")
    assert rc == 0, md
    for key in ("**Command**", "**Date**", "**Commit**", "**Machine**", "**Method**", "quick mode"):
        assert key in md
    rows = _targets_table(md)
    by_bench: dict[str, list[list[str]]] = {}
    for row in rows:
        by_bench.setdefault(row[0], []).append(row)
    for name, title in run_all.TITLES.items():
        assert title in by_bench, f"no row for {name}"
        if name == "scale":
            assert "no target" in by_bench[title][0][1]
            continue
        for _bench, claim, measured, tgt, verdict in by_bench[title]:
            assert re.search(r"\d", measured), (claim, measured)
            assert tgt and ("met" in verdict or "MISSED" in verdict), (claim, verdict)
            assert re.search(r"\d+\.\d+×", verdict), (claim, verdict)  # margin as a ratio
    assert "status: error" not in md
