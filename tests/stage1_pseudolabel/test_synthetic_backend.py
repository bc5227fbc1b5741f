"""The synthetic stand-in segmenter: failure rates, outputs per failure mode, determinism."""

from __future__ import annotations

import numpy as np
import pytest

from mllm3d.shared.errors import BadInputError
from mllm3d.shared.scene import Query, View
from mllm3d.stage1_pseudolabel.mask_ops import dilate
from mllm3d.stage1_pseudolabel.seeding import unit_vector
from mllm3d.stage1_pseudolabel.segmenter import build_segmenter
from mllm3d.stage1_pseudolabel.synthetic_backend import SyntheticSegmenter, build

H, W = 40, 60
# five rectangles; object 3 is small, 4 is far from the others
BOXES = {0: (5, 20, 5, 20), 1: (5, 20, 24, 40), 2: (22, 38, 5, 25), 3: (24, 30, 30, 36), 4: (25, 38, 44, 58)}


def make_view(frame_id: int, present: tuple[int, ...] = (0, 1, 2, 3, 4), color_scale: int = 1) -> View:
    inst = np.full((H, W), -1, dtype=np.int32)
    for i in present:
        r0, r1, c0, c1 = BOXES[i]
        inst[r0:r1, c0:c1] = i
    k = np.array([[50.0, 0, W / 2], [0, 50.0, H / 2], [0, 0, 1]])
    color = np.zeros((H * color_scale, W * color_scale, 3), np.uint8)
    return View(frame_id, color, np.ones((H, W), np.float32), k, np.eye(4), instance_map=inst)


def queries(n: int, scene: str = "s0") -> list[Query]:
    return [Query(scene, f"q{j}", f"object {j % 5}", target_ids=[j % 5]) for j in range(n)]


def test_failure_rates_match_config_over_many_views() -> None:
    seg = build({"seed": 3})
    qs = queries(5)
    counts = {"missed": 0, "hall": 0, "boundary": 0, "partial": 0, "visible": 0}
    conf_ok, conf_hall, cos_ok, cos_hall = [], [], [], []
    n = 0
    for f in range(400):
        view = make_view(f)
        for q in qs:
            res, out = seg.segment_query(view, q)
            n += 1
            target = q.target_ids[0]
            truth = view.instance_map == target
            if out.missed:
                counts["missed"] += 1
                assert not res.has_seg and not res.mask.any() and not res.seg_embedding.any()
                assert res.confidence == 0.0
                continue
            counts["visible"] += 1
            counts["boundary"] += out.boundary is not None
            counts["partial"] += out.partial
            qvec = seg.query_vector(view, q)
            cos = float(res.seg_embedding @ qvec / np.linalg.norm(res.seg_embedding))
            if out.hallucinated_id is not None:
                counts["hall"] += 1
                other = view.instance_map == out.hallucinated_id
                # a wrong object's mask (up to 2 px of boundary noise), never the target's
                assert (res.mask & truth).sum() <= 2 * truth.shape[1]
                assert (res.mask & other).sum() >= 0.3 * res.mask.sum()
                conf_hall.append(res.confidence)
                cos_hall.append(cos)
            else:
                iou = (res.mask & truth).sum() / max((res.mask | truth).sum(), 1)
                assert iou > (0.15 if truth.sum() >= 100 else 0.05)
                assert not (res.mask & ~dilate(truth, 2)).any()
                if out.boundary is None and not out.partial:
                    assert np.array_equal(res.mask, truth)
                conf_ok.append(res.confidence)
                cos_ok.append(cos)
    assert counts["missed"] / n == pytest.approx(0.10, abs=0.025)
    assert counts["hall"] / counts["visible"] == pytest.approx(0.15, abs=0.03)
    assert counts["boundary"] / counts["visible"] == pytest.approx(0.30, abs=0.04)
    assert counts["partial"] / counts["visible"] == pytest.approx(0.15, abs=0.03)
    # scores are informative: correct views higher on average, embeddings aligned with the query
    assert np.mean(conf_ok) > np.mean(conf_hall) + 0.1
    assert np.mean(cos_ok) > 0.8 and abs(np.mean(cos_hall)) < 0.15


def test_hallucination_prefers_nearby_objects() -> None:
    seg = build(
        {"seed": 0, "hallucination_rate": 1.0, "miss_rate": 0.0, "boundary_rate": 0.0, "partial_rate": 0.0}
    )
    picked = [
        seg.segment_query(make_view(f), Query("s0", "q", "t", [0]))[1].hallucinated_id for f in range(300)
    ]
    share = {i: picked.count(i) / len(picked) for i in range(1, 5)}
    # object 1 and 2 touch object 0; 4 is far away
    assert share[1] + share[2] > 0.7
    assert share[4] < 0.08


def test_absent_target_and_zero_target_queries() -> None:
    seg = build({"seed": 1, "absent_hallucination_rate": 0.0, "miss_rate": 0.0})
    view = make_view(0, present=(1, 2))
    res, out = seg.segment_query(view, Query("s0", "q", "t", [0]))
    assert res.has_seg and not res.mask.any() and not out.target_visible
    res, _ = seg.segment_query(view, Query("s0", "qz", "nothing", []))
    assert res.has_seg and not res.mask.any() and res.confidence < 0.7


def test_deterministic_and_independent_of_other_queries_and_order() -> None:
    seg = build({"seed": 7, "image_features": True, "attention_maps": True})
    qs = queries(6)
    view = make_view(10)
    full = seg.segment_view(view, qs)
    sub = build({"seed": 7, "image_features": True, "attention_maps": True}).segment_view(
        view, [qs[4], qs[1]]
    )
    for a, b in ((full.results[4], sub.results[0]), (full.results[1], sub.results[1])):
        assert np.array_equal(a.mask, b.mask)
        assert np.array_equal(a.seg_embedding, b.seg_embedding)
        assert (a.confidence, a.attention, a.has_seg) == (b.confidence, b.attention, b.has_seg)
        assert np.array_equal(a.attention_map, b.attention_map)
    assert np.array_equal(full.image_features, sub.image_features)
    other_seed = build({"seed": 8}).segment_view(view, qs)
    assert any(
        not np.array_equal(a.seg_embedding, b.seg_embedding)
        for a, b in zip(full.results, other_seed.results, strict=True)
    )


def test_image_features_render_instances() -> None:
    seg = build(
        {"seed": 0, "image_features": True, "feature_dim": 16, "feature_stride": 4, "feature_noise": 0.0}
    )
    feats = seg.segment_view(make_view(0), queries(1)).image_features
    assert feats.shape == (16, 10, 15) and feats.dtype == np.float32
    # a cell inside object 0 (rows 8-11, cols 8-11) is exactly that object's unit vector
    v0 = unit_vector(16, 0, "s0", "feature", 0)
    assert np.allclose(feats[:, 2, 2], v0, atol=1e-6)
    # cells of different objects differ, cells of one object agree
    assert np.allclose(feats[:, 2, 2], feats[:, 3, 3])
    assert not np.allclose(feats[:, 2, 2], feats[:, 2, 7])


def test_mask_is_at_colour_resolution() -> None:
    seg = build({"miss_rate": 0.0, "hallucination_rate": 0.0, "boundary_rate": 0.0, "partial_rate": 0.0})
    res = seg.segment_view(make_view(0, color_scale=2), queries(1)).results[0]
    assert res.mask.shape == (2 * H, 2 * W)
    assert res.mask.sum() == 4 * 15 * 15


def test_missing_instance_map_and_targets_are_clear_errors() -> None:
    seg = build({})
    view = make_view(0)
    view.instance_map = None
    with pytest.raises(BadInputError, match="instance_map.*synthetic scenes"):
        seg.segment_view(view, queries(1))
    with pytest.raises(BadInputError, match="target_ids"):
        seg.segment_view(make_view(0), [Query("s0", "q", "t", None)])
    with pytest.raises(BadInputError, match="unknown config keys"):
        build({"halucination_rate": 0.2})
    with pytest.raises(BadInputError, match="miss_rate"):
        build({"miss_rate": 1.5})


def test_registered_backend_and_config_dict() -> None:
    seg = build_segmenter("synthetic", {"embed_dim": 64})
    assert isinstance(seg, SyntheticSegmenter) and seg.name == "synthetic" and seg.embed_dim == 64
    d = seg.config_dict()
    assert d["embed_dim"] == 64 and d["hallucination_rate"] == 0.15 and d["partial_fraction"] == [0.25, 0.6]
    res = seg.segment_view(make_view(0), queries(1)).results[0]
    assert res.seg_embedding.shape == (64,)


def test_embeddings_describe_the_segmented_object_across_scenes() -> None:
    clean = {"miss_rate": 0.0, "boundary_rate": 0.0, "partial_rate": 0.0, "embedding_noise": 0.0}
    seg, hall = build({**clean, "hallucination_rate": 0.0}), build({**clean, "hallucination_rate": 1.0})
    attrs = {0: ("chair", "red"), 1: ("chair", "blue"), 2: ("sofa", "red"), 3: ("lamp", "white"), 4: ("bed", "gray")}
    view = make_view(0)
    view.instance_attributes = attrs

    def emb(s, scene: str, target: int, qid: str = "q") -> np.ndarray:
        e = s.segment_query(view, Query(scene, qid, "t", [target]))[0].seg_embedding
        return e / np.linalg.norm(e)

    # the red chair of two different scenes (other instance and query directions) stays close ...
    same = float(emb(seg, "sA", 0) @ emb(seg, "sB", 0, "q2"))
    # ... closer than a chair of another colour, much closer than a red object of another category
    other_color = float(emb(seg, "sA", 0) @ emb(seg, "sB", 1, "q2"))
    other_cat = float(emb(seg, "sA", 0) @ emb(seg, "sB", 2, "q2"))
    unrelated = float(emb(seg, "sA", 0) @ emb(seg, "sB", 4, "q2"))
    assert same > 0.65 and same > other_color + 0.15 and other_color > other_cat + 0.3
    assert abs(unrelated) < 0.25
    # a hallucination returns the distractor's vector, not the target's
    res, out = hall.segment_query(view, Query("sA", "q", "t", [0]))
    e = res.seg_embedding / np.linalg.norm(res.seg_embedding)
    assert out.hallucinated_id is not None and out.hallucinated_id != 0
    assert float(e @ hall.object_vector(view, "sA", out.hallucinated_id)) == pytest.approx(1.0, abs=1e-5)
    # without attributes (real-data-like views) only the instance direction is used
    view.instance_attributes = None
    assert abs(float(emb(seg, "sA", 0) @ emb(seg, "sB", 0, "q2"))) < 0.3


# ------------------------------------------------------------------ image features (docs/stand_in.md)
def test_feature_basis_is_orthonormal_and_shared_by_scenes() -> None:
    from mllm3d.stage1_pseudolabel.synthetic_features import VOCABULARY, basis, direction

    q = basis(32, 5)
    assert np.allclose(q.T @ q, np.eye(32), atol=1e-10)
    dirs = np.stack([direction(32, 5, name) for name in VOCABULARY])
    assert len(VOCABULARY) == 30 and np.allclose(dirs @ dirs.T, np.eye(30), atol=1e-10)
    assert not np.allclose(basis(32, 6), q)  # another backend seed, another basis


def test_surface_parts_on_a_generated_scene() -> None:
    from mllm3d.shared.synthetic import generate_scene
    from mllm3d.stage1_pseudolabel.synthetic_features import surface_parts

    scene, _ = generate_scene("s0", 0)
    for view in scene.views[:3]:
        parts = surface_parts(view.depth, view.intrinsic, view.pose)
        for i, name in scene.instance_labels.items():
            m = view.instance_map == i
            if name in ("floor", "wall") and m.sum() > 500:
                share = float((parts[m] == (0 if name == "floor" else 2)).mean())
                assert share > 0.9, (name, share)  # edges of the depth image mix surfaces


def test_structured_features_in_the_backend_transfer_and_random_instance_does_not() -> None:
    attrs = {0: ("chair", "red"), 1: ("chair", "red"), 2: ("table", "blue"), 3: ("lamp", "white"), 4: ("bed", "gray")}
    base = {"seed": 0, "image_features": True, "feature_stride": 4, "feature_noise": 0.0}

    def cell(model: str, scene: str, row: int, col: int) -> np.ndarray:
        view = make_view(0)
        view.instance_attributes = attrs
        seg = build({**base, "feature_model": model})
        f = seg.segment_view(view, queries(1, scene)).image_features[:, row, col]
        return f / np.linalg.norm(f)

    # cell (2, 2) is inside object 0 (a red chair), cell (2, 7) inside object 1 (a red chair), (6, 3) object 2
    sims = {m: [float(cell(m, f"sA{j}", 2, 2) @ cell(m, f"sB{j}", 2, 7)) for j in range(30)]
            for m in ("structured", "random_instance")}
    # flat depth, identity pose: every pixel is the same part, so same category and colour -> 0.943 on average
    assert np.mean(sims["structured"]) == pytest.approx(0.943, abs=0.03)
    # negative control: the same category in two scenes is ~orthogonal (sd of a cosine in 32 dims ≈ 0.18)
    assert abs(np.mean(sims["random_instance"])) < 0.1 and np.std(sims["random_instance"]) > 0.1
    other = float(cell("structured", "sA", 2, 2) @ cell("structured", "sB", 6, 3))
    assert other < 0.5  # red chair vs blue table
    with pytest.raises(BadInputError, match="feature_model"):
        build({**base, "feature_model": "clip"})
    with pytest.raises(BadInputError, match="feature_weights"):
        build({**base, "feature_weights": [1.0, 0.5]})
