"""Smoke test of the benchmark suite: tiny sizes, agreement of reference and vectorised code, report keys.

No timing assertions: timings on a shared CPU are noise at these sizes.
"""

from __future__ import annotations

import numpy as np
import pytest

from bench import bench_correspondences, bench_store
from bench.reference_projection import compare, compute_correspondences_loop
from mllm3d.shared.geometry import DepthTest, compute_correspondences
from mllm3d.shared.synthetic import SyntheticConfig, generate_scene

REPORT_KEYS = {"name", "title", "notes", "tables", "targets", "profile", "data"}
TARGET_KEYS = {"claim", "measured", "threshold", "met", "margin", "margin_text", "measured_text", "target_text"}


def _check_report(rep: dict) -> None:
    assert REPORT_KEYS <= set(rep)
    assert rep["tables"] and all({"title", "columns", "rows"} <= set(t) for t in rep["tables"])
    for t in rep["tables"]:
        assert all(len(row) == len(t["columns"]) for row in t["rows"])
    assert rep["targets"] and all(TARGET_KEYS <= set(t) for t in rep["targets"])


@pytest.mark.parametrize("test", [DepthTest(), DepthTest(abs_tol=0.0, rel_tol=0.25, border=10)])
def test_reference_loop_matches_vectorised(test: DepthTest) -> None:
    scene, _ = generate_scene("smoke", 3, SyntheticConfig(num_views=3))
    views = list(scene.views)
    args = (scene.points, [v.intrinsic for v in views], [v.pose for v in views], [v.depth for v in views], test)
    vec = compute_correspondences(*args)
    ref = compute_correspondences_loop(*args)
    agree = compare(vec, ref)
    assert agree["identical"], agree
    assert vec.offsets[-1] > 0


def test_reference_loop_edge_cases() -> None:
    """Points behind the camera, outside the image and on invalid depth are dropped by both."""
    k = np.array([[10.0, 0, 4.5], [0, 10.0, 3.5], [0, 0, 1]])
    depth = np.full((8, 10), 2.0, dtype=np.float32)
    depth[0, 0] = 0.0
    pts = np.array([[0, 0, 2.0], [0, 0, -2.0], [5.0, 0, 2.0], [-0.9, -0.7, 2.0], [0.1, 0.1, 2.04], [0, 0, 2.2]])
    a = compute_correspondences(pts, [k], [np.eye(4)], [depth])
    b = compute_correspondences_loop(pts, [k], [np.eye(4)], [depth])
    assert compare(a, b)["identical"]
    assert a.point_idx.tolist() == [0, 4]


def test_correspondence_bench_quick() -> None:
    rep = bench_correspondences.run(quick=True, repeat=1)
    _check_report(rep)
    d = rep["data"]
    assert d["agreement"]["identical"], d["agreement"]
    for key in ("speedup", "vectorised_point_views_per_s", "reference_point_views_per_s", "reference_extrapolated_s"):
        assert np.isfinite(d[key]) and d[key] > 0
    # every distinct view is timed and weighted by how often the full problem repeats it
    assert d["ref_views"] == len(d["reference_per_view_s"]) == len(d["ref_view_weights"])
    assert sum(d["ref_view_weights"].values()) == d["num_views"]
    assert d["num_views"] > d["ref_views"]  # quick mode still exercises the cyclic repetition
    expected = sum(d["reference_per_view_s"][v]["median"] * w for v, w in d["ref_view_weights"].items())
    assert d["reference_extrapolated_s"] == pytest.approx(expected)


def test_store_bench_quick(tmp_path) -> None:
    rep = bench_store.run(quick=True, repeat=1, workdir=tmp_path)
    _check_report(rep)
    d = rep["data"]
    syn = d["synthetic"]
    for key in ("mask_bytes_per_view", "group_bytes_per_view", "ratio_masks", "ratio_group", "raw_uint8_per_view"):
        assert syn[key] > 0
    assert syn["raw_uint8_per_view"] == syn["image_hw"][0] * syn["image_hw"][1]
    # the verdict figure: non-empty mask + embedding + the per-view share of small arrays and metadata
    parts = ("embedding_bytes_per_view", "small_array_bytes_per_view", "metadata_bytes_per_view")
    assert syn["verdict_bytes_per_view"] == pytest.approx(syn["mask_bytes_per_nonempty_view"] + sum(syn[k] for k in parts))
    assert syn["group_bytes_per_view"] == pytest.approx(syn["mask_bytes_per_view"] + sum(syn[k] for k in parts))
    assert syn["ratio_verdict"] == pytest.approx(syn["raw_uint8_per_view"] / syn["verdict_bytes_per_view"])
    size_claims = [t for t in rep["targets"] if "bytes per (query, view)" in t["claim"]]
    assert size_claims and all("mask + embedding + group share" in t["claim"] for t in size_claims)
    for t in size_claims:
        if not t["met"]:  # a missed size target is explained with the breakdown
            assert any("zarr.json metadata" in m for m in rep["miss_analysis"])
    tp = next(iter(d["throughput"].values()))
    assert {"store_write", "npy_write", "store_read", "npy_read", "read_ratio", "write_ratio"} <= set(tp)
    assert list(tmp_path.iterdir()) == []  # the benchmark cleans up after itself


def test_scale_fit_recovers_cost_model() -> None:
    """The scale benchmark reads a nested FLOP dict (TFLOP keys) and fits naive = n·V·Q, shared = e·V + s·V·Q."""
    from bench.bench_scale import expected_distinct_views, extract_flop_grid, fit_cost_model

    n, e, s = 10.0, 9.0, 0.5  # TFLOP
    rows = [{"views": v, "queries": q, "naive_tflop": n * v * q, "shared_tflop": e * v + s * v * q, "ratio": 0.0}
            for v in (4, 32) for q in (1, 10, 40)]
    grid = extract_flop_grid({"real": {"totals": rows, "components": {"clip": 1}}})
    assert len(grid) == 6 and grid[0]["naive"] == pytest.approx(n * 4 * 1 * 1e12)
    fit = fit_cost_model(grid)
    assert fit["naive_per_pair"] == pytest.approx(n * 1e12)
    assert fit["shared_per_view"] == pytest.approx(e * 1e12)
    assert fit["shared_per_pair"] == pytest.approx(s * 1e12)
    assert fit["max_rel_residual_shared"] < 1e-9
    assert expected_distinct_views(83, 4, 1) == pytest.approx(4.0)
    assert expected_distinct_views(83, 83, 1) == pytest.approx(83.0)


def test_measure_interleaved_alternates_and_counts() -> None:
    from bench.common import measure_interleaved

    calls: list[str] = []
    out = measure_interleaved({"a": lambda: calls.append("a"), "b": lambda: calls.append("b")}, repeat=4, warmup=1)
    assert calls == ["a", "b", "a", "b", "b", "a", "a", "b", "b", "a"]  # warm-up, then A B / B A alternating
    assert out["a"].repeat == out["b"].repeat == 4 and out["a"].warmup == 1


def test_timing_repeats_and_method_line_flag_short_runs() -> None:
    from bench.common import measure, timing_repeats
    from bench.run_all import method_line

    t5 = measure(lambda: None, repeat=5).as_dict()
    t2 = measure(lambda: None, repeat=2).as_dict()
    assert sorted(timing_repeats({"x": [t5, {"y": t2}], "z": 1})) == [2, 5]
    ok = {"name": "ok", "status": "ok", "data": {"t": t5}}
    short = {"name": "short", "status": "ok", "data": {"t": t2}}
    none = {"name": "proj", "status": "ok", "data": {}, "method": None}
    line = method_line([ok, none])
    assert line.startswith("timings are medians of ≥ 5") and "proj: no timings" in line
    assert "fewer than 5 repetitions in: short" in method_line([ok, short])


def test_git_commit_reports_dirty_tree(tmp_path, monkeypatch) -> None:
    import subprocess

    from bench import common

    def git(*args: str) -> None:
        subprocess.run(["git", "-c", "user.name=t", "-c", "user.email=t@t", *args], cwd=tmp_path, check=True,
                       capture_output=True)

    git("init", "-q")
    (tmp_path / "f.txt").write_text("1")
    git("add", "f.txt")
    git("commit", "-q", "-m", "x")
    monkeypatch.setattr(common, "REPO_ROOT", tmp_path)
    clean = common.git_commit()
    assert clean and "+dirty" not in clean and clean != "unknown"
    (tmp_path / "f.txt").write_text("2")
    assert common.git_commit() == f"{clean}+dirty (1 uncommitted file)"


def _fake_store_data() -> dict:
    return {
        "scannet": {"mask_bytes_per_view": 500.0, "embedding_bytes_per_view": 490.0, "group_fixed_bytes": 4800.0,
                    "group_bytes_per_view": 2200.0, "raw_uint8_per_view": 640 * 480},
        "scene_geometry": {"visible_fraction": 0.2, "per_point": 12.0, "per_visible_pair": 2.0,
                           "thumbnail_per_view": 40_000.0, "other": 4000.0},
    }


def test_scale_frame_pools_and_explicit_dependencies() -> None:
    """Both frame pools are rows; the caption-length grid is preferred; deps from the run are not re-run."""
    from bench import bench_scale

    n, e, s = 10.0, 9.0, 0.5
    fixed = [{"views": v, "queries": q, "naive_tflop": n * v * q, "shared_tflop": e * v + s * v * q, "ratio": 0.0}
             for v in (4, 32) for q in (1, 10, 40)]
    real = [dict(r, shared_tflop=r["shared_tflop"] * 1.1) for r in fixed]
    fixed_grid, real_grid = bench_scale.flop_grids({"real": {"totals": fixed, "realistic": {"totals": real}}})
    assert fixed_grid[0]["shared"] == pytest.approx(fixed[0]["shared_tflop"] * 1e12)
    assert real_grid[0]["shared"] == pytest.approx(real[0]["shared_tflop"] * 1e12)
    deps = {"stage1_flops": {"status": "ok", "data": {"real": {"totals": fixed, "realistic": {"totals": real}}}},
            "store": {"status": "ok", "data": _fake_store_data()}}
    rep = bench_scale.run(quick=True, deps=deps)
    assert not any("re-run" in note for note in rep["notes"])
    assert "ScanRefer caption-length" in rep["data"]["flop_grid"]
    gpu = rep["tables"][0]
    assert "frame pool" in gpu["columns"]
    pools = {row[1] for row in gpu["rows"]}
    assert any("all frames" in p for p in pools) and any("every 20th" in p for p in pools)
    assert bench_scale._dep_state({}, "store") == "not run in this run"
    assert bench_scale._dep_state({"store": {"status": "error"}}, "store") == "error in this run"


def test_stage2_build_logs(tmp_path) -> None:
    from bench.bench_stage2_pipeline import read_build_logs

    (tmp_path / "1.log").write_text("item 1.0\nitem 0.2\nitem 0.4\ncollate 0.5\ncollate 0.01\n")
    (tmp_path / "2.log").write_text("item 2.0\nitem 0.3\ncollate 0.03\n")
    out = read_build_logs(tmp_path, skip_items=1)
    assert out["processes"] == 2 and out["items_timed"] == 3
    assert out["median_item_s"] == pytest.approx(0.3)
    assert out["median_collate_s"] == pytest.approx(0.02)


def _cell(points: int, voxels: int, q: int, step: float, net: float) -> dict:
    timing = {"median": step, "min": step, "max": step, "times": [step]}
    return {"requested_points": points, "queries_per_item": q, "points": points, "voxels": voxels, "queries": q,
            "pairs": 10 * q, "item_build_s": 0.01, "step": timing,
            "network": {"median": net, "min": net, "max": net, "times": [net]}, "network_share": net / step,
            "store": {"requested_points": points, "scenes": 1, "seconds": 1.0}}


def test_stage2_scaling_growth_and_split() -> None:
    from bench.common import Timing
    from bench.stage2_scaling_report import scaling_section
    from bench.stage2_step_cost import growth_ratios, split_rows

    # q=1: 4x the points, step 1.0 -> 2.0 s: ratio 0.5; q=16: 4x the points, 1.0 -> 4.0 s: exactly linear (1.0)
    cells = [_cell(1000, 500, 1, 1.0, 0.8), _cell(4000, 800, 1, 2.0, 1.2),
             _cell(1000, 500, 16, 1.0, 0.6), _cell(4000, 800, 16, 4.0, 1.0)]
    ratios = growth_ratios(cells)
    assert ratios[1]["ratio"] == pytest.approx(0.5) and ratios[16]["ratio"] == pytest.approx(1.0)
    assert ratios[16]["voxel_growth"] == pytest.approx(1.6)

    def t(v: float) -> Timing:
        return Timing(v, v, v, [v])

    # step 1.0 = forward 0.5 (network 0.3) + backward 0.4 (network 0.35) + optimizer 0.1
    split = {"step": t(1.0), "network": t(0.65), "network_forward": t(0.3), "step_forward": t(0.5), "optimizer": t(0.1)}
    rows, share = split_rows(split)
    assert share == pytest.approx(0.65)
    assert [r[2] for r in rows] == ["30 %", "35 %", "20 %", "5 %", "10 %", "100 %"]

    cost = {"split_rows": rows, "split_share": 0.45, "split_cell": (4000, 16), "op_profile": "ops"}
    sec = scaling_section(cells, cost, (4000, 16), 1, 1.0, 0.5, "a model")
    growth, net = sec["targets"]
    assert growth["met"] and growth["measured"] == pytest.approx(1.0)  # exactly linear meets "at most linearly"
    assert "(16)" in growth["claim"]  # the worst queries-per-item column is named
    assert not net["met"] and "rest of the forward" in sec["miss"][0] and sec["profile"].endswith("ops")
    assert all(len(row) == len(tb["columns"]) for tb in sec["tables"] for row in tb["rows"])
