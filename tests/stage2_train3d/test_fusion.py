"""Fusion: view filtering, Token-for-Query weights and q, and vote fusion on hand-made inputs."""

from __future__ import annotations

import numpy as np
import pytest

from mllm3d.shared.geometry import Correspondences
from mllm3d.shared.scene import Query
from mllm3d.shared.store import QueryRecord, StoredScene
from mllm3d.stage2_train3d.fusion import (
    FusionConfig,
    filter_views,
    fuse_labels,
    fuse_query,
    token_for_query,
    uniform_query,
)


def _record(masks, emb, conf, has_seg, view_index=None) -> QueryRecord:
    k = len(conf)
    return QueryRecord(
        query=Query("s0", "q0", "the chair"),
        view_index=np.arange(k, dtype=np.int32) if view_index is None else np.asarray(view_index, np.int32),
        masks=np.asarray(masks, bool),
        seg_embeddings=np.asarray(emb, np.float32),
        confidence=np.asarray(conf, np.float32),
        attention=np.ones(k, np.float32),
        has_seg=np.asarray(has_seg, bool),
    )


def test_filter_views_reasons():
    h, w = 10, 20  # 200 pixels: one pixel = area 0.005
    masks = np.zeros((4, h, w), bool)
    masks[0, :5, :5] = True
    masks[1, :5, :5] = True
    masks[2, 0, 0] = True  # area 0.005 < 0.01
    masks[3, :5, :5] = True
    rec = _record(masks, np.ones((4, 3)), [0.9, 0.12, 0.9, 0.9], [True, True, True, False])
    keep, reasons = filter_views(rec, FusionConfig(min_area=0.01))
    assert keep.tolist() == [True, False, False, False]
    assert reasons == ["kept", "confidence 0.12 < 0.5", "mask area 0.005 < 0.01", "no [SEG]"]
    keep, reasons = filter_views(rec, FusionConfig(view_filter=False, min_area=0.01))
    assert keep.tolist() == [True, True, True, False]  # no-[SEG] still dropped
    assert reasons[3] == "no [SEG]"


def test_token_for_query_hallucinated_view_gets_no_weight():
    rng = np.random.default_rng(0)
    d = 256
    target = rng.normal(size=d)
    other = rng.normal(size=d)
    other -= other @ target / (target @ target) * target  # orthogonal direction
    emb = np.stack(
        [target + 0.1 * rng.normal(size=d) for _ in range(3)] + [other - 0.3 * target]  # hallucination
    )
    conf = np.array([0.9, 0.85, 0.95, 0.2])
    keep = np.ones(4, bool)
    q, w = token_for_query(emb, conf, keep, iterations=3)
    assert w.shape == (4,) and q.shape == (d,)
    assert w.sum() == pytest.approx(1.0, abs=1e-6)
    assert w[3] < 1e-3  # pointing away from the consensus: clipped to 0
    assert np.all(w[:3] > 0.3)
    cos = q @ target / np.linalg.norm(q) / np.linalg.norm(target)
    assert cos > 0.99
    # the plain mean (w/o Token-for-Query) is pulled towards the hallucination
    qu, wu = uniform_query(emb, keep)
    assert np.allclose(wu, 0.25)
    assert qu @ target / np.linalg.norm(qu) / np.linalg.norm(target) < cos - 0.05


def test_token_for_query_respects_keep_and_fallback():
    emb = np.array([[1.0, 0.0], [0.0, 1.0], [-1.0, 0.0]])
    conf = np.array([0.3, 0.6, 0.9])
    q, w = token_for_query(emb, conf, np.array([True, True, False]), iterations=0)
    assert w[2] == 0
    assert w[:2] == pytest.approx([1 / 3, 2 / 3])
    assert q == pytest.approx([1 / 3, 2 / 3], abs=1e-6)
    # q0 = 0 (two opposite views with equal confidence): every product is 0 -> confidence weights
    q, w = token_for_query(np.array([[1.0, 0.0], [-1.0, 0.0]]), np.array([0.5, 0.5]), np.ones(2, bool), 3)
    assert w == pytest.approx([0.5, 0.5])
    # nothing kept: zeros
    q, w = token_for_query(emb, conf, np.zeros(3, bool))
    assert not q.any() and not w.any()


def _toy_corr() -> Correspondences:
    # 5 points; view 0 sees points 0,1,2 at pixels (0,0),(0,1),(1,0); view 1 sees 1,2,3 at (0,0),(1,1),(0,1)
    return Correspondences(
        point_idx=np.array([0, 1, 2, 1, 2, 3], np.int32),
        rows=np.array([0, 0, 1, 0, 1, 0], np.int32),
        cols=np.array([0, 1, 0, 0, 1, 1], np.int32),
        offsets=np.array([0, 3, 6], np.int64),
    )


def test_fuse_labels_two_views():
    masks = np.zeros((2, 2, 2), bool)
    masks[0, 0, 0] = masks[0, 0, 1] = True  # view 0: points 0,1 inside, 2 outside
    masks[1, 0, 0] = True  # view 1: point 1 inside, 2 and 3 outside
    prob, seen = fuse_labels(5, _toy_corr(), masks, np.array([0.75, 0.25], np.float32))
    assert seen.tolist() == [True, True, True, True, False]
    assert prob.dtype == np.float32
    assert prob.tolist() == pytest.approx([1.0, 1.0, 0.0, 0.0, 0.0])
    masks[1, 1, 1] = True  # now view 1 says point 2 is inside: 0.75*0 + 0.25*1
    prob, _ = fuse_labels(5, _toy_corr(), masks, np.array([0.75, 0.25], np.float32))
    assert prob[2] == pytest.approx(0.25)
    # a view with zero weight neither votes nor marks points as seen
    prob, seen = fuse_labels(5, _toy_corr(), masks, np.array([1.0, 0.0], np.float32))
    assert seen.tolist() == [True, True, True, False, False]
    assert prob[2] == 0.0


def test_fuse_query_uses_the_querys_views_in_order():
    corr = _toy_corr()
    scene = StoredScene(
        scene_id="s0",
        points=np.zeros((5, 3), np.float32),
        colors=np.zeros((5, 3), np.uint8),
        frame_ids=np.array([0, 10], np.int32),
        intrinsics=np.tile(np.eye(3, dtype=np.float32), (2, 1, 1)),
        poses=np.tile(np.eye(4), (2, 1, 1)),
        image_size=(2, 2),
        correspondences=corr,
    )
    masks = np.zeros((2, 2, 2), bool)
    masks[0, 0, 0] = True  # record view 0 = scene view 1: point 1 inside
    masks[1, 0, 0] = True  # record view 1 = scene view 0: point 0 inside
    rec = _record(masks, [[1.0, 0.0], [1.0, 0.1]], [0.9, 0.9], [True, True], view_index=[1, 0])
    fused = fuse_query(scene, rec, FusionConfig(min_area=0.0))
    assert fused.keep.all() and fused.reasons == ["kept", "kept"]
    assert fused.weights.sum() == pytest.approx(1.0)
    assert fused.seen.tolist() == [True, True, True, True, False]
    assert fused.prob[0] == pytest.approx(1.0) and fused.prob[3] == 0.0
    # point 1: inside in record view 0, outside in record view 1 -> weighted average
    assert fused.prob[1] == pytest.approx(fused.weights[0], abs=1e-6)
    baseline = fused.seen & (fused.prob >= 0.5)
    assert baseline[0] and not baseline[3]
