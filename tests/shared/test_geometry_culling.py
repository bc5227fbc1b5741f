"""compute_correspondences' frustum culling (Morton blocks) gives exactly the per-view pairs of project_view."""

from __future__ import annotations

import numpy as np

from bench.reference_projection import compare, compute_correspondences_matmul
from mllm3d.shared.geometry import (
    BLOCK_SIZE,
    SMALL_CLOUD,
    Correspondences,
    DepthTest,
    ScenePoints,
    compute_correspondences,
    project_view,
)
from mllm3d.shared.synthetic import SyntheticConfig, generate_scene


def _per_view(points, ks, ps, ds, test) -> Correspondences:
    return Correspondences.from_views([project_view(points, k, p, d, test) for k, p, d in zip(ks, ps, ds, strict=True)])


def _scene_inputs(n: int, seed: int = 3):
    scene, _ = generate_scene("cull", seed, SyntheticConfig(num_views=6, image_size=(60, 80)))
    rng = np.random.default_rng(seed)
    pts = np.asarray(scene.points, dtype=np.float64)
    pts = pts[rng.integers(0, len(pts), n)] + rng.normal(0, 0.01, (n, 3))
    views = scene.views
    return pts, [v.intrinsic for v in views], [v.pose for v in views], [np.asarray(v.depth) for v in views]


def test_culled_pairs_identical_to_project_view_and_matmul_mapper() -> None:
    n = SMALL_CLOUD + 4 * BLOCK_SIZE  # many blocks: the Morton/culling path, not the single-block one
    pts, ks, ps, ds = _scene_inputs(n)
    for test in (DepthTest(), DepthTest(abs_tol=0.0, rel_tol=0.25, border=5)):
        got = compute_correspondences(pts, ks, ps, ds, test)
        want = _per_view(pts, ks, ps, ds, test)
        assert got.offsets[-1] > 0
        assert compare(got, want)["identical"]
        assert compare(got, compute_correspondences_matmul(pts, ks, ps, ds, test))["identical"]
        for v in range(got.num_views):  # ascending point index inside each view
            assert np.all(np.diff(got.view(v)[0]) > 0)


def test_culling_with_far_points_nan_points_and_points_behind() -> None:
    n = SMALL_CLOUD + 2 * BLOCK_SIZE
    pts, ks, ps, ds = _scene_inputs(n, seed=5)
    pts[:BLOCK_SIZE] += 100.0  # a cluster far outside every frustum (culled blocks)
    pts[BLOCK_SIZE + 7] = np.nan  # a NaN point is never visible and never breaks culling
    pts[BLOCK_SIZE + 9, 0] = np.inf
    got = compute_correspondences(pts, ks, ps, ds)
    want = _per_view(pts, ks, ps, ds, DepthTest())
    assert compare(got, want)["identical"]
    assert not np.isin(np.arange(BLOCK_SIZE), got.point_idx).any()


def test_views_that_see_nothing() -> None:
    pts, ks, ps, ds = _scene_inputs(6 * BLOCK_SIZE, seed=7)
    far = [np.full_like(d, 0.0) for d in ds]  # no valid depth anywhere
    got = compute_correspondences(pts, ks, ps, far)
    assert got.offsets.tolist() == [0] * (len(ds) + 1)


def test_small_cloud_single_block_path() -> None:
    pts, ks, ps, ds = _scene_inputs(SMALL_CLOUD // 2, seed=9)
    got = compute_correspondences(pts, ks, ps, ds)
    assert got.offsets[-1] > 0
    assert compare(got, _per_view(pts, ks, ps, ds, DepthTest()))["identical"]


def test_scene_points_projected_one_view_at_a_time_match_project_view() -> None:
    """ScenePoints (blocks built once, views one by one, as store_scene decodes them) gives project_view's pairs."""
    pts, ks, ps, ds = _scene_inputs(SMALL_CLOUD + 4 * BLOCK_SIZE, seed=5)
    scene = ScenePoints(pts)
    got = Correspondences.from_views([scene.project(k, p, d) for k, p, d in zip(ks, ps, ds, strict=True)])
    want = _per_view(pts, ks, ps, ds, DepthTest())
    assert got.offsets[-1] > 0 and compare(got, want)["identical"]
