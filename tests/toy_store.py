"""A hand-made pseudo-label store whose answers can be checked by eye (used by the evaluation tests).

One scene: a fronto-parallel plane at 2 m back-projected from a 24×32 depth map, seen by 3 identical
cameras, so point ``i`` sits at pixel ``(i // W, i % W)`` in every view. Instance 1 = the left 8
columns, instance 2 = the 8 columns after those, -1 elsewhere.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from mllm3d.shared.geometry import backproject_depth, compute_correspondences
from mllm3d.shared.scene import Query
from mllm3d.shared.store import PseudoLabelStore, QueryRecord, open_store

H, W = 24, 32
K = np.array([[30.0, 0.0, (W - 1) / 2], [0.0, 30.0, (H - 1) / 2], [0.0, 0.0, 1.0]])
SCENE = "toy0001_00"
THUMB_HW = (12, 16)


def instance_image() -> np.ndarray:
    inst = np.full((H, W), -1, dtype=np.int32)
    inst[:, :8] = 1
    inst[:, 8:16] = 2
    return inst


def write_toy_scene(store: PseudoLabelStore, scene_id: str = SCENE, thumbnails: bool = True) -> None:
    depth = np.full((H, W), 2.0, dtype=np.float32)
    poses = np.stack([np.eye(4)] * 3)
    pts, rows, cols = backproject_depth(depth, K, poses[0])
    corr = compute_correspondences(pts, [K] * 3, list(poses), [depth] * 3)
    inst = instance_image()[rows, cols]
    colors = np.zeros((len(pts), 3), np.uint8)
    colors[:, 1] = 200
    thumbs = np.full((3, *THUMB_HW, 3), 100, np.uint8) if thumbnails else None
    store.write_scene(
        scene_id,
        points=pts.astype(np.float32),
        colors=colors,
        frame_ids=np.array([0, 10, 20]),
        intrinsics=np.stack([K] * 3),
        poses=poses,
        image_size=(H, W),
        correspondences=corr,
        instance_ids=inst,
        instance_labels={1: "chair", 2: "table"},
        thumbnails=thumbs,
        source="toy",
    )


def make_record(
    query_id: str,
    masks: np.ndarray,
    target_ids: list[int] | None,
    confidence: tuple[float, ...] = (0.9, 0.9, 0.9),
    has_seg: tuple[bool, ...] = (True, True, True),
    kind: str | None = "explicit",
    scene_id: str = SCENE,
) -> QueryRecord:
    k = masks.shape[0]
    emb = np.tile(np.linspace(-1, 1, 16, dtype=np.float32), (k, 1))
    return QueryRecord(
        query=Query(scene_id, query_id, f"text of {query_id}", target_ids, "toy", kind),
        view_index=np.arange(k, dtype=np.int32),
        masks=masks.astype(bool),
        seg_embeddings=emb,
        confidence=np.asarray(confidence, np.float32),
        attention=np.full(k, 0.5, np.float32),
        has_seg=np.asarray(has_seg, bool),
        segmenter="toy",
    )


def region(cols: slice) -> np.ndarray:
    m = np.zeros((H, W), bool)
    m[:, cols] = True
    return m


def build_toy_store(path: Path) -> PseudoLabelStore:
    """A store with one scene and four queries:

    - ``chair``: all 3 views mask instance 1 exactly (the baseline is perfect);
    - ``table``: views mask columns 8..19 (instance 2 + 4 columns too many: IoU 8/12);
      the third view has confidence 0.1 and masks everything (filtered by the view filter);
    - ``nothing``: zero-target query whose views have empty masks;
    - ``noseg``: target instance 1 but no view produced [SEG].
    """
    store = open_store(path, "a", segmenter={"name": "toy", "config": {}})
    write_toy_scene(store)
    chair = np.stack([region(slice(0, 8))] * 3)
    table = np.stack([region(slice(8, 20)), region(slice(8, 20)), region(slice(0, W))])
    empty = np.zeros((3, H, W), bool)
    store.write_query(make_record("chair", chair, [1], kind="explicit"))
    store.write_query(make_record("table", table, [2], confidence=(0.9, 0.8, 0.1), kind="spatial"))
    store.write_query(make_record("nothing", empty, [], kind="implicit"))
    store.write_query(make_record("noseg", empty, [1], has_seg=(False, False, False), kind="implicit"))
    return store
