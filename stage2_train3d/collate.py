"""Items -> one batch: concatenated arrays with ``*_offset`` delimiters and global cross-references.

Points, voxels, queries, views and pairs are each concatenated over the items; ``*_offset`` arrays
(B+1,) delimit each item's share, voxel coordinates carry the batch index in column 0, and every
cross-reference (point->voxel, pair->point/query/view) is shifted to global indices.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import torch

from mllm3d.shared.errors import StoreError
from mllm3d.stage2_train3d.item import offsets


def collate(items: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """Concatenate items with offsets (B+1,) and globally shifted cross-references; torch tensors out.

    Layout: points, voxels, queries, views and pairs are each concatenated over items;
    ``*_offset`` delimit the items. Per-(query, point) arrays are concatenated item blocks of
    Q_b*N_b entries (query-major), delimited by ``qp_offset``; ``pair_qp`` indexes them.
    """
    b = len(items)
    if b == 0:
        raise ValueError("collate: empty batch")
    po = offsets([it["num_points"] for it in items])
    vo = offsets([it["coords"].shape[0] for it in items])
    qo = offsets([it["num_queries"] for it in items])
    wo = offsets([it["num_views"] for it in items])
    pr = offsets([it["pair_point"].shape[0] for it in items])
    qpo = offsets([it["num_queries"] * it["num_points"] for it in items])
    coords = np.concatenate(
        [np.concatenate([np.full((len(it["coords"]), 1), i, np.int32), it["coords"]], 1) for i, it in enumerate(items)]
    ).astype(np.int32)
    dims = {it["f2d"].shape[1] for it in items if it["f2d"].shape[0]}
    if len(dims) > 1:
        raise StoreError(f"image features of different widths {sorted(dims)} in one batch: {_names(items)}")
    c_img = dims.pop() if dims else 0
    pair_qp = np.concatenate(
        [qpo[i] + it["pair_query"] * it["num_points"] + it["pair_point"] for i, it in enumerate(items)]
    )
    qp_has_gt = np.concatenate([np.repeat(it["has_gt"], it["num_points"]) for it in items])
    t = torch.from_numpy
    return {
        "scene_ids": [it["scene_id"] for it in items],
        "query_ids": [q for it in items for q in it["query_ids"]],
        "query_scene_ids": [it["scene_id"] for it in items for _ in it["query_ids"]],
        "batch_size": b,
        "num_queries": int(qo[-1]),
        "coords": t(coords),
        "feats": t(np.concatenate([it["feats"] for it in items]).astype(np.float32)),
        "point_voxel": t(np.concatenate([it["inverse"] + vo[i] for i, it in enumerate(items)])),
        "point_offset": t(po),
        "voxel_offset": t(vo),
        "query_offset": t(qo),
        "view_offset": t(wo),
        "pair_offset": t(pr),
        "qp_offset": t(qpo),
        "q": t(np.concatenate([it["q"] for it in items])),
        "view_emb": t(np.concatenate([it["view_emb"] for it in items])),
        "view_weight": t(np.concatenate([it["view_weight"] for it in items])),
        "view_confidence": t(np.concatenate([it["view_confidence"] for it in items])),
        "view_attention": t(np.concatenate([it["view_attention"] for it in items])),
        "view_query": t(np.concatenate([it["view_query"] + qo[i] for i, it in enumerate(items)])),
        "pair_point": t(np.concatenate([it["pair_point"] + po[i] for i, it in enumerate(items)])),
        "pair_query": t(np.concatenate([it["pair_query"] + qo[i] for i, it in enumerate(items)])),
        "pair_view": t(np.concatenate([it["pair_view"] + wo[i] for i, it in enumerate(items)])),
        "pair_qp": t(pair_qp.astype(np.int64)),
        "pair_target": t(np.concatenate([it["pair_target"] for it in items])),
        "pair_weight": t(np.concatenate([it["pair_weight"] for it in items])),
        "f2d": t(np.concatenate([it["f2d"].reshape(-1, c_img) for it in items]).astype(np.float32))
        if c_img
        else torch.zeros(0, 0),
        "f2d_pair": t(np.concatenate([it["f2d_pair"] + pr[i] for i, it in enumerate(items)])),
        "fused_prob": t(np.concatenate([it["fused_prob"] for it in items])),
        "seen": t(np.concatenate([it["seen"] for it in items])),
        "gt": t(np.concatenate([it["gt"] for it in items])),
        "qp_has_gt": t(qp_has_gt),
        "has_gt": t(np.concatenate([it["has_gt"] for it in items])),
    }


def _names(items: Sequence[dict[str, Any]]) -> str:
    return ", ".join(f"{it['scene_id']}/{q}" for it in items for q in it["query_ids"])
