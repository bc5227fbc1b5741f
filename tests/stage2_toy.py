"""A tiny hand-built pseudo-label store for the Stage 2 tests (no Stage 1 needed).

Each scene: a floor plus three boxes of three fixed types (type = color = [SEG] direction), four
posed 24x32 views around the room, correspondences from a point z-buffer, and one query per box whose
masks are the box's pixels in each view (a fifth view is a low-confidence hallucination).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from mllm3d.shared.geometry import compute_correspondences, world_to_camera
from mllm3d.shared.scene import Query
from mllm3d.shared.store import QueryRecord, open_store

H, W = 24, 32
K = np.array([[28.0, 0, 15.5], [0, 28.0, 11.5], [0, 0, 1]])
TYPE_COLORS = np.array([[220, 40, 40], [40, 200, 60], [50, 70, 230]], np.float64)
EMBED_DIM = 8


def type_directions() -> np.ndarray:
    """One fixed unit [SEG] direction per object type (shared by all scenes)."""
    d = np.random.default_rng(123).normal(size=(3, EMBED_DIM))
    return d / np.linalg.norm(d, axis=1, keepdims=True)


def look_at(eye: np.ndarray, target: np.ndarray) -> np.ndarray:
    """Camera-to-world pose (x right, y down, z forward) looking from eye to target, z up in the world."""
    z = target - eye
    z /= np.linalg.norm(z)
    x = np.cross(z, [0.0, 0.0, 1.0])
    x /= np.linalg.norm(x)
    y = np.cross(z, x)
    pose = np.eye(4)
    pose[:3, 0], pose[:3, 1], pose[:3, 2], pose[:3, 3] = x, y, z, eye
    return pose


def _box_points(rng: np.random.Generator, lo: np.ndarray, hi: np.ndarray, n: int) -> np.ndarray:
    pts = rng.uniform(lo, hi, size=(n, 3))
    face = rng.integers(0, 6, n)
    axis, side = face // 2, face % 2
    pts[np.arange(n), axis] = np.where(side == 1, hi[axis], lo[axis])
    return pts


def make_scene(seed: int, n_floor: int = 900, n_box: int = 300):
    """(points, colors, instance_ids, types, poses): instance i (1..3) is a box of type types[i-1]."""
    rng = np.random.default_rng(seed)
    floor = np.column_stack([rng.uniform(0, 2, n_floor), rng.uniform(0, 2, n_floor), np.zeros(n_floor)])
    pts, cols, ids = [floor], [np.full((n_floor, 3), 128.0)], [np.full(n_floor, -1)]
    types = rng.permutation(3)
    centers = [np.array([0.5, 0.5]), np.array([1.5, 0.6]), np.array([1.0, 1.5])]
    for i, (t, c) in enumerate(zip(types, centers, strict=True)):
        c = c + rng.uniform(-0.1, 0.1, 2)
        size = rng.uniform(0.25, 0.4, 3)
        lo = np.array([c[0] - size[0] / 2, c[1] - size[1] / 2, 0.0])
        hi = np.array([c[0] + size[0] / 2, c[1] + size[1] / 2, size[2]])
        pts.append(_box_points(rng, lo, hi, n_box))
        cols.append(TYPE_COLORS[t] + rng.normal(0, 10, (n_box, 3)))
        ids.append(np.full(n_box, i + 1))
    points = np.concatenate(pts).astype(np.float32)
    colors = np.clip(np.concatenate(cols), 0, 255).astype(np.uint8)
    instance_ids = np.concatenate(ids).astype(np.int32)
    center = np.array([1.0, 1.0, 0.1])
    poses = np.stack(
        [look_at(np.array([1.0 + 2.2 * np.cos(a), 1.0 + 2.2 * np.sin(a), 1.4]), center) for a in np.linspace(0, 2 * np.pi, 5)[:4] + 0.3]
        + [look_at(np.array([1.0, -1.2, 1.6]), center)]
    )
    return points, colors, instance_ids, types, poses


def zbuffer(points: np.ndarray, pose: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(depth (H,W) metres with 0 = empty, index of the nearest point (H,W) or -1)."""
    cam = world_to_camera(points, pose)
    z = cam[:, 2]
    ok = z > 1e-6
    col = np.rint(cam[:, 0] * K[0, 0] / np.where(ok, z, 1) + K[0, 2]).astype(np.int64)
    row = np.rint(cam[:, 1] * K[1, 1] / np.where(ok, z, 1) + K[1, 2]).astype(np.int64)
    ok &= (col >= 0) & (col < W) & (row >= 0) & (row < H)
    depth = np.full(H * W, np.inf)
    flat = row[ok] * W + col[ok]
    np.minimum.at(depth, flat, z[ok])
    nearest = np.full(H * W, -1)
    idx = np.flatnonzero(ok)
    hit = np.isclose(z[idx], depth[flat])
    nearest[flat[hit]] = idx[hit]
    depth[~np.isfinite(depth)] = 0.0
    return depth.reshape(H, W).astype(np.float32), nearest.reshape(H, W)


def build_toy_store(
    path: str | Path, n_scenes: int = 3, image_features: bool = False, seed: int = 0, **scene_kw: int
) -> Path:
    """Write ``n_scenes`` toy scenes with 3 queries each (one per box) into a new store at ``path``."""
    store = open_store(path, "a", segmenter={"name": "toy", "config": {}})
    dirs = type_directions()
    for s in range(n_scenes):
        scene_id = f"toy{s:02d}"
        points, colors, inst, types, poses = make_scene(seed * 100 + s, **scene_kw)
        zb = [zbuffer(points, p) for p in poses]
        depths = [d for d, _ in zb]
        corr = compute_correspondences(points, [K] * len(poses), list(poses), depths)
        store.write_scene(
            scene_id,
            points=points,
            colors=colors,
            frame_ids=np.arange(len(poses), dtype=np.int32) * 10,
            intrinsics=np.tile(K.astype(np.float32), (len(poses), 1, 1)),
            poses=poses,
            image_size=(H, W),
            correspondences=corr,
            instance_ids=inst,
            instance_labels={i + 1: f"box{int(t)}" for i, t in enumerate(types)},
            source="toy",
        )
        rng = np.random.default_rng(seed * 1000 + s)
        for i, t in enumerate(types):
            obj = i + 1
            view_index = np.array([0, 1, 2, 3, 4], np.int32)
            masks = np.zeros((5, H, W), bool)
            for v in range(4):
                near = zb[v][1]
                masks[v] = (near >= 0) & (inst[np.maximum(near, 0)] == obj)
            masks[4] = rng.random((H, W)) < 0.3  # hallucination
            emb = np.stack([dirs[t] + 0.05 * rng.normal(size=EMBED_DIM) for _ in range(4)] + [rng.normal(size=EMBED_DIM)])
            feats = None
            if image_features:
                # 4-channel 6x8 feature maps: channel = type of the object under the cell, 3 = floor/none
                feats = np.zeros((5, 4, 6, 8), np.float16)
                for v in range(5):
                    near = zb[min(v, 4)][1]
                    lab = np.where(near >= 0, inst[np.maximum(near, 0)], -1)
                    tmap = np.where(lab > 0, types[np.maximum(lab, 1) - 1], 3)
                    for c in range(4):
                        feats[v, c] = (tmap == c).reshape(6, 4, 8, 4).mean(axis=(1, 3))
            store.write_query(
                QueryRecord(
                    query=Query(scene_id, f"q{obj}", f"the box of type {int(t)}", target_ids=[obj], source="toy"),
                    view_index=view_index,
                    masks=masks,
                    seg_embeddings=emb.astype(np.float32),
                    confidence=np.array([0.9, 0.88, 0.92, 0.85, 0.2], np.float32),
                    attention=np.ones(5, np.float32),
                    has_seg=np.ones(5, bool),
                    image_features=feats,
                )
            )
    return Path(path)
