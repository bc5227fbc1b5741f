"""Mesh ray casting (mllm3d.shared.raycast) against analytic depth of a box room made of six quads."""

from __future__ import annotations

import numpy as np
import pytest

pytest.importorskip("trimesh")
pytest.importorskip("embreex")

from mllm3d.shared.raycast import MeshRaycaster, pixel_rays  # noqa: E402
from mllm3d.shared.synthetic import look_pose  # noqa: E402

ROOM = np.array([6.0, 5.0, 3.0])


def box_room() -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Six quads (4 own vertices each, 2 triangles) of [0,6]x[0,5]x[0,3]; quad q = axis q//2, side q%2."""
    verts, faces, inst, cols = [], [], [], []
    for q in range(6):
        axis, side = divmod(q, 2)
        a, b = [i for i in range(3) if i != axis]
        quad = []
        for ua, ub in ((0, 0), (1, 0), (1, 1), (0, 1)):
            p = np.zeros(3)
            p[axis], p[a], p[b] = side * ROOM[axis], ua * ROOM[a], ub * ROOM[b]
            quad.append(p)
        n = len(verts)
        verts += quad
        faces += [[n, n + 1, n + 2], [n, n + 2, n + 3]]
        inst += [q] * 4
        cols += [[40 * q, 255 - 40 * q, 100]] * 4
    return np.array(verts), np.array(faces), np.array(inst), np.array(cols, dtype=np.uint8)


def analytic(origin: np.ndarray, dirs: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(ray parameter, quad index) of the first wall hit from inside the room, axis by axis."""
    ts = []
    for axis in range(3):
        d = dirs[:, axis]
        bound = np.where(d > 0, ROOM[axis], 0.0)
        with np.errstate(divide="ignore", invalid="ignore"):
            t = np.where(np.abs(d) > 1e-12, (bound - origin[axis]) / d, np.inf)
        ts.append(t)
    ts = np.stack(ts, axis=1)
    axis = np.argmin(ts, axis=1)
    side = (dirs[np.arange(len(dirs)), axis] > 0).astype(int)
    return ts.min(axis=1), 2 * axis + side


@pytest.mark.parametrize("yaw,pitch", [(0.0, 0.0), (0.7, -0.3), (2.5, 0.4)])
def test_box_room_depth_instances_colours_match_analytic(yaw: float, pitch: float) -> None:
    v, f, inst, cols = box_room()
    rc = MeshRaycaster(v, f, cols, inst)
    h, w = 48, 64
    K = np.array([[50.0, 0, 31.5], [0, 50.0, 23.5], [0, 0, 1]])
    pose = look_pose(np.array([2.0, 1.5, 1.4]), yaw, pitch)
    out = rc.render(K, pose, (h, w))
    cam = pixel_rays(K, (h, w))
    t, quad = analytic(pose[:3, 3], cam @ pose[:3, :3].T)  # cam z = 1 -> t is the camera depth
    assert out.depth.shape == (h, w) and np.all(out.depth > 0)
    np.testing.assert_allclose(out.depth.ravel(), t, atol=1e-3)
    # pixels whose ray passes within float error of a room edge may pick either quad
    ok = out.instance_map.ravel() == quad
    assert ok.mean() > 0.97
    np.testing.assert_array_equal(out.color.reshape(-1, 3)[ok], cols[quad[ok] * 4])


def test_depth_is_camera_z_not_ray_length() -> None:
    v, f, inst, cols = box_room()
    rc = MeshRaycaster(v, f)
    K = np.array([[100.0, 0, 4.5], [0, 100.0, 4.5], [0, 0, 1]])  # narrow: every ray hits the +x wall
    pose = look_pose(np.array([1.0, 2.5, 1.5]), 0.0, 0.0)  # facing the +x wall at distance 5
    out = rc.render(K, pose, (10, 10))
    np.testing.assert_allclose(out.depth, 5.0, atol=1e-4)  # a flat wall facing the camera: constant depth
    assert out.instance_map is None and out.color is None


def test_rays_that_miss_give_zero_depth_and_minus_one() -> None:
    v, f, _, _ = box_room()
    rc = MeshRaycaster(v, f, vertex_instances=np.zeros(len(v)))
    pose = look_pose(np.array([-3.0, 2.5, 1.5]), np.pi, 0.0)  # outside, looking away from the room
    out = rc.render(np.array([[10.0, 0, 4.5], [0, 10.0, 4.5], [0, 0, 1]]), pose, (10, 10))
    assert np.all(out.depth == 0) and np.all(out.face_ids == -1) and np.all(out.instance_map == -1)
