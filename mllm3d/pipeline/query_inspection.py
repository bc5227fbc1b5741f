"""One query of a pseudo-label store in detail (``mllm3d inspect --query``): its views, filtering and fusion.

Read-only: the scene and the query group are opened for reading; nothing is written.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from mllm3d.shared.store import PseudoLabelStore, QueryRecord, StoredScene
from mllm3d.stage2_train3d.fusion import FusedQuery, FusionConfig, fuse_query


@dataclass
class ViewRow:
    """One view of one query, as the per-view table shows it."""

    index: int  # position among the query's k views
    view: int  # index into the scene's frames
    frame_id: int
    has_seg: bool
    confidence: float
    attention: float
    area: float  # mask area as a fraction of the image
    kept: bool
    reason: str  # from fusion.filter_views
    weight: float  # Token-for-Query weight ω


@dataclass
class QueryInspection:
    """One query with its scene, fusion result and per-view rows."""

    scene: StoredScene
    record: QueryRecord
    fused: FusedQuery
    rows: list[ViewRow]
    thumbnails: np.ndarray | None  # (k,h,w,3) uint8 of the query's views, or None if the store has none


def inspect_query(
    store: PseudoLabelStore, scene_id: str, query_id: str, cfg: FusionConfig | None = None
) -> QueryInspection:
    """Read one query, run view filtering + fusion on it and tabulate its views."""
    cfg = cfg or FusionConfig()
    scene = store.read_scene(scene_id)
    record = store.read_query(scene_id, query_id, with_features=False)
    fused = fuse_query(scene, record, cfg)
    k = record.num_views
    areas = record.masks.reshape(k, -1).mean(axis=1) if k else np.zeros(0)
    rows = [
        ViewRow(
            index=i,
            view=int(record.view_index[i]),
            frame_id=int(scene.frame_ids[int(record.view_index[i])]),
            has_seg=bool(record.has_seg[i]),
            confidence=float(record.confidence[i]),
            attention=float(record.attention[i]),
            area=float(areas[i]),
            kept=bool(fused.keep[i]),
            reason=fused.reasons[i],
            weight=float(fused.weights[i]),
        )
        for i in range(k)
    ]
    thumbs = store.read_thumbnails(scene_id, record.view_index) if k else None
    return QueryInspection(scene=scene, record=record, fused=fused, rows=rows, thumbnails=thumbs)
