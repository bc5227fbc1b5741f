"""Projection / back-projection / occlusion on hand-made scenes whose answer is checkable by eye."""

from __future__ import annotations

import numpy as np
import pytest

from mllm3d.shared.errors import BadInputError
from mllm3d.shared.geometry import (
    DepthTest,
    backproject_depth,
    check_intrinsic,
    compute_correspondences,
    pose_problem,
    project_view,
    scale_intrinsic,
    voxel_downsample,
)

K = np.array([[60.0, 0.0, 39.5], [0.0, 60.0, 29.5], [0.0, 0.0, 1.0]])


def _look_pose(yaw_deg: float = 0.0, t=(0.0, 0.0, 0.0)) -> np.ndarray:
    a = np.deg2rad(yaw_deg)
    r = np.array([[np.cos(a), 0, np.sin(a)], [0, 1, 0], [-np.sin(a), 0, np.cos(a)]])
    p = np.eye(4)
    p[:3, :3] = r
    p[:3, 3] = t
    return p


def _wavy_depth(h: int = 60, w: int = 80) -> np.ndarray:
    rr, cc = np.mgrid[0:h, 0:w]
    return (2.0 + 0.3 * np.sin(cc / 9.0) + 0.2 * np.cos(rr / 7.0)).astype(np.float32)


def test_backproject_then_project_returns_same_pixels() -> None:
    depth = _wavy_depth()
    pose = _look_pose(25.0, (0.4, -0.2, 1.0))
    pts, rows, cols = backproject_depth(depth, K, pose)
    idx, r2, c2 = project_view(pts, K, pose, depth)
    assert len(idx) == depth.size  # every back-projected point is visible where it came from
    assert np.array_equal(r2, rows[idx]) and np.array_equal(c2, cols[idx])


def test_point_behind_wall_is_not_visible() -> None:
    depth = np.full((60, 80), 2.0, dtype=np.float32)  # a wall 2 m in front of the camera
    pose = np.eye(4)
    on_wall = np.array([[0.0, 0.0, 2.0]])
    behind = np.array([[0.0, 0.0, 3.0]])
    in_front_far = np.array([[0.0, 0.0, 1.0]])  # in front of the wall: its pixel shows the wall
    pts = np.concatenate([on_wall, behind, in_front_far])
    idx, rows, cols = project_view(pts, K, pose, depth)
    assert idx.tolist() == [0]
    assert (rows[0], cols[0]) == (30, 40)  # round(29.5) = 30 with numpy's half-to-even, round(39.5) = 40


def test_points_behind_camera_and_outside_image_are_cut() -> None:
    depth = np.full((60, 80), 2.0, dtype=np.float32)
    pts = np.array([[0.0, 0.0, -2.0], [10.0, 0.0, 2.0], [0.0, 0.0, 2.0]])
    idx, _, _ = project_view(pts, K, np.eye(4), depth)
    assert idx.tolist() == [2]


def test_tolerances_absolute_relative_and_border() -> None:
    depth = np.full((60, 80), 4.0, dtype=np.float32)
    pt = np.array([[0.0, 0.0, 4.3]])
    assert len(project_view(pt, K, np.eye(4), depth, DepthTest(abs_tol=0.05))[0]) == 0
    assert len(project_view(pt, K, np.eye(4), depth, DepthTest(abs_tol=0.0, rel_tol=0.1))[0]) == 1
    corner = np.array([[(1 - 39.5) * 4.0 / 60.0, 0.0, 4.0]])  # projects to column 1
    assert len(project_view(corner, K, np.eye(4), depth, DepthTest(border=0))[0]) == 1
    assert len(project_view(corner, K, np.eye(4), depth, DepthTest(border=2))[0]) == 0


def test_invalid_depth_never_matches() -> None:
    depth = np.zeros((60, 80), dtype=np.float32)
    pt = np.array([[0.0, 0.0, 0.0001]])  # z ~ 0 and D = 0: |D - z| is tiny but D is invalid
    assert len(project_view(pt, K, np.eye(4), depth, DepthTest(abs_tol=1.0))[0]) == 0


def test_correspondences_csr_and_subset() -> None:
    depth = _wavy_depth()
    poses = [_look_pose(0.0), _look_pose(10.0), _look_pose(-10.0)]
    pts, _, _ = backproject_depth(depth, K, poses[0], stride=2)
    corr = compute_correspondences(pts, [K] * 3, poses, [depth] * 3)
    assert corr.num_views == 3 and corr.offsets[0] == 0 and corr.offsets[-1] == len(corr.point_idx)
    sub = corr.subset([2, 0])
    assert np.array_equal(sub.view(1)[0], corr.view(0)[0])
    assert np.array_equal(sub.view(0)[1], corr.view(2)[1])
    assert len(corr.view(0)[0]) == len(pts)


def test_scale_intrinsic_maps_pixel_centres() -> None:
    k2 = scale_intrinsic(K, (60, 80), (120, 160))
    # a point projecting to pixel centre (c, r) at low res projects to (2c+0.5, 2r+0.5) at high res
    x = np.array([0.3, -0.1, 2.0])
    u1 = K[0, 0] * x[0] / x[2] + K[0, 2]
    u2 = k2[0, 0] * x[0] / x[2] + k2[0, 2]
    assert u2 == pytest.approx(2 * u1 + 0.5)


def test_pose_and_intrinsic_validation() -> None:
    assert pose_problem(np.eye(4)) is None
    bad = np.eye(4)
    bad[0, 3] = np.inf
    assert "inf" in pose_problem(bad)
    sheared = np.eye(4)
    sheared[0, 1] = 0.5
    assert "non-rigid" in pose_problem(sheared)
    assert "4x4" in pose_problem(np.eye(3))
    with pytest.raises(BadInputError, match="focal"):
        check_intrinsic(np.zeros((3, 3)))
    assert check_intrinsic(np.eye(4)).shape == (3, 3)


def test_voxel_downsample_keeps_one_point_per_voxel() -> None:
    pts = np.array([[0.01, 0.01, 0.01], [0.02, 0.02, 0.02], [0.2, 0.0, 0.0]])
    assert voxel_downsample(pts, 0.05).tolist() == [0, 2]


def test_world_to_camera_matches_the_matrix_product() -> None:
    """The per-coordinate transform (no BLAS) equals (p - t) @ R, and backprojection equals cam @ R^T + t."""
    rng = np.random.default_rng(0)
    pose = _look_pose(37.0, (0.3, -1.2, 2.5))
    ang = np.deg2rad(20.0)
    tilt = np.array([[1, 0, 0], [0, np.cos(ang), -np.sin(ang)], [0, np.sin(ang), np.cos(ang)]])
    pose[:3, :3] = pose[:3, :3] @ tilt
    pts = rng.uniform(-5, 5, (1000, 3))
    from mllm3d.shared.geometry import world_to_camera

    ref = (pts - pose[:3, 3]) @ pose[:3, :3]
    assert np.allclose(world_to_camera(pts, pose), ref, rtol=0, atol=1e-12)
    assert np.allclose(world_to_camera(pts.astype(np.float32), pose), ref, atol=1e-5)
    assert world_to_camera(np.zeros((0, 3)), pose).shape == (0, 3)
    depth = _wavy_depth()
    world, rows, cols = backproject_depth(depth, K, pose)
    d = depth[rows, cols].astype(np.float64)
    cam = np.stack([(cols - K[0, 2]) * d / K[0, 0], (rows - K[1, 2]) * d / K[1, 1], d], axis=1)
    assert np.allclose(world, cam @ pose[:3, :3].T + pose[:3, 3], rtol=0, atol=1e-12)


def test_points_must_be_n_by_3() -> None:
    with pytest.raises(BadInputError, match=r"\(N, 3\)"):
        project_view(np.zeros((4, 2)), K, np.eye(4), np.ones((60, 80), dtype=np.float32))
