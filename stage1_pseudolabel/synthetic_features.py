"""Query-independent image features of the synthetic stand-in (``feature_model``, docs/stand_in.md).

``random_instance`` (the negative control, the original model): a random unit vector per (scene, instance),
so nothing transfers between scenes. ``structured``: what a frozen image encoder's features share across
scenes — per pixel ``normalise(w_cat·e(category) + w_col·e(colour) + w_part·e(part) + w_inst·u(scene, instance))``
where ``e(·)`` are columns of one random orthonormal basis seeded by the backend seed only (the same in every
scene; distinct names get orthogonal directions), ``u`` is a random unit vector of the instance, and *part* is
the surface orientation at the pixel (upward / downward / vertical), computed from the view's depth, intrinsics
and pose. Category and colour come from the scene's instance attributes (``View.instance_attributes``), never
from a query. Both models are then average-pooled by ``feature_stride`` and noised by the caller.
"""

from __future__ import annotations

from functools import lru_cache

import numpy as np

from mllm3d.stage1_pseudolabel.seeding import rng_for, unit_vector

FEATURE_MODELS = ("structured", "random_instance")
PARTS = ("up", "down", "side")
# Names with a basis direction of their own (the synthetic generator's vocabulary; shared/synthetic_vocab.py).
# Anything else (another generator's names) falls back to a seeded random unit vector.
VOCABULARY: tuple[str, ...] = (
    "background", "wall", "floor", "ceiling", "window",
    "chair", "sofa", "table", "desk", "bed", "lamp", "bookshelf", "cabinet", "plant", "tv", "stool",
    "nightstand", "trash can",
    "colour:red", "colour:blue", "colour:black", "colour:brown", "colour:white", "colour:green", "colour:gray",
    "colour:yellow", "colour:orange",
    *(f"part:{p}" for p in PARTS),
)
UP_COS = 0.7  # |cos(normal, up)| above this: a horizontal surface (an upward or downward face)


@lru_cache(maxsize=8)
def basis(dim: int, seed: int) -> np.ndarray:
    """A (dim, dim) random orthonormal basis (columns) seeded by ``seed`` alone: shared by every scene."""
    q, r = np.linalg.qr(rng_for(seed, "feature_basis", dim).standard_normal((dim, dim)))
    return q * np.sign(np.diag(r))[None, :]


def direction(dim: int, seed: int, name: str) -> np.ndarray:
    """The shared direction of a category / ``colour:<c>`` / ``part:<p>`` name."""
    if name in VOCABULARY and VOCABULARY.index(name) < dim:
        return basis(dim, seed)[:, VOCABULARY.index(name)]
    return unit_vector(dim, seed, "feature_name", name)


def surface_parts(depth: np.ndarray, intrinsic: np.ndarray, pose: np.ndarray, up_axis: int = 2) -> np.ndarray:
    """Per depth pixel 0 = upward face, 1 = downward face, 2 = vertical (or unknown) surface.

    The normal is the cross product of the back-projected point's image-space gradients, turned toward
    the camera and rotated to the world frame; no depth (0) counts as vertical."""
    d = np.asarray(depth, dtype=np.float64)
    h, w = d.shape
    k = np.asarray(intrinsic, dtype=np.float64)
    v, u = np.mgrid[0:h, 0:w].astype(np.float64)
    pts = np.stack([(u - k[0, 2]) / k[0, 0] * d, (v - k[1, 2]) / k[1, 1] * d, d], axis=-1)  # camera frame
    du = np.gradient(pts, axis=1)
    dv = np.gradient(pts, axis=0)
    n = np.cross(du, dv)
    n /= np.maximum(np.linalg.norm(n, axis=-1, keepdims=True), 1e-12)
    n *= np.where((n * pts).sum(-1, keepdims=True) > 0, -1.0, 1.0)  # face the camera
    up = (n @ np.asarray(pose, dtype=np.float64)[:3, :3].T)[..., up_axis]
    parts = np.full((h, w), 2, dtype=np.int8)
    parts[up > UP_COS] = 0
    parts[up < -UP_COS] = 1
    parts[d <= 0] = 2
    return parts


def structured_features(
    labels: np.ndarray,
    parts: np.ndarray,
    attributes: dict[int, tuple[str, str]],
    weights: tuple[float, float, float, float],
    dim: int,
    seed: int,
    scene_id: str,
) -> np.ndarray:
    """(H, W, dim) per-pixel features of the ``structured`` model (before pooling and noise).

    ``weights`` = (w_cat, w_col, w_part, w_inst); ``labels`` is the instance map (-1 = background) and
    ``parts`` the surface-part index per pixel (same shape)."""
    w_cat, w_col, w_part, w_inst = weights
    ids, inv = np.unique(labels, return_inverse=True)
    inv = inv.reshape(labels.shape)
    obj = np.zeros((len(ids), dim))
    for j, i in enumerate(ids.tolist()):
        category, colour = attributes.get(int(i), ("background" if i < 0 else "", ""))
        v = w_inst * unit_vector(dim, seed, scene_id, "feature", int(i))
        if category:
            v = v + w_cat * direction(dim, seed, category)
        if colour:
            v = v + w_col * direction(dim, seed, f"colour:{colour}")
        obj[j] = v
    part_dirs = np.stack([w_part * direction(dim, seed, f"part:{p}") for p in PARTS])
    per_pixel = obj[inv] + part_dirs[parts.astype(np.int64)]
    per_pixel /= np.maximum(np.linalg.norm(per_pixel, axis=-1, keepdims=True), 1e-12)
    return per_pixel.astype(np.float32)


def random_instance_features(labels: np.ndarray, dim: int, seed: int, scene_id: str) -> np.ndarray:
    """(H, W, dim) per-pixel features of the ``random_instance`` control: one random unit vector per instance."""
    ids, inv = np.unique(labels, return_inverse=True)
    table = np.stack([unit_vector(dim, seed, scene_id, "feature", int(i)) for i in ids])
    return table[inv.reshape(labels.shape)].astype(np.float32)
