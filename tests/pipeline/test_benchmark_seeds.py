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


def test_only_the_ground_truth_row_may_train_on_ground_truth(monkeypatch) -> None:
    from mllm3d.pipeline import benchmark_seed
    from mllm3d.shared.errors import BadInputError

    cfg = replace(BenchmarkConfig(), variants=("f", "k", "g"))
    benchmark_seed.check_ground_truth_use(cfg)  # the packaged recipes: only (g) uses labels
    real = BenchmarkConfig.variant_config
    # (f) pointed at the with-labels recipe: refused, naming the row
    monkeypatch.setattr(BenchmarkConfig, "variant_config",
                        lambda self, v: real(self, benchmark_seed.VARIANTS[[x.key for x in benchmark_seed.VARIANTS]
                                                                           .index("g")]) if v.key == "f" else real(self, v))
    with pytest.raises(BadInputError, match=r"row \(f\)"):
        benchmark_seed.check_ground_truth_use(cfg)


def test_feature_controls_reach_the_backend_config() -> None:
    from mllm3d.pipeline.benchmark_seed import backend_config

    assert backend_config(replace(BenchmarkConfig(), features="none"))["image_features"] is False
    got = backend_config(replace(BenchmarkConfig(), features="random_instance"))
    assert got["image_features"] is True and got["feature_model"] == "random_instance"
    assert backend_config(BenchmarkConfig())["feature_model"] == "structured"


def test_bounds_are_last_and_the_ground_truth_row_is_marked_not_label_free() -> None:
    a = [0.1, 0.5, 0.6, 0.3]
    res = _seed_result(1, {"a": a, "c": a, "f": a})
    for key, label in (("k", "clean pseudo-labels"), ("g", "ground-truth 3D masks (upper bound, not label-free)")):
        res.evals[key] = res.evals["f"]
        res.rows[key] = {**res.rows["f"], "seen_miou": 0.4, "unseen_miou": 0.2}
        res.labels[key] = label
    text = markdown(SeedsResult(replace(BenchmarkConfig(), seeds=(1,), variants=("c", "f", "k", "g")), [res],
                                "cmd", "d", "m", 1.0))
    assert "mIoU seen" in text and "mIoU unseen" in text
    lines = [ln for ln in text.splitlines() if ln.startswith("| (") or ln.startswith("| **(")]
    assert lines[-1].startswith("| **(g) ground-truth 3D masks (upper bound, not label-free)**")
    assert lines[-2].startswith("| (k)") and "| 40.00 | 20.00 |" in lines[-1]


def test_none_features_write_no_image_features_and_the_clean_stand_in_has_no_failures(tmp_path) -> None:
    from mllm3d.pipeline.benchmark_seed import backend_config, clean_backend_config
    from mllm3d.pipeline.steps import synthetic_stage1
    from mllm3d.shared.store import open_store
    from mllm3d.stage1_pseudolabel.synthetic_backend import SyntheticBackendConfig

    for features, stored in (("none", False), ("structured", True)):
        cfg = replace(BenchmarkConfig(), features=features, seed=3)
        store = synthetic_stage1(1, 3, tmp_path / f"{features}.zarr", 2, backend_config(cfg), None)
        s = open_store(store)
        pairs = s.complete_pairs()
        assert pairs and all((s.read_query(*p).image_features is not None) == stored for p in pairs)
    # explicit failure rates of the failure model cannot switch a failure on in the clean stand-in
    cfg = replace(BenchmarkConfig(), failures={"preset": "lisa_like", "miss_rate": 0.5, "boundary_rate": 0.9})
    clean = SyntheticBackendConfig.from_dict(clean_backend_config(cfg))
    assert clean.preset == "clean" and clean.feature_model == "structured"
    assert all(getattr(clean, n) == 0.0 for n in ("miss_rate", "hallucination_rate", "absent_hallucination_rate",
                                                   "misread_rate", "boundary_rate", "partial_rate"))


def test_default_budget_has_three_seeds_and_100_held_out_queries_per_seed() -> None:
    from mllm3d.pipeline.benchmark_seed import full_variant, train_overrides
    from mllm3d.shared.synthetic import SyntheticSource
    from mllm3d.stage2_train3d.config import load_config
    from mllm3d.stage2_train3d.datamodule import split_pairs

    cfg = BenchmarkConfig()
    assert len(cfg.seeds) >= 3 and 0 not in cfg.seeds and BenchmarkConfig.quick().seeds == cfg.seeds[:1]
    for seed in cfg.seeds:
        run = replace(cfg, seed=seed)
        data = load_config(run.variant_config(full_variant()), train_overrides(run, full_variant())).data
        pairs = [(q.scene_id, q.query_id) for q in SyntheticSource(cfg.num_scenes, seed).queries()]
        held = split_pairs(pairs, data)[1]
        assert len(held) >= 100, (seed, len(held))


def test_target_lines_on_hand_made_results(tmp_path) -> None:
    from mllm3d.pipeline.benchmark_targets import last_local_cos, target_checks

    s1 = _seed_result(1, {"a": [0.2, 0.4], "c": [0.2, 0.4], "f": [0.3, 0.5]})
    s2 = _seed_result(2, {"a": [0.0, 0.2], "c": [0.4, 0.2], "f": [0.3, 0.5]})
    res = SeedsResult(replace(BenchmarkConfig(), seeds=(1, 2), variants=("c", "f")), [s1, s2], "cmd", "d", "m", 5.0)
    checks = target_checks(res)
    assert [ok for _, ok in checks] == [True, True, True]  # CI [+20, +20]; best (f) 40 − (a) 20 = +20; 0.1 min
    assert "best label-free row (f) − (a) = +20.00" in checks[1][0] and "< 90 min" in checks[2][0]
    run = tmp_path / "run"
    (run / "logs" / "version_0").mkdir(parents=True)
    (run / "logs" / "version_0" / "metrics.csv").write_text(
        "epoch,train/local_cos,step\n0,0.35,9\n0,,10\n1,0.61,19\n")
    assert last_local_cos(str(run / "checkpoints" / "last.ckpt")) == pytest.approx(0.61)
    s1.checkpoints["f"] = str(run / "checkpoints" / "last.ckpt")
    line = [t for t, _ in target_checks(res) if "local_cos" in t]
    assert line == ["(f) collapse diagnostic train/local_cos at the end 0.610 (max over seeds) < 0.75"]
