"""Per-view segmentation results -> one :class:`QueryRecord` on the store's mask (depth) grid: colour masks
and image features mapped through the two cameras' intrinsics, and the scene group's mask resolution."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np

from mllm3d.shared.errors import BadInputError, StoreError
from mllm3d.shared.scene import Query, Scene, View
from mllm3d.shared.store import PseudoLabelStore, QueryRecord
from mllm3d.stage1_pseudolabel.mask_ops import (
    color_features_to_depth,
    color_mask_to_depth,
    color_to_depth_lookup,
    resize_nearest,
)
from mllm3d.stage1_pseudolabel.segmenter import SegmentationResult, Segmenter
from mllm3d.stage1_pseudolabel.view_sampling import ViewChoice


def assemble_record(
    query: Query,
    choice: ViewChoice,
    results: dict[int, SegmentationResult],
    features: dict[int, np.ndarray | None],
    image_size: tuple[int, int],
    segmenter: Segmenter,
    views: Mapping[int, View] | None = None,
) -> QueryRecord:
    """A QueryRecord from per-view results, masks on the ``image_size`` (depth) grid.

    With ``views`` (frame index -> View), each colour mask is mapped through that view's intrinsics
    (:func:`map_mask_to_depth`) and so are its image features (:func:`map_features_to_depth`); masks of
    views not given are resized by nearest neighbour (a copy when
    they already have ``image_size``, as the runner's are).
    """
    idx = [int(i) for i in choice.view_index]
    rs = [results[i] for i in idx]
    dim = int(segmenter.embed_dim)
    masks = np.zeros((len(idx), *image_size), dtype=bool)
    emb = np.zeros((len(idx), dim), dtype=np.float32)
    for j, r in enumerate(rs):
        e = np.asarray(r.seg_embedding, dtype=np.float32).reshape(-1)
        if e.shape != (dim,):
            raise BadInputError(
                f"backend {segmenter.name}: [SEG] embedding of shape {e.shape}, expected ({dim},)"
            )
        emb[j] = e
        if r.has_seg:
            view = None if views is None else views.get(idx[j])
            if view is not None:
                masks[j] = map_mask_to_depth(np.asarray(r.mask, dtype=bool), view, image_size)
            else:
                masks[j] = resize_nearest(np.asarray(r.mask, dtype=bool), image_size)
    maps = None
    present = [r.attention_map for r in rs if r.attention_map is not None]
    if present:
        shape = np.asarray(present[0]).shape
        maps = np.stack(
            [
                np.zeros(shape, np.float32)
                if r.attention_map is None
                else resize_nearest(np.asarray(r.attention_map, np.float32), shape)
                for r in rs
            ]
        )
    feats = None
    if idx and all(features.get(i) is not None for i in idx):
        per_view = [features[i] if views is None or i not in views else
                    map_features_to_depth(features[i], views[i], image_size) for i in idx]
        feats = np.stack([np.asarray(f, dtype=np.float32) for f in per_view])
    return QueryRecord(
        query=query,
        view_index=np.asarray(idx, dtype=np.int32),
        masks=masks,
        seg_embeddings=emb,
        confidence=np.array([r.confidence for r in rs], dtype=np.float32),
        attention=np.array([r.attention for r in rs], dtype=np.float32),
        has_seg=np.array([bool(r.has_seg) for r in rs], dtype=bool),
        view_seed=choice.view_seed,
        segmenter=segmenter.name,
        generated_text=[str(r.text) for r in rs],
        attention_maps=maps,
        image_features=feats,
    )


def map_mask_to_depth(mask: np.ndarray, view: View, image_size: tuple[int, int], lookup=None) -> np.ndarray:
    """A colour-resolution mask of ``view`` on its depth grid (``image_size``).

    With ``view.color_intrinsic`` each depth pixel samples the colour mask at K_c·K_d⁻¹·[u, v, 1]
    (nearest, outside the colour image -> False); without it the plain nearest-neighbour resize.
    """
    return color_mask_to_depth(mask, image_size, view.intrinsic, view.color_intrinsic, lookup=lookup)


def map_features_to_depth(fmap: np.ndarray | None, view: View, image_size: tuple[int, int]) -> np.ndarray | None:
    """A view's image features (spanning its colour image) on the frame of its depth grid, through the
    same K_c·K_d⁻¹ pixel map as its masks; unchanged without ``color_intrinsic`` or for the same camera."""
    cams = _colour_camera(view, image_size)
    if fmap is None or cams is None:
        return fmap
    return color_features_to_depth(fmap, image_size, view.color_size, *cams)


def _colour_camera(view: View, image_size: tuple[int, int]) -> tuple[np.ndarray, np.ndarray] | None:
    """(K_d, K_c) of a view whose colour camera differs from its depth grid; None when they are the same."""
    if view.color_intrinsic is None:
        return None
    kd = np.asarray(view.intrinsic, dtype=np.float64)[:3, :3]
    kc = np.asarray(view.color_intrinsic, dtype=np.float64)[:3, :3]
    if view.color_size == tuple(image_size) and np.array_equal(kd, kc):
        return None
    return kd, kc


def view_lookup(view: View, image_size: tuple[int, int]):
    """The colour->depth pixel map of one view (None when a resize or a copy does)."""
    cams = _colour_camera(view, image_size)
    return None if cams is None else color_to_depth_lookup(image_size, view.color_size, *cams)


def scene_image_size(
    store: PseudoLabelStore, scene_id: str, num_views: int, frame_ids: Sequence[int] | None = None
) -> tuple[int, int]:
    """The mask resolution recorded in the scene group (checked against the scene's views).

    The view count is checked from the group's attributes; with ``frame_ids`` the stored frame ids are
    compared too (a changed ``frame_stride`` / ``max_frames`` would otherwise misplace view indices).
    """
    meta = store.scene_dir(scene_id)
    attrs = store.scene_attrs(scene_id)
    hint = "the source changed since the scene group was written (another frame_stride / max_frames?); use a new store"
    if int(attrs["num_views"]) != num_views:
        raise StoreError(
            f"{meta}: stored scene has {attrs['num_views']} views but the source now gives {num_views}; {hint}"
        )
    if frame_ids is not None:
        stored = store.scene_frame_ids(scene_id).tolist()
        if stored != [int(f) for f in frame_ids]:
            diff = next(i for i, (a, b) in enumerate(zip(stored, frame_ids, strict=True)) if a != int(b))
            raise StoreError(
                f"{meta}: stored view {diff} is frame {stored[diff]} but the source now gives frame "
                f"{int(frame_ids[diff])}; {hint}"
            )
    return int(attrs["image_size"][0]), int(attrs["image_size"][1])


def source_frame_ids(scene: Scene) -> list[int]:
    """Frame ids of a scene's views without loading them when the sequence can say (LazyViews)."""
    ids = getattr(scene.views, "frame_ids", None)
    return list(ids()) if callable(ids) else [v.frame_id for v in scene.views]
