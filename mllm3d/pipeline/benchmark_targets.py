"""The benchmark's verdict lines on issue 12's targets: (f) beats (a) with a CI excluding 0, the best
label-free row beats (a) by >= 10 mIoU, L_spatial's collapse diagnostic below its bound, and the wall time."""

from __future__ import annotations

import csv
import math
from pathlib import Path
from typing import Any

from mllm3d.pipeline.benchmark_seed import BASELINE_KEY, FULL_KEY, REUSED, VARIANTS

COLLAPSE_BOUND = 0.75  # train/local_cos of (f) at the end (docs/stage2.md, "Spatial loss forms")
BEST_MARGIN = 0.10  # mIoU over (a)
QUICK_MIN, FULL_MIN = 20.0, 90.0  # wall-time targets: one seed (--quick), more seeds (make eval)


def last_local_cos(checkpoint: str) -> float | None:
    """The last logged ``train/local_cos`` of the run that wrote ``checkpoint`` (None when not logged)."""
    run = Path(checkpoint).parent.parent
    last: float | None = None
    for path in sorted((run / "logs").glob("version_*/metrics.csv")):
        with path.open(newline="") as f:
            for row in csv.DictReader(f):
                v = row.get("train/local_cos") or ""
                if v:
                    last = float(v)
    return last


def target_checks(result: Any) -> list[tuple[str, bool]]:
    """(text, met) for each target the result can check (``result``: a SeedsResult)."""
    out: list[tuple[str, bool]] = []
    rows = result.rows
    if FULL_KEY in rows:
        ci = result.paired(FULL_KEY, BASELINE_KEY)
        out.append((f"(f) − (a) {ci.text()} mIoU points, 95 % CI excludes 0 and > 0", ci.low > 0))
    bounds = {v.key for v in VARIANTS if v.store == "clean"}
    free = {k: v["miou"] for k, v in rows.items() if k not in bounds | {BASELINE_KEY} and not math.isnan(v["miou"])}
    if free:
        best = max(free, key=lambda k: free[k])
        gain = free[best] - rows[BASELINE_KEY]["miou"]
        out.append((f"best label-free row ({best}) − (a) = {100 * gain:+.2f} mIoU points (target ≥ +10)",
                    gain >= BEST_MARGIN))
    cos = [c for r in result.per_seed if FULL_KEY in r.checkpoints
           for c in [last_local_cos(r.checkpoints[FULL_KEY])] if c is not None]
    if cos:
        out.append((f"(f) collapse diagnostic train/local_cos at the end {max(cos):.3f} (max over seeds) "
                    f"< {COLLAPSE_BOUND}", max(cos) < COLLAPSE_BOUND))
    n = len(result.per_seed)
    limit = QUICK_MIN if n == 1 else FULL_MIN
    if any(k.endswith(REUSED) for r in result.per_seed for k in r.seconds):
        return out  # a rerun that reused finished trainings: its wall time is not that of a benchmark run
    out.append((f"wall time {result.seconds / 60:.1f} min < {limit:.0f} min ({n} seed(s))", result.seconds / 60 < limit))
    return out
