"""Benchmark 7: Stage 2 label fusion, float32 one-pass ``fuse_labels`` vs the float64 per-view accumulation.

Inputs: the correspondence benchmark's scene (150k points; quick: 5k) and k = 4 of its views with random
masks and weights; the float64 reference is the previous implementation, kept here.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import numpy as np

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.bench_correspondences import load_input  # noqa: E402
from bench.common import fmt_s, measure_interleaved, report, target  # noqa: E402
from mllm3d.shared.geometry import Correspondences, compute_correspondences  # noqa: E402
from mllm3d.stage2_train3d.fusion import fuse_labels  # noqa: E402

TOL = 1e-6


def fuse_labels_float64(n: int, corr: Correspondences, masks: np.ndarray, weights: np.ndarray):
    """The float64 per-view accumulation fuse_labels used before (reference)."""
    num = np.zeros(n)
    den = np.zeros(n)
    for i in range(masks.shape[0]):
        w = float(weights[i])
        if w <= 0:
            continue
        p, r, c = corr.view(i)
        num += w * np.bincount(p, weights=masks[i][r, c].astype(np.float64), minlength=n)[:n]
        den += w * np.bincount(p, minlength=n)[:n]
    seen = den > 0
    prob = np.zeros(n, dtype=np.float32)
    prob[seen] = (num[seen] / den[seen]).astype(np.float32)
    return prob, seen


def run(quick: bool = False, repeat: int = 7) -> dict[str, Any]:
    """Time both on the same inputs (interleaved) and compare their outputs."""
    n, k = (5_000, 4) if quick else (150_000, 4)
    d = load_input(n, 19)
    rng = np.random.default_rng(0)
    views = [0, 5, 10, 15]
    corr = compute_correspondences(d.points, [d.intrinsics[v] for v in views], [d.poses[v] for v in views],
                                   [d.depths[v] for v in views])
    h, w = d.depths[0].shape
    masks = rng.random((k, h, w)) < 0.3
    weights = rng.dirichlet(np.ones(k)).astype(np.float32)
    a, sa = fuse_labels(n, corr, masks, weights)
    b, sb = fuse_labels_float64(n, corr, masks, weights)
    err = float(np.abs(a.astype(np.float64) - b).max())
    same_seen = bool(np.array_equal(sa, sb))
    t = measure_interleaved({"float32": lambda: fuse_labels(n, corr, masks, weights),
                             "float64": lambda: fuse_labels_float64(n, corr, masks, weights)}, repeat=repeat)
    speed = t["float64"].median / t["float32"].median
    ok = err <= TOL and same_seen
    return report(
        name="fusion", title="Stage 2 label fusion: float32 vs float64",
        notes=[f"{n:,} points, k = {k} views ({int(corr.offsets[-1]):,} visible pairs), random masks (30 % on) and "
               f"weights; interleaved medians of {repeat}. Max |prob₃₂ − prob₆₄| = {err:.1e}; seen sets "
               f"{'identical' if same_seen else 'DIFFERENT'}."],
        tables=[{"title": "fuse_labels", "columns": ["implementation", "median", "speed-up"],
                 "rows": [["float64 per-view accumulation (previous)", fmt_s(t["float64"].median), "1.00×"],
                          ["float32 votes, one gather, one bincount pair (fuse_labels)", fmt_s(t["float32"].median),
                           f"{speed:.2f}×"]]}],
        targets=[target(f"float32 fusion agrees with float64: max |Δprob| < {TOL:g} (floored at 1e-9), seen sets "
                        "identical", max(err, 1e-9) if ok else float("inf"), TOL, higher_is_better=False,
                        fmt="{:.1e}"),
                 target("float32 fusion not slower than float64 (speed-up)", speed, 1.0, unit="×", fmt="{:.2f}")],
        data={"timing": {m: x.as_dict() for m, x in t.items()}, "max_abs_err": err, "seen_identical": same_seen},
    )


if __name__ == "__main__":
    import json

    print(json.dumps(run(quick="--quick" in sys.argv), indent=1, default=str))
