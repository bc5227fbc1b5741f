"""The stand-in's image features (docs/stand_in.md, "Image features"): the analytic cosines of the
``structured`` model, the surface parts on analytic depth images, the negative controls, the clean preset."""

from __future__ import annotations

import numpy as np
import pytest

from mllm3d.shared.scene import Query, View
from mllm3d.stage1_pseudolabel.synthetic_backend import build
from mllm3d.stage1_pseudolabel.synthetic_features import (
    random_instance_features,
    structured_features,
    surface_parts,
)

WEIGHTS = (1.0, 0.5, 0.5, 0.3)
DIM, SEED = 32, 5


def pixel_feature(scene: str, category: str, colour: str, part: int) -> np.ndarray:
    """The structured feature of a one-pixel view of instance 0 with the given attributes and part."""
    labels = np.zeros((1, 1), np.int32)
    parts = np.full((1, 1), part, np.int8)
    return structured_features(labels, parts, {0: (category, colour)}, WEIGHTS, DIM, SEED, scene)[0, 0]


@pytest.mark.parametrize(
    ("b", "expected"),
    [
        # (category, colour, part) of the second pixel; the first is (chair, red, up). Hand-computed from the
        # stated weights with orthonormal name directions: (w_cat² [same cat] + w_col² [same colour]
        # + w_part² [same part]) / (1 + 0.25 + 0.25 + 0.09) — docs/stand_in.md's 0.943 / 0.786 / 0.314 / 0.157.
        (("chair", "red", 0), 1.50 / 1.59),
        (("chair", "blue", 0), 1.25 / 1.59),
        (("sofa", "red", 0), 0.50 / 1.59),
        (("sofa", "blue", 0), 0.25 / 1.59),
        (("chair", "red", 2), 1.25 / 1.59),  # another part: minus 0.25 / 1.59
    ],
)
def test_structured_features_have_the_stated_cosines_across_scenes(b, expected) -> None:
    # instance terms are random per (scene, instance): average over 60 scene pairs; their cosine with
    # everything else has mean 0, so the mean matches the analytic value
    cos = [float(pixel_feature(f"sA{i}", "chair", "red", 0) @ pixel_feature(f"sB{i}", *b)) for i in range(60)]
    assert np.mean(cos) == pytest.approx(expected, abs=0.03)
    assert np.isclose(np.linalg.norm(pixel_feature("s", *b)), 1.0, atol=1e-5)


def test_random_instance_control_does_not_transfer_between_scenes() -> None:
    labels = np.zeros((1, 1), np.int32)
    cos = [float(random_instance_features(labels, DIM, SEED, f"sA{i}")[0, 0]
                 @ random_instance_features(labels, DIM, SEED, f"sB{i}")[0, 0]) for i in range(60)]
    # independent random unit vectors in R^32: mean 0, sd 1/sqrt(32) ≈ 0.18
    assert abs(np.mean(cos)) < 0.08 and np.std(cos) == pytest.approx(1 / np.sqrt(DIM), rel=0.35)


def _pose(x_axis, y_axis, z_axis) -> np.ndarray:
    pose = np.eye(4)
    pose[:3, :3] = np.stack([x_axis, y_axis, z_axis], axis=1)  # camera axes in the world (columns)
    return pose


K = np.array([[40.0, 0, 16], [0, 40.0, 12], [0, 0, 1]])
DOWN = _pose((1, 0, 0), (0, -1, 0), (0, 0, -1))  # looks straight down: a constant depth is the floor
UP = _pose((1, 0, 0), (0, 1, 0), (0, 0, 1))  # looks straight up: the ceiling
FORWARD = _pose((1, 0, 0), (0, 0, -1), (0, 1, 0))  # looks along +y, image down = world down: a wall


@pytest.mark.parametrize(("pose", "part"), [(DOWN, 0), (UP, 1), (FORWARD, 2)])
def test_surface_parts_of_analytic_planes(pose, part) -> None:
    depth = np.full((24, 32), 2.0)
    parts = surface_parts(depth, K, pose)
    assert (parts == part).all()


def test_surface_parts_of_a_tilted_plane_and_missing_depth() -> None:
    # looking down at a plane that rises along x by 1 per 1: normal at 45° (cos with up 0.707 > 0.7 -> up);
    # at 60° (cos 0.5) it counts as vertical. Depth of z = -(x * tan) seen from 3 m above: d = 3 / (1 + u' tan)
    h, w = 24, 32
    u = (np.arange(w)[None, :].repeat(h, 0) - K[0, 2]) / K[0, 0]
    for slope, part in ((0.9, 0), (np.tan(np.radians(60)), 2)):
        depth = 3.0 / (1.0 + u * slope)
        assert (surface_parts(depth, K, DOWN)[2:-2, 2:-2] == part).all(), slope
    depth = np.full((h, w), 2.0)
    depth[5, 5] = 0.0
    assert surface_parts(depth, K, DOWN)[5, 5] == 2


def test_clean_preset_returns_exactly_the_visible_target_mask() -> None:
    h, w = 30, 40
    inst = np.full((h, w), -1, np.int32)
    inst[3:12, 4:15], inst[15:28, 20:38] = 0, 1
    view = View(0, np.zeros((h, w, 3), np.uint8), np.ones((h, w), np.float32),
                np.array([[30.0, 0, w / 2], [0, 30.0, h / 2], [0, 0, 1]]), np.eye(4), instance_map=inst)
    seg = build({"preset": "clean", "seed": 2})
    for f in range(20):
        view.frame_id = f
        for target in (0, 1):
            res, out = seg.segment_query(view, Query("s", f"q{target}", "t", [target]))
            assert res.has_seg and not out.missed and out.hallucinated_id is None
            assert np.array_equal(res.mask, inst == target)
        res, _ = seg.segment_query(view, Query("s", "q9", "t", [7]))  # not visible: an empty mask
        assert not res.mask.any()


def test_structured_backend_features_are_query_independent_and_shaped() -> None:
    h, w = 32, 48
    inst = np.full((h, w), -1, np.int32)
    inst[4:20, 4:30] = 0
    view = View(0, np.zeros((h, w, 3), np.uint8), np.full((h, w), 2.0, np.float32), K, DOWN,
                instance_map=inst, instance_attributes={0: ("table", "brown")})
    seg = build({"image_features": True, "feature_model": "structured", "feature_noise": 0.0, "seed": SEED})
    a = seg.segment_view(view, [Query("s", "q1", "the table", [0])]).image_features
    b = seg.segment_view(view, [Query("s", "q2", "something else", [0])]).image_features
    assert a.shape == (32, h // 8, w // 8) and np.array_equal(a, b)
    # a pooled cell fully on the table top is the table's (up-facing) structured feature
    expect = structured_features(np.zeros((1, 1), np.int32), np.zeros((1, 1), np.int8), {0: ("table", "brown")},
                                 WEIGHTS, 32, SEED, "s")[0, 0]
    assert np.allclose(a[:, 1, 1], expect, atol=1e-5)


def test_the_feature_vocabulary_covers_every_name_the_generator_uses() -> None:
    # VOCABULARY is fixed by hand (its order is the basis assignment the scored stand-in uses); a category or
    # colour added to the generator without a basis column would silently get a random direction instead
    from mllm3d.shared.synthetic_vocab import CATEGORIES
    from mllm3d.stage1_pseudolabel.synthetic_features import VOCABULARY

    used = {c.name for c in CATEGORIES.values()} | {f"colour:{col}" for c in CATEGORIES.values() for col in c.colors}
    assert used <= set(VOCABULARY), sorted(used - set(VOCABULARY))
    assert len(VOCABULARY) <= 32 and len(set(VOCABULARY)) == len(VOCABULARY)
