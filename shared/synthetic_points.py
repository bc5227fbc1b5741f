"""Surface points of a synthetic room: area-proportional samples on the visible faces of its boxes.

The random stream is ``SeedSequence([seed, 2])``, independent of the layout's, so scenes stay byte-identical.
"""

from __future__ import annotations

import numpy as np

from mllm3d.shared.synthetic_layout import Layout, SyntheticConfig


def _inside_other_box(points: np.ndarray, owner: np.ndarray, lo: np.ndarray, hi: np.ndarray, eps: float) -> np.ndarray:
    """True for points inside (or on the surface of) a box other than the one they were sampled on."""
    inside = np.ones((points.shape[0], lo.shape[0]), dtype=bool)
    for a in range(3):
        p = points[:, a : a + 1]
        inside &= (p > lo[None, :, a] - eps) & (p < hi[None, :, a] + eps)
    inside[np.arange(points.shape[0]), owner] = False
    return inside.any(axis=1)


def sample_points(
    layout: Layout, seed: int, cfg: SyntheticConfig = SyntheticConfig()
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Area-proportional samples on the visible box faces: (points float32, colors uint8, instance ids int32).

    Faces hidden inside other boxes (an object's bottom on the floor, a mattress on its base, the wall
    behind a window) are removed, so every point lies on a surface a camera in the room can see.
    """
    rng = np.random.default_rng(np.random.SeedSequence([int(seed), 2]))
    ext = layout.hi - layout.lo  # (B,3)
    is_obj = layout.box_instance < len(layout.objects)
    face_axis = np.tile(np.repeat(np.arange(3), 2), (ext.shape[0], 1))  # (B,6)
    face_side = np.tile(np.array([0, 1, 0, 1, 0, 1]), (ext.shape[0], 1))
    area = np.stack([ext[:, 1] * ext[:, 2], ext[:, 0] * ext[:, 2], ext[:, 0] * ext[:, 1]], axis=1)
    area = np.repeat(area, 2, axis=1) * layout.box_faces
    weight = area * np.where(is_obj, cfg.object_density, 1.0)[:, None]
    counts = rng.multinomial(cfg.num_points, (weight / weight.sum()).ravel()).reshape(weight.shape)
    box_idx = np.repeat(np.arange(ext.shape[0] * 6) // 6, counts.ravel())
    axis = np.repeat(face_axis.ravel(), counts.ravel())
    side = np.repeat(face_side.ravel(), counts.ravel())
    u = rng.random((box_idx.shape[0], 3))
    pts = layout.lo[box_idx] + u * ext[box_idx]
    rows = np.arange(pts.shape[0])
    pts[rows, axis] = np.where(side == 1, layout.hi[box_idx, axis], layout.lo[box_idx, axis])
    keep = ~_inside_other_box(pts, box_idx, layout.lo, layout.hi, eps=1e-4)
    pts, box_idx = pts[keep], box_idx[keep]
    colors = layout.box_color[box_idx] + rng.normal(0.0, cfg.color_noise, (pts.shape[0], 3))
    return (
        pts.astype(np.float32),
        np.clip(np.rint(colors), 0, 255).astype(np.uint8),
        layout.box_instance[box_idx].astype(np.int32),
    )
