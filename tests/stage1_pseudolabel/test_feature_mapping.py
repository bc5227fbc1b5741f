"""Image features follow the masks' colour->depth pixel map (K_c·K_d⁻¹), not a proportional rescale."""

from __future__ import annotations

import numpy as np

from mllm3d.shared.scene import View
from mllm3d.stage1_pseudolabel.mask_ops import color_features_to_depth
from mllm3d.stage1_pseudolabel.runner import map_features_to_depth
from mllm3d.stage2_train3d.datamodule import sample_image_features

DEPTH_HW, COLOR_HW = (48, 64), (96, 128)
KD = np.array([[50.0, 0, 31.5], [0, 50.0, 23.5], [0, 0, 1]])
KC = np.array([[120.0, 0, 70.0], [0, 120.0, 40.0], [0, 0, 1]])  # not a scaled copy of KD (scale 2.4, shifted)


def coordinate_features(h: int = 8, w: int = 8) -> np.ndarray:
    """Channel 0 = colour x, channel 1 = colour y of each cell centre (bilinear sampling is exact on it)."""
    x = (np.arange(w) + 0.5) * COLOR_HW[1] / w - 0.5
    y = (np.arange(h) + 0.5) * COLOR_HW[0] / h - 0.5
    return np.stack([np.broadcast_to(x, (h, w)), np.broadcast_to(y[:, None], (h, w))]).astype(np.float32)


def colour_pixel(u: np.ndarray, v: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Hand-derived: x_c = fx_c/fx_d·(u − cx_d) + cx_c, the same for y."""
    return 120 / 50 * (u - 31.5) + 70.0, 120 / 50 * (v - 23.5) + 40.0


def test_feature_cells_sample_the_colour_pixel_of_their_centre() -> None:
    out = color_features_to_depth(coordinate_features(), DEPTH_HW, COLOR_HW, KD, KC)
    j, i = np.meshgrid(np.arange(8), np.arange(8))
    x, y = colour_pixel((j + 0.5) * 64 / 8 - 0.5, (i + 0.5) * 48 / 8 - 0.5)
    interior = (x >= 7.5) & (x <= 119.5) & (y >= 5.5) & (y <= 89.5)  # between the outermost cell centres
    assert interior.sum() >= 12
    np.testing.assert_allclose(out[0][interior], x[interior], atol=1e-3)
    np.testing.assert_allclose(out[1][interior], y[interior], atol=1e-3)
    outside = (x < -0.5) | (x >= 127.5) | (y < -0.5) | (y >= 95.5)
    assert outside.any() and np.all(out[:, outside] == 0)


def test_stage2_sampling_of_mapped_features_lands_on_the_masks_colour_pixel() -> None:
    view = View(frame_id=0, color=np.zeros((*COLOR_HW, 3), np.uint8), depth=np.ones(DEPTH_HW, np.float32),
                intrinsic=KD, pose=np.eye(4), color_intrinsic=KC)
    mapped = map_features_to_depth(coordinate_features(16, 16), view, DEPTH_HW)
    rows, cols = np.array([20, 24, 30]), np.array([30, 34, 40])
    got = sample_image_features(mapped, rows, cols, DEPTH_HW)
    x, y = colour_pixel(cols.astype(float), rows.astype(float))
    np.testing.assert_allclose(got[:, 0], x, atol=0.05)
    np.testing.assert_allclose(got[:, 1], y, atol=0.05)
    # the proportional rescale that was used before lands elsewhere (here by up to 9.9 colour pixels)
    naive = sample_image_features(coordinate_features(16, 16), rows, cols, DEPTH_HW)
    assert np.abs(naive[:, 0] - x).max() > 9


def test_same_camera_leaves_features_untouched() -> None:
    f = coordinate_features()
    view = View(frame_id=0, color=np.zeros((*DEPTH_HW, 3), np.uint8), depth=np.ones(DEPTH_HW, np.float32),
                intrinsic=KD, pose=np.eye(4), color_intrinsic=KD.copy())
    assert map_features_to_depth(f, view, DEPTH_HW) is f
    view.color_intrinsic = None
    assert map_features_to_depth(f, view, DEPTH_HW) is f
