"""Pinhole geometry: point->pixel correspondences with an occlusion test, and depth back-projection.

All functions are vectorised over points (the only Python loop is over views). The rigid transforms are
written out per coordinate instead of an (N,3)x(3,3) ``@``, which would go through multithreaded BLAS
(see :func:`_rigid`).
Pixel convention: pixel (row, col) has its centre at (u, v) = (col, row), so a point projects to
``col = round(fx * x / z + cx)``, ``row = round(fy * y / z + cy)`` and back-projecting pixel
(row, col) with depth d gives ``x = (col - cx) * d / fx``: a back-projected depth map projects
onto exactly the pixels it came from.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from mllm3d.shared.errors import BadInputError


@dataclass(frozen=True)
class DepthTest:
    """Visibility test: a point at camera depth z is visible at a pixel of depth D if
    ``z > min_z``, ``D > 0`` and ``|D - z| <= abs_tol + rel_tol * D``.

    MLLM-For3D uses abs_tol=0.05 m; OpenScene uses rel_tol=0.25 (with abs_tol=0) and border=10.
    """

    abs_tol: float = 0.05
    rel_tol: float = 0.0
    border: int = 0  # pixels cut at each image border
    min_z: float = 1e-6


@dataclass
class Correspondences:
    """Point->pixel correspondences of one scene in V views, in CSR layout.

    View ``v`` owns entries ``offsets[v]:offsets[v+1]`` of ``point_idx``, ``rows`` and ``cols``.
    """

    point_idx: np.ndarray  # (M,) int32
    rows: np.ndarray  # (M,) int32
    cols: np.ndarray  # (M,) int32
    offsets: np.ndarray  # (V+1,) int64

    @property
    def num_views(self) -> int:
        return int(self.offsets.shape[0] - 1)

    def view(self, v: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(point_idx, rows, cols) of view ``v``."""
        s, e = int(self.offsets[v]), int(self.offsets[v + 1])
        return self.point_idx[s:e], self.rows[s:e], self.cols[s:e]

    @classmethod
    def from_views(cls, parts: Sequence[tuple[np.ndarray, np.ndarray, np.ndarray]]) -> Correspondences:
        """The CSR table of per-view ``(point_idx, rows, cols)`` triples, in that view order (int32 arrays)."""
        offsets = np.zeros(len(parts) + 1, dtype=np.int64)
        offsets[1:] = np.cumsum([len(p[0]) for p in parts])
        if not parts:
            empty = np.zeros(0, dtype=np.int32)
            return cls(empty, empty.copy(), empty.copy(), offsets)
        return cls(*(np.concatenate([p[j] for p in parts]).astype(np.int32, copy=False) for j in range(3)), offsets)

    def subset(self, view_indices: Sequence[int]) -> Correspondences:
        """Correspondences of the given views only (in that order)."""
        return Correspondences.from_views([self.view(int(v)) for v in view_indices])


def check_intrinsic(intrinsic: np.ndarray, what: str = "intrinsic") -> np.ndarray:
    """Return ``intrinsic`` as a float64 3x3 matrix (accepts 3x3 or ScanNet's 4x4); raise if invalid."""
    k = np.asarray(intrinsic, dtype=np.float64)
    if k.shape == (4, 4):
        k = k[:3, :3]
    if k.shape != (3, 3):
        raise BadInputError(f"{what}: expected a 3x3 or 4x4 matrix, got shape {k.shape}")
    if not np.all(np.isfinite(k)) or k[0, 0] <= 0 or k[1, 1] <= 0:
        raise BadInputError(
            f"{what}: focal lengths must be finite and positive, got fx={k[0, 0]:g}, fy={k[1, 1]:g} "
            f"(matrix rows {k.tolist()})"
        )
    return k


def pose_problem(pose: np.ndarray, tol: float = 1e-3) -> str | None:
    """Why ``pose`` is not a valid 4x4 rigid camera-to-world matrix, or None if it is."""
    p = np.asarray(pose, dtype=np.float64)
    if p.shape != (4, 4):
        return f"expected a 4x4 matrix, got shape {p.shape}"
    if not np.all(np.isfinite(p)):
        return "contains inf/NaN"
    if not np.allclose(p[3], [0, 0, 0, 1], atol=tol):
        return f"last row is {p[3].tolist()}, expected [0, 0, 0, 1]"
    r = p[:3, :3]
    if not np.allclose(r.T @ r, np.eye(3), atol=tol) or abs(np.linalg.det(r) - 1.0) > tol:
        return "rotation part is not orthonormal with determinant 1 (non-rigid pose)"
    return None


def scale_intrinsic(intrinsic: np.ndarray, from_hw: tuple[int, int], to_hw: tuple[int, int]) -> np.ndarray:
    """Rescale a 3x3 intrinsic matrix from an image of size ``from_hw`` to one of size ``to_hw``."""
    k = np.array(intrinsic, dtype=np.float64)
    sy = to_hw[0] / from_hw[0]
    sx = to_hw[1] / from_hw[1]
    k[0, 0] *= sx
    k[0, 2] = (k[0, 2] + 0.5) * sx - 0.5
    k[1, 1] *= sy
    k[1, 2] = (k[1, 2] + 0.5) * sy - 0.5
    return k


def _columns(points: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The x, y, z columns of (N,3) points as contiguous float64 arrays."""
    pts = np.asarray(points, dtype=np.float64)
    if pts.ndim != 2 or pts.shape[1] != 3:
        raise BadInputError(f"points: expected an (N, 3) array, got shape {pts.shape}")
    return tuple(np.ascontiguousarray(pts[:, j]) for j in range(3))  # type: ignore[return-value]


def _rigid(cols: tuple[np.ndarray, np.ndarray, np.ndarray], r: np.ndarray, t: np.ndarray) -> list[np.ndarray]:
    """``r @ p + t`` for points given as three columns, written out per output coordinate.

    An (N,3)x(3,3) product through ``@`` goes to multithreaded BLAS (OpenBLAS), whose threads spin and
    wait on each other for such a thin product: on a loaded 2-core machine that made 20 views take
    1.0-1.26 s instead of 0.26 s with one BLAS thread. Nine fused multiply-adds per point in numpy
    element-wise loops are never multithreaded and are as fast as single-threaded BLAS here.
    """
    x, y, z = cols
    return [r[i, 0] * x + r[i, 1] * y + r[i, 2] * z + t[i] for i in range(3)]


def _world_to_camera_cols(
    cols: tuple[np.ndarray, np.ndarray, np.ndarray], pose: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Camera-coordinate columns (x, y, z) of world points given as columns (camera-to-world pose)."""
    pose = np.asarray(pose, dtype=np.float64)
    r = pose[:3, :3]
    t = pose[:3, 3]
    # camera = R^T (p - t): output coordinate j is column j of R dotted with (p - t)
    x, y, z = cols
    dx, dy, dz = x - t[0], y - t[1], z - t[2]
    return tuple(r[0, j] * dx + r[1, j] * dy + r[2, j] * dz for j in range(3))  # type: ignore[return-value]


def world_to_camera(points: np.ndarray, pose: np.ndarray) -> np.ndarray:
    """Points (N,3) in world coordinates -> camera coordinates, given a camera-to-world pose.

    Computed per coordinate without BLAS (see :func:`_rigid`); equal to ``(points - t) @ R`` up to
    floating-point rounding.
    """
    return np.stack(_world_to_camera_cols(_columns(points), pose), axis=1)


def project_view(
    points: np.ndarray,
    intrinsic: np.ndarray,
    pose: np.ndarray,
    depth: np.ndarray,
    test: DepthTest = DepthTest(),
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Visible points of one view: (point_idx, rows, cols), all int32.

    A point is visible if it lies in front of the camera, projects inside the image (minus the
    border), the depth there is valid and agrees with the point's depth within the tolerance.
    """
    return _project_view_cols(_columns(points), intrinsic, pose, depth, test)


def _project_view_cols(
    point_cols: tuple[np.ndarray, np.ndarray, np.ndarray],
    intrinsic: np.ndarray,
    pose: np.ndarray,
    depth: np.ndarray,
    test: DepthTest,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """:func:`project_view` on points given as contiguous x, y, z columns (split once per scene)."""
    h, w = depth.shape
    k = check_intrinsic(intrinsic)
    x, y, z = _world_to_camera_cols(point_cols, pose)
    front = z > test.min_z
    idx = np.flatnonzero(front)
    zf = z[idx]
    cols = np.rint(x[idx] * k[0, 0] / zf + k[0, 2])
    rows = np.rint(y[idx] * k[1, 1] / zf + k[1, 2])
    b = test.border
    inside = (cols >= b) & (cols < w - b) & (rows >= b) & (rows < h - b)
    idx, zf = idx[inside], zf[inside]
    rows = rows[inside].astype(np.int32)
    cols = cols[inside].astype(np.int32)
    d = depth[rows, cols].astype(np.float64)
    ok = (d > 0) & np.isfinite(d) & (np.abs(d - zf) <= test.abs_tol + test.rel_tol * d)
    return idx[ok].astype(np.int32), rows[ok], cols[ok]


BLOCK_SIZE = 256  # points per spatial block of the frustum culling in compute_correspondences
_CULL_MARGIN_PX = 1.0  # a block is culled only if it lies this far (pixels) outside the image
SMALL_CLOUD = 8 * BLOCK_SIZE  # fewer points: one block in the given order (sorting would not pay)


@dataclass
class _Blocks:
    """A scene's points in Morton (Z-curve) order, cut into blocks of ``BLOCK_SIZE`` with bounding boxes."""

    order: np.ndarray  # (N,) int64: sorted position -> original point index
    cols: tuple[np.ndarray, np.ndarray, np.ndarray]  # x, y, z columns in sorted order (float64)
    starts: np.ndarray  # (B+1,) int64 block boundaries in sorted order
    corners: np.ndarray  # (B, 8, 3) float64 corners of each block's bounding box


def _spread_bits(v: np.ndarray) -> np.ndarray:
    """Insert two zero bits between the low 10 bits of ``v`` (for a 3-D Morton code)."""
    v = v.astype(np.int64) & 0x3FF
    v = (v | (v << 16)) & 0x030000FF
    v = (v | (v << 8)) & 0x0300F00F
    v = (v | (v << 4)) & 0x030C30C3
    return (v | (v << 2)) & 0x09249249


def _blocks(cols: tuple[np.ndarray, np.ndarray, np.ndarray]) -> _Blocks:
    """Spatial blocks of the points (one block, in the given order, for small clouds)."""
    n = cols[0].shape[0]
    if n < SMALL_CLOUD:
        order = np.arange(n, dtype=np.int64)
        starts = np.array([0, n], dtype=np.int64)
        sorted_cols = cols
    else:
        finite = np.isfinite(cols[0]) & np.isfinite(cols[1]) & np.isfinite(cols[2])
        q = []
        for c in cols:  # 10-bit grid coordinate per axis (non-finite points anywhere: never culled)
            cf = c[finite]
            lo, hi = (float(cf.min()), float(cf.max())) if cf.size else (0.0, 1.0)
            with np.errstate(invalid="ignore"):
                g = np.nan_to_num((c - lo) * (1023.0 / max(hi - lo, 1e-9)), nan=0.0, posinf=1023.0, neginf=0.0)
            q.append(np.clip(g, 0, 1023).astype(np.int64))
        code = (_spread_bits(q[0]) << 2) | (_spread_bits(q[1]) << 1) | _spread_bits(q[2])
        order = np.argsort(code).astype(np.int64)
        sorted_cols = tuple(np.ascontiguousarray(c[order]) for c in cols)  # type: ignore[assignment]
        starts = np.append(np.arange(0, n, BLOCK_SIZE, dtype=np.int64), n)
    if n == 0:
        return _Blocks(order, sorted_cols, np.array([0], dtype=np.int64), np.zeros((0, 8, 3)))
    # per-block min/max; NaN/inf coordinates propagate into the box so that block is never culled
    mins = [np.minimum.reduceat(c, starts[:-1]) for c in sorted_cols]
    maxs = [np.maximum.reduceat(c, starts[:-1]) for c in sorted_cols]
    corners = np.stack(
        [np.stack([(maxs if (c >> j) & 1 else mins)[j] for j in range(3)], axis=1) for c in range(8)], axis=1
    )
    return _Blocks(order, sorted_cols, starts, corners)


def _visible_blocks(blocks: _Blocks, k: np.ndarray, pose: np.ndarray, hw: tuple[int, int], test: DepthTest,
                    far: float) -> np.ndarray:
    """Indices of the blocks whose bounding box may hold a visible point of this view (conservative).

    A point is accepted only if ``z > min_z``, ``z <= far`` and it projects inside the image; each side of
    the image is a half-space ``a*x + b*z >= 0`` in camera coordinates, so a box whose 8 corners all lie
    outside one of these half-spaces (by ``_CULL_MARGIN_PX``) holds no accepted point.
    """
    h, w = hw
    c = blocks.corners.reshape(-1, 3)
    x, y, z = (a.reshape(-1, 8) for a in _world_to_camera_cols((c[:, 0], c[:, 1], c[:, 2]), pose))
    fx, fy, cx, cy = k[0, 0], k[1, 1], k[0, 2], k[1, 2]
    lo = test.border - 0.5 - _CULL_MARGIN_PX  # col = rint(u) >= border  <=>  u >= border - 0.5
    hi_c = w - test.border - 0.5 + _CULL_MARGIN_PX
    hi_r = h - test.border - 0.5 + _CULL_MARGIN_PX
    out = (
        (z <= test.min_z).all(axis=1)
        | (z > far).all(axis=1)
        | (fx * x + (cx - lo) * z < 0).all(axis=1)  # u < lo
        | ((hi_c - cx) * z - fx * x < 0).all(axis=1)  # u > hi_c
        | (fy * y + (cy - lo) * z < 0).all(axis=1)
        | ((hi_r - cy) * z - fy * y < 0).all(axis=1)
    )
    return np.flatnonzero(~out)


def _far_limit(depth: np.ndarray, test: DepthTest) -> float:
    """No point deeper than this can pass the depth test of this depth map (inf if unknown)."""
    d = np.asarray(depth)
    dmax = float(d.max()) if d.size else 0.0
    if not np.isfinite(dmax):
        return np.inf
    return dmax + test.abs_tol + max(test.rel_tol, 0.0) * dmax + 1e-6 * (1.0 + dmax)


def _project_blocks(blocks: _Blocks, intrinsic: np.ndarray, pose: np.ndarray, depth: np.ndarray,
                    test: DepthTest) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """One view's visible points over the blocks that survive culling (same arithmetic as
    :func:`_project_view_cols`, so the same pairs); point indices ascending."""
    h, w = depth.shape
    k = check_intrinsic(intrinsic)
    pose = np.asarray(pose, dtype=np.float64)
    keep = _visible_blocks(blocks, k, pose, (h, w), test, _far_limit(depth, test))
    empty = np.zeros(0, dtype=np.int32)
    if keep.size == 0:
        return empty, empty.copy(), empty.copy()
    # merge consecutive kept blocks into runs of the sorted arrays
    brk = np.flatnonzero(np.diff(keep) != 1)
    run_s = blocks.starts[keep[np.r_[0, brk + 1]]]
    run_e = blocks.starts[keep[np.r_[brk, keep.size - 1]] + 1]
    if run_s.size == 1:
        sl = slice(int(run_s[0]), int(run_e[0]))
        cand = [c[sl] for c in blocks.cols]
        pos = blocks.order[sl]
    else:
        spans = [slice(s, e) for s, e in zip(run_s.tolist(), run_e.tolist(), strict=True)]
        cand = [np.concatenate([c[sl] for sl in spans]) for c in blocks.cols]
        pos = np.concatenate([blocks.order[sl] for sl in spans])
    x, y, z = _world_to_camera_cols((cand[0], cand[1], cand[2]), pose)
    with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
        cols = np.rint(x * k[0, 0] / z + k[0, 2])
        rows = np.rint(y * k[1, 1] / z + k[1, 2])
    b = test.border
    ok = (z > test.min_z) & (cols >= b) & (cols < w - b) & (rows >= b) & (rows < h - b)
    sel = np.flatnonzero(ok)
    flat = (rows * w + cols)[sel].astype(np.int64)  # exact: small integers in float64
    zf = z[sel]
    d = np.asarray(depth).ravel()[flat].astype(np.float64)
    with np.errstate(invalid="ignore"):
        good = (d > 0) & np.isfinite(d) & (np.abs(d - zf) <= test.abs_tol + test.rel_tol * d)
    orig, flat = pos[sel[good]], flat[good]
    if blocks.starts.shape[0] > 2:  # Morton order: back to ascending point index with one packed sort
        key = (orig << 32) | flat
        key.sort()
        orig, flat = key >> 32, key & 0xFFFFFFFF
    return orig.astype(np.int32), (flat // w).astype(np.int32), (flat % w).astype(np.int32)


def compute_correspondences(
    points: np.ndarray,
    intrinsics: Sequence[np.ndarray],
    poses: Sequence[np.ndarray],
    depths: Sequence[np.ndarray],
    test: DepthTest = DepthTest(),
) -> Correspondences:
    """Correspondences of N points in V views: exactly the pairs of :func:`project_view` per view.

    The points are sorted once along a Morton curve and cut into blocks of ``BLOCK_SIZE``; per view,
    blocks whose bounding box lies outside the view's frustum (behind the camera, beyond the deepest
    depth pixel, or off the image) are skipped, and the rest go through the same float64 arithmetic as
    :func:`project_view`, so the pairs are bit-identical while most of each scene is never transformed.
    """
    if not (len(intrinsics) == len(poses) == len(depths)):
        raise BadInputError(
            f"got {len(intrinsics)} intrinsics, {len(poses)} poses and {len(depths)} depth maps; they must match"
        )
    scene = ScenePoints(points)
    return Correspondences.from_views([scene.project(k, p, d, test) for k, p, d in zip(intrinsics, poses, depths,
                                                                                      strict=True)])


class ScenePoints:
    """A scene's points sorted into culling blocks once, then projected into views one at a time (views
    decoded lazily, one after the other); each view's pairs are those of :func:`compute_correspondences`."""

    def __init__(self, points: np.ndarray) -> None:
        self._blocks = _blocks(_columns(points))

    def project(self, intrinsic: np.ndarray, pose: np.ndarray, depth: np.ndarray,
                test: DepthTest = DepthTest()) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(point_idx, rows, cols) of the points visible in this view, as :func:`project_view`."""
        return _project_blocks(self._blocks, intrinsic, pose, depth, test)


def backproject_depth(
    depth: np.ndarray,
    intrinsic: np.ndarray,
    pose: np.ndarray,
    stride: int = 1,
    max_depth: float = np.inf,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """World points of every valid depth pixel (every ``stride``-th row/col).

    Returns (points (M,3) float64, rows (M,) int32, cols (M,) int32).
    """
    k = check_intrinsic(intrinsic)
    pose = np.asarray(pose, dtype=np.float64)
    rr, cc = np.mgrid[0 : depth.shape[0] : stride, 0 : depth.shape[1] : stride]
    d = depth[rr, cc].astype(np.float64)
    ok = (d > 0) & np.isfinite(d) & (d <= max_depth)
    rr, cc, d = rr[ok], cc[ok], d[ok]
    x = (cc - k[0, 2]) * d / k[0, 0]
    y = (rr - k[1, 2]) * d / k[1, 1]
    world = np.stack(_rigid((x, y, d), pose[:3, :3], pose[:3, 3]), axis=1)  # R cam + t, without BLAS
    return world, rr.astype(np.int32), cc.astype(np.int32)


def voxel_downsample(points: np.ndarray, voxel: float) -> np.ndarray:
    """Indices of one point per occupied voxel (the first one met), sorted."""
    keys = np.floor(np.asarray(points) / voxel).astype(np.int64)
    _, first = np.unique(keys, axis=0, return_index=True)
    return np.sort(first)
