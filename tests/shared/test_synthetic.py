"""The synthetic scene generator: determinism, geometry, exact rendering, query targets, the source."""

from __future__ import annotations

import time

import numpy as np
import pytest

from mllm3d.shared.errors import UnknownSceneError
from mllm3d.shared.geometry import backproject_depth, compute_correspondences, pose_problem
from mllm3d.shared.scene import SceneSource
from mllm3d.shared.synthetic import (
    PALETTE,
    SyntheticConfig,
    SyntheticSource,
    generate_layout,
    generate_queries,
    generate_scene,
    raycast,
)

SEEDS = (0, 7, 123)


@pytest.fixture(scope="module")
def scenes():
    return {s: generate_scene(f"s{s}", s) for s in SEEDS}


def _instance_boxes(scene):
    """Axis-aligned bounds of every instance, from its points."""
    out = {}
    for i in np.unique(scene.instance_ids):
        p = scene.points[scene.instance_ids == i]
        out[int(i)] = (p.min(0), p.max(0))
    return out


def _gap(a, b):
    dx = max(0.0, b[0][0] - a[1][0], a[0][0] - b[1][0])
    dy = max(0.0, b[0][1] - a[1][1], a[0][1] - b[1][1])
    return float(np.hypot(dx, dy))


def test_generation_is_fast_and_deterministic():
    t0 = time.perf_counter()
    a, qa = generate_scene("x", 5)
    t1 = time.perf_counter()
    b, qb = generate_scene("x", 5)
    elapsed = min(t1 - t0, time.perf_counter() - t1)
    c, _ = generate_scene("x", 6)
    assert elapsed < 1.5  # ~0.25 s alone; generous for a shared 2-core machine
    np.testing.assert_array_equal(a.points, b.points)
    np.testing.assert_array_equal(a.colors, b.colors)
    np.testing.assert_array_equal(a.instance_ids, b.instance_ids)
    for va, vb in zip(a.views, b.views, strict=True):
        np.testing.assert_array_equal(va.depth, vb.depth)
        np.testing.assert_array_equal(va.color, vb.color)
    assert [(q.text, q.target_ids) for q in qa] == [(q.text, q.target_ids) for q in qb]
    assert a.points.shape != c.points.shape or not np.array_equal(a.points, c.points)


def test_scene_contents_match_config(scenes):
    cfg = SyntheticConfig()
    for scene, _ in scenes.values():
        assert 25_000 <= scene.num_points <= 40_000
        assert scene.points.dtype == np.float32 and scene.colors.dtype == np.uint8
        assert scene.instance_ids.dtype == np.int32 and scene.instance_ids.shape == (scene.num_points,)
        assert (scene.instance_ids >= 0).all()  # every sampled surface belongs to something
        labels = scene.instance_labels
        assert set(np.unique(scene.instance_ids).tolist()) <= set(labels)
        cats = list(labels.values())
        assert cats.count("floor") == 1 and cats.count("wall") == 4
        assert 1 <= cats.count("window") <= 2
        n_obj = sum(c not in ("floor", "wall", "window", "ceiling") for c in cats)
        assert 8 <= n_obj <= 20
        assert len(scene.views) == cfg.num_views
        assert scene.frame_ids() == list(range(0, 10 * cfg.num_views, 10))
        lo, hi = scene.points.min(0), scene.points.max(0)
        assert 5.0 - 1e-3 <= hi[0] - lo[0] <= 7.0 + 1e-3 and 4.0 - 1e-3 <= hi[1] - lo[1] <= 6.0 + 1e-3
        assert abs(lo[2]) < 1e-4  # floor at z = 0


def test_objects_do_not_overlap():
    for seed in range(10):
        objs = generate_layout(seed).objects
        for i, a in enumerate(objs):
            for b in objs[i + 1 :]:
                assert _gap((a.lo, a.hi), (b.lo, b.hi)) >= SyntheticConfig().clearance - 1e-9


def test_cameras_are_rigid_inside_the_room_and_look_down(scenes):
    for scene, _ in scenes.values():
        lo, hi = scene.points.min(0), scene.points.max(0)
        for v in scene.views:
            assert pose_problem(v.pose) is None
            pos = v.pose[:3, 3]
            assert (pos[:2] > lo[:2]).all() and (pos[:2] < hi[:2]).all()
            assert 1.3 <= pos[2] <= 1.6
            assert v.pose[2, 2] < 0  # camera z (forward) points down a little
            assert v.pose[2, 0] == pytest.approx(0.0, abs=1e-9)  # no roll: camera x stays horizontal
            assert v.depth.shape == (120, 160) and v.depth.dtype == np.float32
            assert v.color.shape == (120, 160, 3) and v.color.dtype == np.uint8
            assert v.instance_map.dtype == np.int32
            assert v.intrinsic[0, 0] == pytest.approx(0.8 * 160)
            assert (v.depth > 0).all()  # closed room: every ray hits something


def test_projected_points_land_on_their_own_instance(scenes):
    for scene, _ in scenes.values():
        views = scene.views
        corr = compute_correspondences(
            scene.points, [v.intrinsic for v in views], [v.pose for v in views], [v.depth for v in views]
        )
        hits = total = 0
        for i, v in enumerate(views):
            idx, rows, cols = corr.view(i)
            hits += int((v.instance_map[rows, cols] == scene.instance_ids[idx]).sum())
            total += len(idx)
        assert total > 20_000
        assert hits / total > 0.95
        # most of the cloud is seen by at least one view
        assert len(np.unique(corr.point_idx)) / scene.num_points > 0.5


def test_depth_backprojects_onto_the_surfaces(scenes):
    scene, _ = scenes[SEEDS[0]]
    floor_id = next(i for i, c in scene.instance_labels.items() if c == "floor")
    for v in scene.views[:4]:
        pts, rows, cols = backproject_depth(v.depth, v.intrinsic, v.pose)
        on_floor = v.instance_map[rows, cols] == floor_id
        assert on_floor.sum() > 100
        np.testing.assert_allclose(pts[on_floor, 2], 0.0, atol=1e-4)


def test_raycast_hand_made_box():
    lo = np.array([[1.0, -1.0, -1.0]])
    hi = np.array([[2.0, 1.0, 1.0]])
    dirs = np.array([[1.0, 0.0, 0.0], [1.0, 0.5, 0.0], [-1.0, 0.0, 0.0], [1.0, 2.0, 0.0]])
    t, box, axis = raycast(np.zeros(3), dirs, lo, hi)
    np.testing.assert_allclose(t[:2], [1.0, 1.0])
    assert box.tolist() == [0, 0, -1, -1] and axis[:2].tolist() == [0, 0]
    assert np.isinf(t[2:]).all()


def _color_name(rgb: np.ndarray) -> str:
    names = list(PALETTE)
    ref = np.array([PALETTE[n] for n in names], dtype=float)
    return names[int(np.argmin(((ref - rgb) ** 2).sum(1)))]


def test_queries_have_exactly_the_described_targets(scenes):
    checked = {"color_category": 0, "closest_to_window": 0, "next_to": 0, "category": 0}
    for scene, queries in scenes.values():
        assert 8 <= len(queries) <= 12
        assert [q.query_id for q in queries] == [f"{scene.scene_id}_q{j:02d}" for j in range(len(queries))]
        assert len({q.text for q in queries}) == len(queries)
        assert {q.kind for q in queries} == {"explicit", "spatial", "implicit"}
        labels = scene.instance_labels
        boxes = _instance_boxes(scene)
        windows = scene.points[np.isin(scene.instance_ids, [i for i, c in labels.items() if c == "window"])]
        for q in queries:
            assert q.source == "synthetic" and len(q.target_ids) == 1
            target = q.target_ids[0]
            assert (scene.instance_ids == target).sum() > 20
            tpl, cat = q.extra["template"], q.extra.get("category")
            same = [i for i, c in labels.items() if c == cat]
            if tpl == "color_category":
                assert q.text == f"the {q.extra['color']} {cat}"
                named = [i for i in same if _color_name(scene.colors[scene.instance_ids == i].mean(0)) == q.extra["color"]]
                assert len(same) > 1 and named == [target]
            elif tpl == "category":
                assert same == [target] and q.text == f"the {cat}"
            elif tpl == "closest_to_window":
                d = {i: np.hypot(*(windows[:, :2] - (boxes[i][0] + boxes[i][1])[:2] / 2).T).min() for i in same}
                ranked = sorted(d, key=d.get)
                assert ranked[0] == target and d[ranked[1]] - d[ranked[0]] > 0.3
            elif tpl == "next_to":
                anchor = q.extra["anchor"]
                gaps = {i: _gap(boxes[i], boxes[anchor]) for i in same}
                assert gaps[target] <= 0.65
                assert all(g > 0.9 for i, g in gaps.items() if i != target)
            if tpl in checked:
                checked[tpl] += 1
    assert sum(checked.values()) >= 6


def test_queries_without_rendering_match_generate_scene(scenes):
    _, queries = scenes[SEEDS[1]]
    again = generate_queries(f"s{SEEDS[1]}", SEEDS[1])
    assert [(q.query_id, q.text, q.target_ids, q.kind) for q in again] == [
        (q.query_id, q.text, q.target_ids, q.kind) for q in queries
    ]


def test_synthetic_source():
    src = SyntheticSource(3, seed=1)
    assert isinstance(src, SceneSource) and src.name == "synthetic"
    assert src.scene_ids() == ["synth_0000", "synth_0001", "synth_0002"]
    qs = src.queries()
    assert {q.scene_id for q in qs} == set(src.scene_ids())
    a = src.load("synth_0001")
    b = SyntheticSource(3, seed=1).load("synth_0001")
    np.testing.assert_array_equal(a.points, b.points)
    assert a.scene_id == "synth_0001" and a.source == "synthetic"
    own = [q for q in qs if q.scene_id == "synth_0001"]
    for q in own:
        assert q.target_ids[0] in a.instance_labels
    other = SyntheticSource(3, seed=2).scene_queries("synth_0001")
    assert [q.text for q in other] != [q.text for q in own]
    with pytest.raises(UnknownSceneError, match="synth_0003"):
        src.load("synth_0003")
    with pytest.raises(UnknownSceneError):
        src.load("scene0000_00")


def test_synth_command_writes_store_queries_and_ply(tmp_path):
    from click.testing import CliRunner

    from mllm3d.cli import main
    from mllm3d.shared.annotations import load_queries
    from mllm3d.shared.ply import read_ply
    from mllm3d.shared.store import open_store
    from mllm3d.shared.synthetic_cli import instance_colors

    store, qfile, plys = tmp_path / "store.zarr", tmp_path / "q.json", tmp_path / "ply"
    args = ["synth", "--num-scenes", "1", "--seed", "4", "--store", str(store), "--queries-out", str(qfile),
            "--ply-dir", str(plys)]
    res = CliRunner().invoke(main, args)
    assert res.exit_code == 0, res.output
    assert "1 scene(s) written" in res.output
    src = SyntheticSource(1, seed=4)
    scene = src.load("synth_0000")
    stored = open_store(store).read_scene("synth_0000")
    np.testing.assert_array_equal(stored.points, scene.points)
    np.testing.assert_array_equal(stored.instance_ids, scene.instance_ids)
    assert stored.num_views == 16 and stored.image_size == (120, 160)
    assert stored.correspondences.point_idx.size > 10_000
    assert load_queries(qfile) == src.queries()
    ply = read_ply(plys / "synth_0000.ply")
    np.testing.assert_array_equal(ply["instance"], scene.instance_ids)
    np.testing.assert_array_equal(ply["r"], scene.colors[:, 0])
    again = CliRunner().invoke(main, args[:-2])
    assert again.exit_code == 0 and "0 scene(s) written, 1 already in the store" in again.output
    cols = instance_colors(np.arange(30))
    assert len({tuple(c) for c in cols}) == 30
