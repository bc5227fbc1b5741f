"""Cameras and exact ray-cast rendering of a synthetic box layout (depth, colour, instance map).

The ray-box intersection is vectorised over all pixels x all boxes (slab test); the camera depth of
a hit equals the ray parameter because rays are built as K^-1 [u, v, 1] (camera z = 1).
"""

from __future__ import annotations

import numpy as np

from mllm3d.shared.scene import View
from mllm3d.shared.synthetic_layout import Layout, SyntheticConfig, footprint_gap, uniform_in

# ----------------------------------------------------------------------------------------------
# Cameras and rendering
# ----------------------------------------------------------------------------------------------


def intrinsic_matrix(cfg: SyntheticConfig = SyntheticConfig()) -> np.ndarray:
    """3x3 pinhole intrinsics of the synthetic camera (principal point at the image centre)."""
    h, w = cfg.image_size
    f = cfg.focal_scale * w
    return np.array([[f, 0.0, (w - 1) / 2], [0.0, f, (h - 1) / 2], [0.0, 0.0, 1.0]])


def look_pose(position: np.ndarray, yaw: float, pitch: float) -> np.ndarray:
    """Camera-to-world pose (x right, y down, z forward) at ``position`` looking along yaw/pitch (radians)."""
    fwd = np.array([np.cos(pitch) * np.cos(yaw), np.cos(pitch) * np.sin(yaw), np.sin(pitch)])
    right = np.cross(fwd, [0.0, 0.0, 1.0])
    right /= np.linalg.norm(right)
    down = np.cross(fwd, right)
    pose = np.eye(4)
    pose[:3, 0], pose[:3, 1], pose[:3, 2], pose[:3, 3] = right, down, fwd, position
    return pose


def camera_poses(layout: Layout, seed: int, cfg: SyntheticConfig = SyntheticConfig()) -> list[np.ndarray]:
    """``cfg.num_views`` poses at free positions in the room, each aimed (with jitter) at an object."""
    rng = np.random.default_rng(np.random.SeedSequence([int(seed), 3]))
    room = layout.room
    targets = [o.center for o in layout.objects] or [room / 2]
    order = rng.permutation(len(targets))
    poses = []
    for v in range(cfg.num_views):
        target = targets[int(order[v % len(order)])]
        best = None
        for _ in range(100):
            p = np.array([rng.uniform(0.35, room[0] - 0.35), rng.uniform(0.35, room[1] - 0.35), 0.0])
            if any(footprint_gap(p, p, o.lo - 0.25, o.hi + 0.25) == 0.0 for o in layout.objects):
                continue
            dist = float(np.hypot(*(target[:2] - p[:2])))
            if dist >= 1.5 or best is None or dist > best[1]:
                best = (p, dist)
            if dist >= 1.5:
                break
        p = best[0] if best is not None else np.array([room[0] / 2, room[1] / 2, 0.0])
        p[2] = uniform_in(rng, cfg.camera_height)
        yaw = float(np.arctan2(target[1] - p[1], target[0] - p[0]) + rng.normal(0.0, 0.15))
        pitch = -np.deg2rad(uniform_in(rng, cfg.camera_pitch_deg))
        poses.append(look_pose(p, yaw, pitch))
    return poses


def raycast(
    origin: np.ndarray, dirs: np.ndarray, lo: np.ndarray, hi: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """First hit of rays ``origin + t*dirs`` (P rays) with B axis-aligned boxes, all at once (slab test).

    Returns (t (P,) float64, inf = no hit; box index (P,) int64, -1 = no hit; hit axis (P,) int64,
    the axis of the face that was hit). The origin must lie outside every box.
    """
    origin = np.asarray(origin, dtype=np.float64)
    d = np.where(np.abs(dirs) < 1e-12, 1e-12, dirs)
    inv = (1.0 / d).astype(np.float32)
    lo_rel = (lo - origin).astype(np.float32)
    hi_rel = (hi - origin).astype(np.float32)
    tnear = tfar = None
    for a in range(3):
        t1 = np.multiply.outer(inv[:, a], lo_rel[:, a])  # (P,B)
        t2 = np.multiply.outer(inv[:, a], hi_rel[:, a])
        tmin = np.minimum(t1, t2)
        np.maximum(t1, t2, out=t1)
        if tnear is None:
            tnear, tfar = tmin, t1
        else:
            np.maximum(tnear, tmin, out=tnear)
            np.minimum(tfar, t1, out=tfar)
    miss = (tfar < tnear) | (tnear <= 1e-6)
    tnear[miss] = np.inf
    box = np.argmin(tnear, axis=1)
    rows = np.arange(dirs.shape[0])
    hit = np.isfinite(tnear[rows, box])
    # exact (float64) entry distance and face axis of the chosen box only
    b = np.where(hit, box, 0)
    t1 = (lo[b] - origin) / d
    t2 = (hi[b] - origin) / d
    tmin = np.minimum(t1, t2)
    axis = np.argmax(tmin, axis=1)
    t = np.where(hit, tmin[rows, axis], np.inf)
    return t, np.where(hit, box, -1), axis


LIGHT_DIR = np.array([0.35, 0.25, 0.9]) / np.linalg.norm([0.35, 0.25, 0.9])


def render_view(
    layout: Layout, pose: np.ndarray, intrinsic: np.ndarray, image_size: tuple[int, int],
    rng: np.random.Generator | None = None, noise: float = 0.0,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Exact ray-cast render: (depth (H,W) float32 metres, color (H,W,3) uint8, instance_map (H,W) int32)."""
    h, w = image_size
    rr, cc = np.mgrid[0:h, 0:w]
    cam = np.stack(
        [(cc.ravel() - intrinsic[0, 2]) / intrinsic[0, 0], (rr.ravel() - intrinsic[1, 2]) / intrinsic[1, 1],
         np.ones(h * w)], axis=1,
    )
    dirs = cam @ pose[:3, :3].T  # z-component of cam is 1 -> t is the camera depth
    # cull boxes entirely behind the camera (all 8 corners at camera z <= 0)
    corners = np.stack([np.where(np.array(m)[None, :], layout.hi, layout.lo)
                        for m in np.ndindex(2, 2, 2)], axis=1)  # (B,8,3)
    zc = (corners - pose[:3, 3]) @ pose[:3, 2]
    keep = np.flatnonzero((zc > 0).any(axis=1))
    t, kbox, axis = raycast(pose[:3, 3], dirs, layout.lo[keep], layout.hi[keep])
    box = np.where(kbox >= 0, keep[np.maximum(kbox, 0)], -1)
    hit = box >= 0
    depth = np.where(hit, t, 0.0).astype(np.float32).reshape(h, w)
    inst = np.where(hit, layout.box_instance[np.maximum(box, 0)], -1).astype(np.int32).reshape(h, w)
    normal = np.zeros_like(dirs)
    rows = np.arange(dirs.shape[0])
    normal[rows, axis] = -np.sign(dirs[rows, axis])
    shade = 0.55 + 0.45 * np.abs(normal @ LIGHT_DIR)
    # gentle distance fall-off so depth edges stay visible in colour
    shade = shade * (1.0 - 0.04 * np.clip(np.where(hit, t, 0.0), 0.0, 8.0))
    base = layout.box_color[np.maximum(box, 0)] * shade[:, None]
    if rng is not None and noise > 0:
        base = base + rng.normal(0.0, noise, base.shape)
    color = np.where(hit[:, None], base, 0.0)
    color = np.clip(np.rint(color), 0, 255).astype(np.uint8).reshape(h, w, 3)
    return depth, color, inst


def render_views(layout: Layout, seed: int, cfg: SyntheticConfig = SyntheticConfig()) -> list[View]:
    """All views of a layout, frame ids 0, step, 2*step, ..."""
    k = intrinsic_matrix(cfg)
    rng = np.random.default_rng(np.random.SeedSequence([int(seed), 4]))
    views = []
    attributes = layout.instance_attributes()
    for v, pose in enumerate(camera_poses(layout, seed, cfg)):
        depth, color, inst = render_view(layout, pose, k, cfg.image_size, rng, cfg.image_noise)
        views.append(View(frame_id=v * cfg.frame_step, color=color, depth=depth, intrinsic=k.copy(), pose=pose,
                          instance_map=inst, instance_attributes=attributes))
    return views
