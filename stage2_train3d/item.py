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
from mllm3d.stage2_train3d.fusion import FusionConfig, fuse_labels, normalize_rows, query_weights


def sample_image_features(
    fmap: np.ndarray, rows: np.ndarray, cols: np.ndarray, image_size: tuple[int, int]
) -> np.ndarray:
    """Bilinearly sample a (C,h,w) feature map at image pixels (rows, cols) of an (H,W) image -> (n,C).

    The feature grid is assumed to span the whole image: pixel centre (row+0.5, col+0.5) maps to
    ((row+0.5)·h/H − 0.5, (col+0.5)·w/W − 0.5) in feature cells — rows scale with h/H and columns
    with w/W (the official code swapped H and W, docs/method.md, bug 3).
    """
    c, h, w = fmap.shape
    big_h, big_w = image_size
    y = np.clip((rows.astype(np.float64) + 0.5) * h / big_h - 0.5, 0.0, h - 1)
    x = np.clip((cols.astype(np.float64) + 0.5) * w / big_w - 0.5, 0.0, w - 1)
    y0 = np.floor(y).astype(np.int64)
    x0 = np.floor(x).astype(np.int64)
    y1 = np.minimum(y0 + 1, h - 1)
    x1 = np.minimum(x0 + 1, w - 1)
    wy = (y - y0)[:, None]
    wx = (x - x0)[:, None]
    f = np.asarray(fmap, dtype=np.float32)
    top = f[:, y0, x0].T * (1 - wx) + f[:, y0, x1].T * wx
    bottom = f[:, y1, x0].T * (1 - wx) + f[:, y1, x1].T * wx
    return (top * (1 - wy) + bottom * wy).astype(np.float32)


def query_arrays(scene: StoredScene, rec: QueryRecord, fusion: FusionConfig, where: str) -> dict[str, Any]:
    """Fusion, (point, view) pairs, sampled image features and ground truth of one query.

    ``where`` names the query in errors (store path, scene, query).
    """
    if tuple(rec.masks.shape[1:]) != tuple(scene.image_size):
        raise StoreError(f"{where}: masks are {rec.masks.shape[1:]}, the scene's image size is {scene.image_size}")
    if rec.num_views and (rec.view_index.min() < 0 or rec.view_index.max() >= scene.num_views):
        raise StoreError(f"{where}: view_index {rec.view_index.tolist()} out of range 0..{scene.num_views - 1}")
    q, weights, keep, _ = query_weights(rec, fusion)
    corr = scene.correspondences.subset(rec.view_index)
    n = scene.num_points
    prob, seen = fuse_labels(n, corr, rec.masks, weights)
    used = np.flatnonzero(weights > 0)
    pair_point, pair_view, pair_target, pair_weight = [], [], [], []
    f2d_list, f2d_pair = [], []
    n_pairs = 0
    for i in used:
        pidx, rows, cols = corr.view(int(i))
        target = rec.masks[i][rows, cols]
        pair_point.append(pidx.astype(np.int64))
        pair_view.append(np.full(len(pidx), i, np.int64))
        pair_target.append(target.astype(np.float32))
        pair_weight.append(np.full(len(pidx), float(weights[i]) * len(used), np.float32))
        if rec.image_features is not None and target.any():
            pos = np.flatnonzero(target)
            f2d_list.append(sample_image_features(rec.image_features[i], rows[pos], cols[pos], scene.image_size))
            f2d_pair.append(pos + n_pairs)
        n_pairs += len(pidx)
    has_gt = scene.instance_ids is not None and rec.query.target_ids is not None
    gt = gt_mask(scene.instance_ids, rec.query.target_ids).astype(np.float32) if has_gt else np.zeros(n, np.float32)
    c_img = 0 if rec.image_features is None else int(rec.image_features.shape[1])
    return {
        "q": q.astype(np.float32),
        "view_emb": normalize_rows(rec.seg_embeddings).astype(np.float32),
        "view_weight": weights.astype(np.float32),
        "view_keep": keep,
        "view_confidence": rec.confidence.astype(np.float32),
        "view_attention": rec.attention.astype(np.float32),
        "pair_point": _cat(pair_point, np.int64),
        "pair_view": _cat(pair_view, np.int64),
        "pair_target": _cat(pair_target, np.float32),
        "pair_weight": _cat(pair_weight, np.float32),
        "f2d": np.concatenate(f2d_list) if f2d_list else np.zeros((0, c_img), np.float32),
        "f2d_pair": _cat(f2d_pair, np.int64),
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


def _cat(parts: list[np.ndarray], dtype: type) -> np.ndarray:
    return np.concatenate(parts).astype(dtype, copy=False) if parts else np.zeros(0, dtype)


def offsets(counts: Sequence[int]) -> np.ndarray:
    """(len(counts)+1,) int64 running offsets: 0, c0, c0+c1, ..."""
    out = np.zeros(len(counts) + 1, np.int64)
    out[1:] = np.cumsum(counts)
    return out
