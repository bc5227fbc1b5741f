"""Pooling the benchmark over seeds: mean ± std per row and paired CIs, on hand-made per-seed results."""

from __future__ import annotations

from dataclasses import replace

import pytest

from mllm3d.pipeline.benchmark import BenchmarkConfig, BenchmarkResult, SeedsResult, markdown
from mllm3d.pipeline.evaluate import EvalResult, EvalRow
from mllm3d.shared.metrics import QueryScore


def _seed_result(seed: int, ious: dict[str, list[float]]) -> BenchmarkResult:
    cfg = replace(BenchmarkConfig(), seed=seed, variants=("c", "f"))
    evals, rows = {}, {}
    for key, values in ious.items():
        scores = [QueryScore(f"s{seed}", f"q{i}", v, 1, 1, False) for i, v in enumerate(values)]
        evals[key] = EvalResult([EvalRow(key, scores)], [(f"s{seed}", f"q{i}") for i in range(len(values))])
        rows[key] = {"acc25": sum(v > 0.25 for v in values) / len(values), "acc50": 0.0,
                     "miou": sum(values) / len(values), "n": float(len(values))}
    labels = {"a": "2D projection only", "c": "w/o spatial consistency", "f": "full (4 views)"}
    return BenchmarkResult(cfg, rows, labels, {}, len(ious["a"]), {"train f": 1.0}, "", "", "", evals)


def test_mean_std_over_seeds_and_ci_pooled_within_seeds():
    s1 = _seed_result(1, {"a": [0.2, 0.4], "c": [0.2, 0.4], "f": [0.3, 0.5]})  # f - a = 0.1 on both queries
    s2 = _seed_result(2, {"a": [0.0, 0.2], "c": [0.4, 0.2], "f": [0.3, 0.5]})  # f - a = 0.3 on both
    res = SeedsResult(replace(BenchmarkConfig(), seeds=(1, 2), variants=("c", "f")), [s1, s2], "cmd", "d", "m", 5.0)
    # row (a): per-seed mIoU 0.3 and 0.1 -> mean 0.2, sample std sqrt(0.02); Acc@0.25 0.5 and 0 -> 0.25 ± 0.354
    assert res.rows["a"]["miou"] == pytest.approx(0.2)
    assert res.rows["a"]["miou_std"] == pytest.approx(0.02**0.5)
    assert res.rows["f"]["miou_std"] == pytest.approx(0.0) and res.num_queries == 4
    ci = res.paired("f", "a")  # within-seed resampling: every resample has mean (0.1 + 0.1 + 0.3 + 0.3) / 4
    assert (ci.mean, ci.low, ci.high, ci.n) == (pytest.approx(0.2), pytest.approx(0.2), pytest.approx(0.2), 4)
    texts = [t for t, _ in res.cis()]
    assert texts == ["(f) − (a) 2D projection only", "(f) − (c) w/o spatial consistency"]
    md = markdown(res)
    assert "| (a) 2D projection only | 25.00 ± 35.36 | 0.00 ± 0.00 | 20.00 ± 14.14 |" in md
    assert "(f) − (a) 2D projection only: +20.00 [+20.00, +20.00] (excludes 0)" in md
