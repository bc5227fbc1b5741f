"""Small numpy operations on binary masks and label maps (no scipy in the stack)."""

from __future__ import annotations

import numpy as np


def _max_filter_1d(a: np.ndarray, r: int, axis: int) -> np.ndarray:
    """OR (for bool) of a window of radius ``r`` along ``axis``."""
    if r <= 0:
        return a.copy()
    n = a.shape[axis]
    pad = [(0, 0)] * a.ndim
    pad[axis] = (r, r)
    p = np.pad(a, pad, mode="constant", constant_values=False)
    out = np.zeros_like(a)
    for s in range(2 * r + 1):
        out |= np.take(p, np.arange(s, s + n), axis=axis)
    return out


def dilate(mask: np.ndarray, r: int) -> np.ndarray:
    """Binary dilation with a (2r+1)x(2r+1) square."""
    m = np.asarray(mask, dtype=bool)
    return _max_filter_1d(_max_filter_1d(m, r, 0), r, 1)


def erode(mask: np.ndarray, r: int) -> np.ndarray:
    """Binary erosion with a (2r+1)x(2r+1) square (pixels outside the image count as background)."""
    return ~dilate(~np.asarray(mask, dtype=bool), r)


def boundary_band(mask: np.ndarray, r: int) -> np.ndarray:
    """Pixels within ``r`` of the mask boundary (inside or outside)."""
    return dilate(mask, r) & ~erode(mask, r)


def resize_nearest(a: np.ndarray, size_hw: tuple[int, int]) -> np.ndarray:
    """Nearest-neighbour resize of a 2D mask or label map to (H, W); dtype kept."""
    a = np.asarray(a)
    h, w = int(size_hw[0]), int(size_hw[1])
    if a.shape == (h, w):
        return a.copy()
    # pixel-centre mapping; index arithmetic keeps any dtype exact
    rows = np.minimum(((np.arange(h) + 0.5) * a.shape[0] / h).astype(np.int64), a.shape[0] - 1)
    cols = np.minimum(((np.arange(w) + 0.5) * a.shape[1] / w).astype(np.int64), a.shape[1] - 1)
    return a[rows[:, None], cols[None, :]]


def average_pool(a: np.ndarray, stride: int) -> np.ndarray:
    """Mean over ``stride`` x ``stride`` cells of the last two axes (edge cells use what they cover)."""
    a = np.asarray(a, dtype=np.float32)
    h, w = a.shape[-2:]
    gh, gw = -(-h // stride), -(-w // stride)
    pad = [(0, 0)] * (a.ndim - 2) + [(0, gh * stride - h), (0, gw * stride - w)]
    ones = np.pad(np.ones((h, w), np.float32), pad[-2:])
    p = np.pad(a, pad)
    shape = a.shape[:-2] + (gh, stride, gw, stride)
    s = p.reshape(shape).sum(axis=(-3, -1))
    n = ones.reshape(gh, stride, gw, stride).sum(axis=(1, 3))
    return s / n


def color_to_depth_lookup(
    depth_hw: tuple[int, int],
    color_hw: tuple[int, int],
    depth_intrinsic: np.ndarray,
    color_intrinsic: np.ndarray,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """For every depth pixel (u, v): the nearest colour pixel at ``K_c · K_d⁻¹ · [u, v, 1]``.

    Assumes the colour and depth cameras share the pose (as ScanNet's exported frames do) and pixel
    centres at integer coordinates (the ScanNet intrinsics convention). Returns (rows, cols, inside),
    each (H, W); ``inside`` is False where the ray leaves the colour image.
    """
    h, w = int(depth_hw[0]), int(depth_hw[1])
    kd = np.asarray(depth_intrinsic, dtype=np.float64)[:3, :3]
    kc = np.asarray(color_intrinsic, dtype=np.float64)[:3, :3]
    m = kc @ np.linalg.inv(kd)
    v, u = np.mgrid[0:h, 0:w].astype(np.float64)
    z = m[2, 0] * u + m[2, 1] * v + m[2, 2]
    x = (m[0, 0] * u + m[0, 1] * v + m[0, 2]) / z
    y = (m[1, 0] * u + m[1, 1] * v + m[1, 2]) / z
    cols = np.floor(x + 0.5)
    rows = np.floor(y + 0.5)
    inside = (cols >= 0) & (cols < color_hw[1]) & (rows >= 0) & (rows < color_hw[0])
    rows = np.where(inside, rows, 0).astype(np.intp)
    cols = np.where(inside, cols, 0).astype(np.intp)
    return rows, cols, inside


def color_mask_to_depth(
    mask: np.ndarray,
    depth_hw: tuple[int, int],
    depth_intrinsic: np.ndarray | None = None,
    color_intrinsic: np.ndarray | None = None,
    lookup: tuple[np.ndarray, np.ndarray, np.ndarray] | None = None,
) -> np.ndarray:
    """A colour-resolution mask on the depth (projection) grid.

    With both intrinsics, each depth pixel takes the colour mask at ``K_c · K_d⁻¹ · [u, v, 1]``
    (nearest; outside the colour image -> False); ``lookup`` (from :func:`color_to_depth_lookup`) saves
    recomputing the pixel map for several masks of one view. Without ``color_intrinsic`` the scaled
    colour camera is assumed to equal the depth camera: a plain :func:`resize_nearest`.
    """
    m = np.asarray(mask, dtype=bool)
    hw = (int(depth_hw[0]), int(depth_hw[1]))
    if lookup is None:
        if color_intrinsic is None or depth_intrinsic is None:
            return resize_nearest(m, hw)
        kd = np.asarray(depth_intrinsic, dtype=np.float64)[:3, :3]
        kc = np.asarray(color_intrinsic, dtype=np.float64)[:3, :3]
        if m.shape == hw and np.array_equal(kd, kc):
            return m.copy()  # same camera, same grid
        lookup = color_to_depth_lookup(hw, m.shape, kd, kc)
    rows, cols, inside = lookup
    return m[rows, cols] & inside


def color_features_to_depth(
    fmap: np.ndarray,
    depth_hw: tuple[int, int],
    color_hw: tuple[int, int],
    depth_intrinsic: np.ndarray,
    color_intrinsic: np.ndarray,
) -> np.ndarray:
    """A (C,h,w) feature map spanning the colour image -> a (C,h,w) map spanning the depth image.

    Each output cell centre, in depth pixels, is mapped to the colour image with the masks' pixel map
    ``K_c · K_d⁻¹ · [u, v, 1]`` (:func:`color_to_depth_lookup`) and the colour feature grid is sampled
    there bilinearly (cells outside the colour image get 0). Stage 2 then samples the stored map with
    the depth grid's own proportional scale, so features and masks of a (point, view) pair come from
    the same colour pixel even where the colour camera is not a scaled copy of the depth camera.
    """
    f = np.asarray(fmap, dtype=np.float32)
    c, h, w = f.shape
    big_h, big_w = int(depth_hw[0]), int(depth_hw[1])
    ch, cw = int(color_hw[0]), int(color_hw[1])
    kd = np.asarray(depth_intrinsic, dtype=np.float64)[:3, :3]
    kc = np.asarray(color_intrinsic, dtype=np.float64)[:3, :3]
    m = kc @ np.linalg.inv(kd)
    v, u = np.meshgrid((np.arange(h) + 0.5) * big_h / h - 0.5, (np.arange(w) + 0.5) * big_w / w - 0.5,
                       indexing="ij")
    z = m[2, 0] * u + m[2, 1] * v + m[2, 2]
    x = (m[0, 0] * u + m[0, 1] * v + m[0, 2]) / z  # colour pixel coordinates
    y = (m[1, 0] * u + m[1, 1] * v + m[1, 2]) / z
    inside = (x >= -0.5) & (x < cw - 0.5) & (y >= -0.5) & (y < ch - 0.5)
    fy = np.clip((y + 0.5) * h / ch - 0.5, 0.0, h - 1)  # colour feature cells
    fx = np.clip((x + 0.5) * w / cw - 0.5, 0.0, w - 1)
    y0, x0 = np.floor(fy).astype(np.intp), np.floor(fx).astype(np.intp)
    y1, x1 = np.minimum(y0 + 1, h - 1), np.minimum(x0 + 1, w - 1)
    wy, wx = (fy - y0).astype(np.float32), (fx - x0).astype(np.float32)
    top = f[:, y0, x0] * (1 - wx) + f[:, y0, x1] * wx
    bottom = f[:, y1, x0] * (1 - wx) + f[:, y1, x1] * wx
    return np.where(inside, top * (1 - wy) + bottom * wy, 0.0).astype(np.float32)
