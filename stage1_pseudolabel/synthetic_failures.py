"""Failure-mode helpers of the synthetic stand-in (pure functions of label maps and masks)."""

from __future__ import annotations

import numpy as np

from mllm3d.stage1_pseudolabel.mask_ops import boundary_band, dilate, erode


def object_stats(labels: np.ndarray) -> dict[int, tuple[int, np.ndarray]]:
    """Visible object id -> (pixel count, centroid (row, col)); background (-1) excluded."""
    ids, inv, counts = np.unique(labels, return_inverse=True, return_counts=True)
    inv = inv.reshape(labels.shape)
    rows, cols = np.indices(labels.shape)
    rsum = np.bincount(inv.ravel(), weights=rows.ravel(), minlength=len(ids))
    csum = np.bincount(inv.ravel(), weights=cols.ravel(), minlength=len(ids))
    return {
        int(i): (int(n), np.array([rs / n, cs / n]))
        for i, n, rs, cs in zip(ids, counts, rsum, csum, strict=True)
        if i >= 0
    }


def pick_distractor(
    stats: dict[int, tuple[int, np.ndarray]],
    targets: set[int],
    truth: np.ndarray,
    rng: np.random.Generator,
    min_pixels: int,
    similar: dict[int, int] | None = None,
    preference: float = 0.0,
) -> int | None:
    """Another visible object, preferring ones near the target (by area when the target is absent) and,
    with ``similar``, ones sharing the target's category / colour (weight x (1 + preference) per match)."""
    cands = sorted(i for i, (n, _) in stats.items() if i not in targets and n >= min_pixels)
    if not cands:
        return None
    areas = np.array([stats[i][0] for i in cands], dtype=np.float64)
    if truth.any():
        centre = np.argwhere(truth).mean(axis=0)
        diag = float(np.hypot(*truth.shape))
        d = np.array([np.linalg.norm(stats[i][1] - centre) for i in cands])
        w = np.exp(-d / (0.2 * diag)) * np.sqrt(areas)
    else:
        w = np.sqrt(areas)
    if similar is not None:
        w = w * np.array([1.0 + preference * similar.get(i, 0) for i in cands])
    return int(cands[int(rng.choice(len(cands), p=w / w.sum()))])


def boundary_noise(mask: np.ndarray, rng: np.random.Generator, width: int) -> tuple[np.ndarray, str]:
    """Erode, dilate, or flip pixels near the boundary (the choice and width are random)."""
    kind = ("erode", "dilate", "flip")[int(rng.integers(3))]
    r = int(rng.integers(1, width + 1))
    if kind == "erode":
        eroded = erode(mask, r)
        return (eroded if eroded.any() else mask.copy()), kind
    if kind == "dilate":
        return dilate(mask, r), kind
    band = boundary_band(mask, r)
    flip = band & (rng.random(mask.shape) < 0.5)
    return mask ^ flip, kind


def drop_chunk(mask: np.ndarray, rng: np.random.Generator, fraction: tuple[float, float]) -> np.ndarray:
    """Remove the part of the mask beyond a random straight cut (a share ``fraction`` of its pixels)."""
    rr, cc = np.nonzero(mask)
    theta = rng.uniform(0.0, 2.0 * np.pi)
    f = rng.uniform(*fraction)
    proj = rr * np.sin(theta) + cc * np.cos(theta)
    cut = np.quantile(proj, 1.0 - f)
    drop = proj > cut
    out = mask.copy()
    out[rr[drop], cc[drop]] = False
    return out
