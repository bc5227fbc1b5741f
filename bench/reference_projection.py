"""Reference point->pixel mapping: a per-view Python loop over points (bench baseline only).

It implements exactly the contract of :func:`mllm3d.shared.geometry.project_view` (same rounding, bounds,
border and depth test) one point at a time with Python floats, the way a straightforward
implementation would. It exists only to measure what vectorisation buys and to cross-check the
vectorised code; nothing outside ``bench/`` (and its smoke test) may use it.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np

from mllm3d.shared.geometry import Correspondences, DepthTest


def project_view_loop(
    points: np.ndarray,
    intrinsic: np.ndarray,
    pose: np.ndarray,
    depth: np.ndarray,
    test: DepthTest = DepthTest(),
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Visible points of one view, (point_idx, rows, cols) int32, computed point by point."""
    k = np.asarray(intrinsic, dtype=np.float64)
    fx, fy, cx, cy = float(k[0, 0]), float(k[1, 1]), float(k[0, 2]), float(k[1, 2])
    p = np.asarray(pose, dtype=np.float64)
    r = p[:3, :3].tolist()
    tx, ty, tz = (float(v) for v in p[:3, 3])
    h, w = depth.shape
    b = test.border
    dmap = np.asarray(depth, dtype=np.float64).tolist()
    tol_abs, tol_rel, min_z = test.abs_tol, test.rel_tol, test.min_z
    out_i: list[int] = []
    out_r: list[int] = []
    out_c: list[int] = []
    for i, (x, y, z) in enumerate(np.asarray(points, dtype=np.float64).tolist()):
        dx, dy, dz = x - tx, y - ty, z - tz
        # camera coordinates = R^T (p - t): column j of R dotted with (p - t)
        zc = dx * r[0][2] + dy * r[1][2] + dz * r[2][2]
        if not zc > min_z:
            continue
        xc = dx * r[0][0] + dy * r[1][0] + dz * r[2][0]
        yc = dx * r[0][1] + dy * r[1][1] + dz * r[2][1]
        col = round(xc * fx / zc + cx)  # round-half-even, as np.rint
        row = round(yc * fy / zc + cy)
        if col < b or col >= w - b or row < b or row >= h - b:
            continue
        d = dmap[row][col]
        if d > 0 and math.isfinite(d) and abs(d - zc) <= tol_abs + tol_rel * d:
            out_i.append(i)
            out_r.append(row)
            out_c.append(col)
    return (
        np.asarray(out_i, dtype=np.int32),
        np.asarray(out_r, dtype=np.int32),
        np.asarray(out_c, dtype=np.int32),
    )


def compute_correspondences_loop(
    points: np.ndarray,
    intrinsics: Sequence[np.ndarray],
    poses: Sequence[np.ndarray],
    depths: Sequence[np.ndarray],
    test: DepthTest = DepthTest(),
) -> Correspondences:
    """Correspondences of N points in V views with the per-point loop (same CSR layout as the library)."""
    parts = [project_view_loop(points, k, p, d, test) for k, p, d in zip(intrinsics, poses, depths, strict=True)]
    offsets = np.zeros(len(parts) + 1, dtype=np.int64)
    offsets[1:] = np.cumsum([len(q[0]) for q in parts])
    if not parts:
        empty = np.zeros(0, dtype=np.int32)
        return Correspondences(empty, empty.copy(), empty.copy(), offsets)
    return Correspondences(
        np.concatenate([q[0] for q in parts]),
        np.concatenate([q[1] for q in parts]),
        np.concatenate([q[2] for q in parts]),
        offsets,
    )


def compare(a: Correspondences, b: Correspondences) -> dict[str, int | bool]:
    """How two correspondence sets differ: entries only in one of them, per (view, point, row, col)."""
    def keys(c: Correspondences) -> set[tuple[int, int, int, int]]:
        out: set[tuple[int, int, int, int]] = set()
        for v in range(c.num_views):
            pi, rr, cc = c.view(v)
            out.update(zip([v] * len(pi), pi.tolist(), rr.tolist(), cc.tolist(), strict=True))
        return out

    ka, kb = keys(a), keys(b)
    only_a, only_b = len(ka - kb), len(kb - ka)
    identical = (
        only_a == 0
        and only_b == 0
        and np.array_equal(a.offsets, b.offsets)
        and np.array_equal(a.point_idx, b.point_idx)
        and np.array_equal(a.rows, b.rows)
        and np.array_equal(a.cols, b.cols)
    )
    return {"entries_a": len(ka), "entries_b": len(kb), "only_a": only_a, "only_b": only_b, "identical": bool(identical)}


def project_view_matmul(
    points: np.ndarray,
    intrinsic: np.ndarray,
    pose: np.ndarray,
    depth: np.ndarray,
    test: DepthTest = DepthTest(),
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The released MLLM-For3D mapper for one view: one 4xN homogeneous matmul world->camera
    (``inv(pose) @ [p; 1]``), project, round, bounds test, then the depth test on the inside points."""
    k = np.asarray(intrinsic, dtype=np.float64)
    h, w = depth.shape
    b = test.border
    p = np.ones((4, points.shape[0]), dtype=np.float64)
    p[:3] = np.asarray(points, dtype=np.float64).T
    cam = np.linalg.inv(np.asarray(pose, dtype=np.float64)) @ p
    z = cam[2]
    with np.errstate(divide="ignore", invalid="ignore"):
        u = np.rint(cam[0] * k[0, 0] / z + k[0, 2])
        v = np.rint(cam[1] * k[1, 1] / z + k[1, 2])
    inside = (z > test.min_z) & (u >= b) & (u < w - b) & (v >= b) & (v < h - b)
    idx = np.flatnonzero(inside)
    rows, cols = v[idx].astype(np.int32), u[idx].astype(np.int32)
    d = depth[rows, cols].astype(np.float64)
    ok = (d > 0) & np.isfinite(d) & (np.abs(d - z[idx]) <= test.abs_tol + test.rel_tol * d)
    return idx[ok].astype(np.int32), rows[ok], cols[ok]


def compute_correspondences_matmul(
    points: np.ndarray,
    intrinsics: Sequence[np.ndarray],
    poses: Sequence[np.ndarray],
    depths: Sequence[np.ndarray],
    test: DepthTest = DepthTest(),
) -> Correspondences:
    """Correspondences with :func:`project_view_matmul` per view (the strongest simple baseline)."""
    pts = np.asarray(points, dtype=np.float64)
    return Correspondences.from_views(
        [project_view_matmul(pts, k, p, d, test) for k, p, d in zip(intrinsics, poses, depths, strict=True)]
    )
