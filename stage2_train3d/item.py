"""One training item's per-query arrays from decoded store records (plain numpy, no store access).

Per query: fusion (filter -> Token-for-Query -> fused labels), the visible (point, view) pairs of
the views with ω > 0 with their mask values and weights, image features sampled at positive pairs
(when the record has them) and the ground-truth mask (when the scene has instance ids and the query
target ids). :func:`stack_queries` concatenates one item's queries with item-local references.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from mllm3d.shared.errors import StoreError
from mllm3d.shared.metrics import gt_mask
from mllm3d.shared.store import QueryRecord, StoredScene
from mllm3d.stage2_train3d.fusion import (
    FusionConfig,
    fuse_pairs,
    normalize_rows,
    query_weights,
    visible_pairs,
)


def sample_image_features(
    fmap: np.ndarray, rows: np.ndarray, cols: np.ndarray, image_size: tuple[int, int]
) -> np.ndarray:
    """Bilinearly sample a (C,h,w) feature map at image pixels (rows, cols) of an (H,W) image -> (n,C).

    The feature grid is assumed to span the whole image: pixel centre (row+0.5, col+0.5) maps to
    ((row+0.5)·h/H − 0.5, (col+0.5)·w/W − 0.5) in feature cells — rows scale with h/H and columns
    with w/W (the official code swapped H and W, docs/method.md, bug 3).
    """
    return sample_view_features(np.asarray(fmap)[None], np.zeros(len(rows), np.int64), rows, cols, image_size)


def sample_view_features(
    fmaps: np.ndarray, views: np.ndarray, rows: np.ndarray, cols: np.ndarray, image_size: tuple[int, int]
) -> np.ndarray:
    """:func:`sample_image_features` of many views at once: sample ``fmaps[views[j]]`` (k,C,h,w) at pixel
    (rows[j], cols[j]) -> (n,C) float32, one gather per bilinear corner for all views."""
    _, c, h, w = fmaps.shape
    big_h, big_w = image_size
    y = np.clip((rows.astype(np.float64) + 0.5) * h / big_h - 0.5, 0.0, h - 1)
    x = np.clip((cols.astype(np.float64) + 0.5) * w / big_w - 0.5, 0.0, w - 1)
    y0 = np.floor(y).astype(np.int64)
    x0 = np.floor(x).astype(np.int64)
    y1 = np.minimum(y0 + 1, h - 1)
    x1 = np.minimum(x0 + 1, w - 1)
    wy = (y - y0)[:, None]
    wx = (x - x0)[:, None]
    # the maps' values as float32 (float16 and float32 maps as stored, any other type rounded to float32)
    fm = np.asarray(fmaps)
    if fm.dtype not in (np.float16, np.float32):
        fm = fm.astype(np.float32)
    # channel-last rows: each corner is one row gather of C contiguous values, widened to float64 (exact) and
    # weighted in place; the sum is evaluated in the order of the single-view formula
    cells = np.ascontiguousarray(np.moveaxis(fm, 1, -1)).reshape(-1, c)
    base = np.asarray(views, dtype=np.int64) * (h * w)

    def corner(yy: np.ndarray, xx: np.ndarray, weight: np.ndarray) -> np.ndarray:
        out = cells[base + yy * w + xx].astype(np.float64)
        out *= weight
        return out

    top = corner(y0, x0, 1 - wx)
    top += corner(y0, x1, wx)
    top *= 1 - wy
    bottom = corner(y1, x0, 1 - wx)
    bottom += corner(y1, x1, wx)
    bottom *= wy
    top += bottom
    return top.astype(np.float32)


def query_arrays(scene: StoredScene, rec: QueryRecord, fusion: FusionConfig, where: str) -> dict[str, Any]:
    """Fusion, (point, view) pairs, sampled image features and ground truth of one query.

    The masks are gathered once, at the visible pairs of the views with ω > 0
    (:func:`~mllm3d.stage2_train3d.fusion.visible_pairs`); fusion and the pair targets both use that gather.
    ``where`` names the query in errors (store path, scene, query).
    """
    if tuple(rec.masks.shape[1:]) != tuple(scene.image_size):
        raise StoreError(f"{where}: masks are {rec.masks.shape[1:]}, the scene's image size is {scene.image_size}")
    if rec.num_views and (rec.view_index.min() < 0 or rec.view_index.max() >= scene.num_views):
        raise StoreError(f"{where}: view_index {rec.view_index.tolist()} out of range 0..{scene.num_views - 1}")
    q, weights, keep, _ = query_weights(rec, fusion)
    n = scene.num_points
    pairs = visible_pairs(scene.correspondences, rec.masks, weights, rec.view_index)
    prob, seen = fuse_pairs(n, pairs, weights)
    # each pair weighs k_used · ω of its view (mean 1 over the used views)
    view_scale = np.asarray(weights, dtype=np.float64)[pairs.used] * len(pairs.used)
    c_img = 0 if rec.image_features is None else int(rec.image_features.shape[1])
    f2d_pair = np.flatnonzero(pairs.vote) if rec.image_features is not None else np.zeros(0, np.int64)
    if f2d_pair.size:
        f2d = sample_view_features(
            rec.image_features, pairs.view[f2d_pair], pairs.rows[f2d_pair], pairs.cols[f2d_pair], scene.image_size
        )
    else:
        f2d = np.zeros((0, c_img), np.float32)
    has_gt = scene.instance_ids is not None and rec.query.target_ids is not None
    gt = gt_mask(scene.instance_ids, rec.query.target_ids).astype(np.float32) if has_gt else np.zeros(n, np.float32)
    return {
        "q": q.astype(np.float32),
        "view_emb": normalize_rows(rec.seg_embeddings).astype(np.float32),
        "view_weight": weights.astype(np.float32),
        "view_keep": keep,
        "view_confidence": rec.confidence.astype(np.float32),
        "view_attention": rec.attention.astype(np.float32),
        "pair_point": pairs.point,
        "pair_view": pairs.view,
        "pair_target": pairs.vote.astype(np.float32),
        "pair_weight": np.repeat(view_scale.astype(np.float32), pairs.counts),
        "f2d": f2d,
        "f2d_pair": f2d_pair.astype(np.int64, copy=False),
        "fused_prob": prob,
        "seen": seen,
        "gt": gt,
        "has_gt": has_gt,
        "num_views": rec.num_views,
    }


def stack_queries(per_query: list[dict[str, Any]]) -> dict[str, Any]:
    """One item's queries concatenated; pair/view/f2d references shifted to item-local indices.

    Per-(query, point) arrays (fused_prob, seen, gt) are query-major: entry j*N + p.
    """
    wo = offsets([d["num_views"] for d in per_query])
    pr = offsets([d["pair_point"].shape[0] for d in per_query])
    dims = {d["f2d"].shape[1] for d in per_query if d["f2d"].shape[0]}
    c_img = max(dims) if dims else 0
    return {
        "num_queries": len(per_query),
        "q": np.stack([d["q"] for d in per_query]),
        "view_emb": np.concatenate([d["view_emb"] for d in per_query]),
        "view_weight": np.concatenate([d["view_weight"] for d in per_query]),
        "view_keep": np.concatenate([d["view_keep"] for d in per_query]),
        "view_confidence": np.concatenate([d["view_confidence"] for d in per_query]),
        "view_attention": np.concatenate([d["view_attention"] for d in per_query]),
        "view_query": np.repeat(np.arange(len(per_query)), [d["num_views"] for d in per_query]),
        "num_views": int(wo[-1]),
        "pair_point": np.concatenate([d["pair_point"] for d in per_query]),
        "pair_query": np.repeat(np.arange(len(per_query)), np.diff(pr)),
        "pair_view": np.concatenate([d["pair_view"] + wo[j] for j, d in enumerate(per_query)]),
        "pair_target": np.concatenate([d["pair_target"] for d in per_query]),
        "pair_weight": np.concatenate([d["pair_weight"] for d in per_query]),
        "f2d": np.concatenate([d["f2d"].reshape(-1, c_img) for d in per_query]).astype(np.float32)
        if c_img
        else np.zeros((0, 0), np.float32),
        "f2d_pair": np.concatenate([d["f2d_pair"] + pr[j] for j, d in enumerate(per_query)]),
        "fused_prob": np.concatenate([d["fused_prob"] for d in per_query]),
        "seen": np.concatenate([d["seen"] for d in per_query]),
        "gt": np.concatenate([d["gt"] for d in per_query]),
        "has_gt": np.array([d["has_gt"] for d in per_query], bool),
    }


def offsets(counts: Sequence[int]) -> np.ndarray:
    """(len(counts)+1,) int64 running offsets: 0, c0, c0+c1, ..."""
    out = np.zeros(len(counts) + 1, np.int64)
    out[1:] = np.cumsum(counts)
    return out
