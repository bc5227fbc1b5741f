"""``mllm3d benchmark`` at the smallest size: rows, held-out scoring, RESULTS.md section, reuse on rerun."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner

from mllm3d.pipeline.benchmark import (
    BenchmarkConfig,
    benchmark_cmd,
    direction_checks,
    markdown,
    run_benchmark,
)

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def bench(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str]:
    out = tmp_path_factory.mktemp("bench")
    results = out / "RESULTS.md"
    results.write_text("# Results\n\nkept text\n")
    args = ["--smoke", "--variants", "b,f,k,g", "--out", str(out / "work"), "--results", str(results)]
    res = CliRunner(env={"COLUMNS": "200"}).invoke(benchmark_cmd, args)
    assert res.exit_code == 0, res.output + repr(res.exception)
    return out, res.output


def test_rows_are_scored_on_held_out_scenes_only(bench) -> None:
    out, output = bench
    data = json.loads((out / "work" / "benchmark-results.json").read_text())
    assert list(data["rows"]) == ["a", "u", "b", "f", "t", "k", "g"] and list(data["per_seed"]) == ["1"]
    assert data["config"]["failures"] == {"preset": "lisa_like"}
    assert [c["difference"] for c in data["paired_ci"]] == [
        "(f) − (a) 2D projection only", "(f) − (u) 2D projection, union of the views", "(f) − (b) w/o Token-for-Query",
        "(f) − (t) full + test-view evidence (beyond the paper)",
        f"(f) − (k) {data['rows']['k']['label']}", f"(f) − (g) {data['rows']['g']['label']}",
        "(t) − (a) 2D projection only"]
    rows = data["rows"]
    # the ground-truth bound trained on the clean stand-in's store, with labels; scored like every row
    assert "ground-truth 3D masks" in rows["g"]["label"] and "not label-free" in rows["g"]["label"]
    assert (out / "work" / "seed1" / "store-k4-clean.zarr").is_dir()
    for key, labels, store in (("g", "true", "store-k4-clean.zarr"), ("k", "false", "store-k4-clean.zarr"),
                               ("f", "false", "store-k4.zarr"), ("b", "false", "store-k4.zarr")):
        run = next((out / "work" / "seed1" / "runs").glob(f"{key}-*"))
        assert f"with_labels: {labels}" in (run / "config.yaml").read_text(), key
        assert Path(json.loads((run / "run-stamp.json").read_text())["store"]).name == store, key
    assert {"seen_miou", "unseen_miou"} <= set(rows["f"])
    assert rows["u"]["label"] == "2D projection, union of the views" and "t" in rows
    assert data["config"]["protocol"] == "heldout" and data["num_queries"] > 0
    run_cfg = (out / "work" / "seed1" / "runs" / "f-full__4_views" / "config.yaml").read_text()
    assert "val_fraction: 0.3" in run_cfg and "limit_val_batches: 0" in run_cfg
    for key in ("b", "f", "k", "g"):
        assert Path(data["per_seed"]["1"]["checkpoints"][key]).name == "last.ckpt"  # no ground-truth model selection
    assert "(f) full (4 views)" in output and "2D projection only" in output


def test_results_section_replaces_only_its_own_part(bench) -> None:
    out, _ = bench
    text = (out / "RESULTS.md").read_text()
    assert text.startswith("# Results\n\nkept text\n")
    assert "| (a) 2D projection only |" in text and "| (f) full (4 views) |" in text
    assert "held-out scenes" in text and "Machine:" in text and "Command: `mllm3d" in text
    assert "bootstrap 95 % CI" in text and "seeds 1;" in text


def test_rerun_reuses_stores_and_runs(bench) -> None:
    out, _ = bench
    ckpt = out / "work" / "seed1" / "runs" / "f-full__4_views" / "checkpoints" / "last.ckpt"
    before = ckpt.stat().st_mtime_ns
    cfg = BenchmarkConfig.smoke()
    cfg.variants = ("f",)
    result = run_benchmark(cfg, out / "work")
    assert ckpt.stat().st_mtime_ns == before
    assert "train f (reused)" in result.per_seed[0].seconds  # and the wall-time target is not claimed for it
    from mllm3d.pipeline.benchmark_targets import target_checks

    assert not [t for t, _ in target_checks(result) if t.startswith("wall time")]
    assert "were reused from an earlier run" in markdown(result)
    ci = result.paired("f", "a")  # pooled over the seed's scored queries
    assert ci.n == result.num_queries and ci.low <= ci.mean <= ci.high
    assert set(result.rows) == {"a", "u", "f", "t"}
    checks = dict(direction_checks(result))
    assert "(f) full > (a) 2D projection only" in checks
    assert "## Controlled synthetic benchmark" in markdown(result)
    # the scored queries are those of the scenes the runs' DataModule held out, never a training scene
    from mllm3d.shared.store import open_store
    from mllm3d.stage2_train3d.config import load_config
    from mllm3d.stage2_train3d.datamodule import split_pairs

    run = out / "work" / "seed1" / "runs" / "f-full__4_views"
    train, held = split_pairs(open_store(out / "work" / "seed1" / "store-k4.zarr").complete_pairs(),
                              load_config(run / "config.yaml").data)
    scored = {s for s, _ in result.per_seed[0].evals["f"].pairs}
    assert scored == {s for s, _ in held} and not scored & {s for s, _ in train}


def test_markdown_marks_g_as_not_label_free_and_has_seen_unseen_columns(bench) -> None:
    out, output = bench
    text = (out / "RESULTS.md").read_text()
    assert "| Method | Acc@0.25 | Acc@0.5 | mIoU | mIoU seen | mIoU unseen | paper Acc@0.25 |" in text
    g = [ln for ln in text.splitlines() if ln.startswith("| **(g)")]
    assert len(g) == 1 and "not label-free" in g[0] and g[0].count("|") == 10
    assert "**(g) also trains on ground-truth 3D masks and is not label-free**" in text
    assert "| (k) clean pseudo-labels" in text and "Wall time:" in text and "wall time" in output
    # the clean store holds exactly the failure model store's queries
    from mllm3d.shared.store import open_store

    seed = out / "work" / "seed1"
    assert open_store(seed / "store-k4-clean.zarr").complete_pairs() == open_store(seed / "store-k4.zarr").complete_pairs()


def test_pooled_view_row_trains_and_scores_on_its_own_pooled_store(bench) -> None:
    """Row (o): Stage 1 draws each query's 4 views from 6 frames per scene; (f) is reused, (o) is compared."""
    import numpy as np

    from mllm3d.shared.store import open_store

    out, _ = bench
    cfg = BenchmarkConfig.smoke()
    cfg.variants = ("f", "o")
    result = run_benchmark(cfg, out / "work")
    seed = out / "work" / "seed1"
    pooled, per_query = open_store(seed / "store-k4-pool6.zarr"), open_store(seed / "store-k4.zarr")
    assert pooled.complete_pairs() == per_query.complete_pairs()

    def distinct_views(store) -> dict[str, int]:
        seen: dict[str, set[int]] = {}
        for sid, qid in store.complete_pairs():
            views = np.asarray(store.read_query(sid, qid).view_index)
            assert len(views) == 4  # k views per query either way
            seen.setdefault(sid, set()).update(views.tolist())
        return {s: len(v) for s, v in seen.items()}

    assert max(distinct_views(pooled).values()) <= 6
    assert max(distinct_views(per_query).values()) > 6  # per-query sampling spreads over the 16 frames
    run = next((seed / "runs").glob("o-*"))
    assert Path(json.loads((run / "run-stamp.json").read_text())["store"]).name == "store-k4-pool6.zarr"
    assert "o" in result.rows and any(text.startswith("(f) − (o)") for text, _ in result.cis())
    assert "per-scene pool of 6 frames" in markdown(result)
