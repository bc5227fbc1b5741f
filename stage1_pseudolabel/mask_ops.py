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
