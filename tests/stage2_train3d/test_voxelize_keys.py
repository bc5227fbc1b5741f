"""voxelize's 1-D int64 keys give exactly np.unique(rows, axis=0)'s voxels, order, inverse and counts."""

from __future__ import annotations

import numpy as np
import pytest

from mllm3d.stage2_train3d.voxelize import voxel_mean, voxelize


def reference(points: np.ndarray, voxel_size: float):
    grid = np.floor(points / voxel_size).astype(np.int64)
    grid -= grid.min(axis=0)
    return np.unique(grid, axis=0, return_inverse=True, return_counts=True)


@pytest.mark.parametrize("voxel_size", [0.02, 0.05, 0.1, 0.37])
def test_same_voxels_as_row_unique(voxel_size: float) -> None:
    rng = np.random.default_rng(int(voxel_size * 100))
    pts = np.concatenate([rng.uniform([-3, -2, -0.5], [4, 3, 2.5], (5000, 3)),
                          np.repeat(rng.uniform(-1, 1, (50, 3)), 20, axis=0)])  # many points per voxel too
    vox = voxelize(pts, voxel_size)
    coords, inverse, counts = reference(pts, voxel_size)
    np.testing.assert_array_equal(vox.coords, coords.astype(np.int32))
    np.testing.assert_array_equal(vox.inverse, inverse.reshape(-1))
    np.testing.assert_array_equal(vox.counts, counts)


def test_huge_extent_falls_back_to_row_unique() -> None:
    pts = np.array([[0.0, 0.0, 0.0], [1e7, 1e7, 1e7], [1e7, 0.0, 5.0], [0.0, 0.0, 0.0]])
    vox = voxelize(pts, 1e-3)  # extents ~1e10 per axis: the 1-D key would overflow int64
    coords, inverse, counts = reference(pts, 1e-3)
    np.testing.assert_array_equal(vox.coords, coords.astype(np.int32))
    np.testing.assert_array_equal(vox.inverse, inverse.reshape(-1))
    np.testing.assert_array_equal(vox.counts, counts)


def test_voxel_mean_by_hand() -> None:
    pts = np.array([[0.01, 0.0, 0.0], [0.02, 0.0, 0.0], [0.5, 0.0, 0.0]])
    vox = voxelize(pts, 0.1)
    vals = np.array([[1.0, 10.0], [3.0, 20.0], [7.0, -1.0]])
    np.testing.assert_allclose(voxel_mean(vals, vox), [[2.0, 15.0], [7.0, -1.0]])
