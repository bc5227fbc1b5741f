"""Point cloud -> sparse voxels (with the point->voxel inverse map), input features, augmentation.

Plain numpy. Conventions:
- voxel coordinates are ``floor(points / voxel_size)`` shifted so the minimum is 0, int32 (spconv);
- ``inverse[p]`` is the voxel of point p, so per-voxel outputs map back to points as ``out[inverse]``;
- voxel input features are the mean over the voxel's points (colors as RGB/127.5 - 1, docs/method.md).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass
class Voxels:
    """A voxelised point cloud."""

    coords: np.ndarray  # (M,3) int32, >= 0
    inverse: np.ndarray  # (N,) int64: voxel of each point
    counts: np.ndarray  # (M,) int64: points per voxel
    voxel_size: float

    @property
    def num_voxels(self) -> int:
        return int(self.coords.shape[0])


def voxelize(points: np.ndarray, voxel_size: float) -> Voxels:
    """Group points into cubic voxels of edge ``voxel_size`` (metres)."""
    if voxel_size <= 0:
        raise ValueError(f"voxel_size must be > 0, got {voxel_size}")
    pts = np.asarray(points, dtype=np.float64)
    if pts.ndim != 2 or pts.shape[1] != 3:
        raise ValueError(f"voxelize: points must be (N,3), got {pts.shape}")
    if pts.shape[0] == 0:
        return Voxels(np.zeros((0, 3), np.int32), np.zeros(0, np.int64), np.zeros(0, np.int64), voxel_size)
    if not np.all(np.isfinite(pts)):
        raise ValueError("voxelize: points contain inf/NaN")
    grid = np.floor(pts / voxel_size).astype(np.int64)
    grid -= grid.min(axis=0)
    ext = grid.max(axis=0) + 1
    if float(ext[0]) * float(ext[1]) * float(ext[2]) >= 2.0**62:  # keys would overflow int64: row-wise unique
        coords, inverse, counts = np.unique(grid, axis=0, return_inverse=True, return_counts=True)
        return Voxels(coords.astype(np.int32), inverse.reshape(-1).astype(np.int64), counts, float(voxel_size))
    # one int64 key per point, ordered like the rows (x, then y, then z): np.unique on it gives the same
    # voxels in the same order as np.unique(grid, axis=0), ~10x faster (no structured-row sort)
    key = (grid[:, 0] * ext[1] + grid[:, 1]) * ext[2] + grid[:, 2]
    keys, inverse, counts = np.unique(key, return_inverse=True, return_counts=True)
    yz = ext[1] * ext[2]
    coords = np.stack([keys // yz, (keys // ext[2]) % ext[1], keys % ext[2]], axis=1)
    return Voxels(coords.astype(np.int32), inverse.reshape(-1).astype(np.int64), counts, float(voxel_size))


def voxel_mean(values: np.ndarray, vox: Voxels) -> np.ndarray:
    """Mean of a per-point array (N,C) over each voxel -> (M,C) float32."""
    vals = np.asarray(values, dtype=np.float64)
    m = vox.num_voxels
    out = np.stack([np.bincount(vox.inverse, weights=vals[:, c], minlength=m) for c in range(vals.shape[1])], axis=1)
    return (out.reshape(m, vals.shape[1]) / np.maximum(vox.counts, 1)[:, None]).astype(np.float32)


def voxel_normals(points: np.ndarray, vox: Voxels) -> np.ndarray:
    """Per-voxel surface normal (M,3) float32: smallest principal axis of the voxel's points.

    Voxels with fewer than 3 points get a zero normal. The sign is canonical (largest |component|
    positive) since a point cloud without view rays has no inside/outside.
    """
    pts = np.asarray(points, dtype=np.float64)
    m = vox.num_voxels
    mean = voxel_mean(pts, vox).astype(np.float64)
    d = pts - mean[vox.inverse]
    cov = np.zeros((m, 3, 3), dtype=np.float64)
    np.add.at(cov, vox.inverse, d[:, :, None] * d[:, None, :])
    _, vecs = np.linalg.eigh(cov + 1e-12 * np.eye(3))
    normals = vecs[:, :, 0]
    big = np.argmax(np.abs(normals), axis=1)
    sign = np.sign(normals[np.arange(m), big])
    normals = normals * np.where(sign == 0, 1.0, sign)[:, None]
    normals[vox.counts < 3] = 0.0
    return normals.astype(np.float32)


def input_channels(use_normals: bool = False, use_height: bool = False) -> int:
    """Width of :func:`input_features`' output."""
    return 3 + (3 if use_normals else 0) + (1 if use_height else 0)


def input_features(
    points: np.ndarray,
    colors: np.ndarray,
    vox: Voxels,
    use_normals: bool = False,
    use_height: bool = False,
    up_axis: int = 2,
) -> np.ndarray:
    """Per-voxel network input (M, C) float32: mean RGB/127.5 - 1 (3) [+ normals (3)] [+ height (1)].

    Height is the voxel's mean coordinate along ``up_axis`` above the scene's lowest point, in metres
    minus 1 (about the floor for an indoor scan); it does not change under rotations about the up axis
    or horizontal flips, so it survives the augmentation.
    """
    feats = [voxel_mean(np.asarray(colors, dtype=np.float32) / 127.5 - 1.0, vox)]
    if use_normals:
        feats.append(voxel_normals(points, vox))
    if use_height:
        up = np.asarray(points, dtype=np.float64)[:, up_axis:up_axis + 1]
        feats.append(voxel_mean(up - (up.min() if up.size else 0.0) - 1.0, vox))
    return np.concatenate(feats, axis=1) if len(feats) > 1 else feats[0]


def devoxelize(values: np.ndarray, vox: Voxels) -> np.ndarray:
    """Per-voxel values (M,...) -> per-point values (N,...) through the inverse map."""
    return np.asarray(values)[vox.inverse]


def augment_points(
    points: np.ndarray,
    rng: np.random.Generator,
    rotate: bool = True,
    flip: bool = True,
    up_axis: int = 2,
) -> np.ndarray:
    """Random rotation about the up axis and random flips of the two horizontal axes.

    Only coordinates change; every point-indexed array (colors, correspondences, labels) stays valid
    because the point order is kept.
    """
    pts = np.asarray(points, dtype=np.float64).copy()
    h = [a for a in range(3) if a != up_axis]
    if rotate:
        theta = rng.uniform(0.0, 2.0 * np.pi)
        c, s = np.cos(theta), np.sin(theta)
        a, b = pts[:, h[0]].copy(), pts[:, h[1]].copy()
        pts[:, h[0]] = c * a - s * b
        pts[:, h[1]] = s * a + c * b
    if flip:
        for axis in h:
            if rng.random() < 0.5:
                pts[:, axis] = -pts[:, axis]
    return pts.astype(np.float32)
