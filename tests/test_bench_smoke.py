"""Smoke test of the benchmark suite: tiny sizes, agreement of reference and vectorised code, report keys.

No timing assertions: timings on a shared CPU are noise at these sizes.
"""

from __future__ import annotations

import numpy as np
import pytest

from bench import bench_correspondences, bench_store
from bench.reference_projection import compare, compute_correspondences_loop
from shared.geometry import DepthTest, compute_correspondences
from shared.synthetic import SyntheticConfig, generate_scene

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


def test_store_bench_quick(tmp_path) -> None:
    rep = bench_store.run(quick=True, repeat=1, workdir=tmp_path)
    _check_report(rep)
    d = rep["data"]
    syn = d["synthetic"]
    for key in ("mask_bytes_per_view", "group_bytes_per_view", "ratio_masks", "ratio_group", "raw_uint8_per_view"):
        assert syn[key] > 0
    assert syn["raw_uint8_per_view"] == syn["image_hw"][0] * syn["image_hw"][1]
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
