"""Render the dict returned by bench/bench_stage1_flops.py as a report.

The script's dict is not in the suite's report format; this keeps run_all.py independent of its exact
shape: known keys are laid out as tables, anything else is shown as flattened key/value rows.
"""

from __future__ import annotations

from typing import Any

from bench.common import report


def flatten(d: Any, prefix: str = "") -> list[tuple[str, Any]]:
    """Nested dicts/lists -> [(dotted.key, scalar)]."""
    out: list[tuple[str, Any]] = []
    if isinstance(d, dict):
        for k, v in d.items():
            out += flatten(v, f"{prefix}.{k}" if prefix else str(k))
    elif isinstance(d, (list, tuple)) and d and all(isinstance(x, (dict, list, tuple)) for x in d):
        for i, v in enumerate(d):
            out += flatten(v, f"{prefix}[{i}]")
    else:
        out.append((prefix, d))
    return out


def _fmt(v: Any) -> str:
    if isinstance(v, float):
        return f"{v:.4g}"
    if isinstance(v, int) and abs(v) >= 10**6:
        return f"{v:.4g}"
    return str(v)


def render_stage1(raw: dict[str, Any]) -> dict[str, Any]:
    """A report dict from the FLOP script's raw dict (generic fallback)."""
    rows = [[k, _fmt(v)] for k, v in flatten(raw)]
    return report(
        name="stage1_flops",
        title="Stage 1 FLOPs and tiny-model wall time (bench/bench_stage1_flops.py)",
        notes=["Raw output of bench/bench_stage1_flops.py (not in the suite's report format; shown flattened)."],
        tables=[{"title": "bench_stage1_flops.run()", "columns": ["key", "value"], "rows": rows}],
        targets=[],
        data=raw,
    )
