"""ScanNet export reader: the real fixture scene, and small fake layouts built in tmp_path."""

from __future__ import annotations

import json
import warnings

import numpy as np
import pytest
from PIL import Image

from mllm3d.shared.errors import BadInputError, UnknownSceneError
from mllm3d.shared.geometry import DepthTest, backproject_depth, project_view, world_to_camera
from mllm3d.shared.ply import write_ply
from mllm3d.shared.scannet import ScanNetSource, load_scannet_scene

K = np.array([[100.0, 0, 31.5, 0], [0, 100.0, 23.5, 0], [0, 0, 1, 0], [0, 0, 0, 1]])


def _pose(x: float) -> np.ndarray:
    p = np.eye(4)
    p[0, 3] = x
    return p


def fake_scene(
    root, name="scannet_scene0001_00", frames=(0, 10, 20), depth_hw=(48, 64), color_hw=(48, 64), depth_mm=2000,
    color_intrinsic=True,
):
    """A tiny export: each camera looks down +z at a wall 2 m away; left half red, right half blue."""
    d = root / name
    for sub in ("color", "depth", "pose", "intrinsic"):
        (d / sub).mkdir(parents=True, exist_ok=True)
    for i, fid in enumerate(frames):
        Image.fromarray(np.full(depth_hw, depth_mm, dtype=np.uint16)).save(d / "depth" / f"{fid}.png")
        col = np.zeros((*color_hw, 3), dtype=np.uint8)
        col[:, : color_hw[1] // 2] = (255, 0, 0)
        col[:, color_hw[1] // 2 :] = (0, 0, 255)
        Image.fromarray(col).save(d / "color" / f"{fid}.png")
        np.savetxt(d / "pose" / f"{fid}.txt", _pose(0.1 * i))
    kd = K.copy()
    kd[0, 2], kd[1, 2] = (depth_hw[1] - 1) / 2, (depth_hw[0] - 1) / 2
    np.savetxt(d / "intrinsic" / "intrinsic_depth.txt", kd)
    if color_intrinsic:
        kc = kd.copy()
        kc[0] *= color_hw[1] / depth_hw[1]
        kc[1] *= color_hw[0] / depth_hw[0]
        np.savetxt(d / "intrinsic" / "intrinsic_color.txt", kc)
    return d


# ---------------------------------------------------------------------------------------------- real data


def test_fixture_scene_loads_lazily_and_sorted(scannet_scene_dir):
    scene = load_scannet_scene(scannet_scene_dir)
    assert scene.scene_id == "scene0378_00" and scene.source == "scannet"
    assert scene.views.frame_ids() == list(range(0, 190, 10))  # numeric, not lexicographic order
    assert scene.instance_ids is None  # no mesh in the fixture: back-projected cloud
    assert scene.num_points > 20_000 and scene.points.dtype == np.float32 and scene.colors.dtype == np.uint8
    v = scene.views[3]
    assert v.frame_id == 30 and v.depth.dtype == np.float32 and v.depth.shape == (480, 640)
    assert 0.2 < float(np.median(v.depth[v.depth > 0])) < 6.0  # metres, not millimetres
    assert v.intrinsic.shape == (3, 3) and v.intrinsic[0, 0] == pytest.approx(574.540771)
    # the voxel-downsampled cloud has at most one point per 2 cm voxel
    keys = np.floor(scene.points / 0.02).astype(np.int64)
    assert len(np.unique(keys, axis=0)) == scene.num_points


def test_fixture_adjacent_frames_agree(scannet_scene_dir):
    scene = load_scannet_scene(scannet_scene_dir, max_frames=4)
    a, b = scene.views[0], scene.views[1]
    assert b.frame_id - a.frame_id == 10
    pts, _, _ = backproject_depth(a.depth, a.intrinsic, a.pose, stride=2)
    idx, rows, cols = project_view(pts, b.intrinsic, b.pose, b.depth, DepthTest(abs_tol=1e9))
    z = world_to_camera(pts[idx], b.pose)[:, 2]
    err = np.abs(b.depth[rows, cols] - z)
    assert len(idx) > 10_000
    assert (err <= 0.05).mean() >= 0.90


# ---------------------------------------------------------------------------------------------- fake layouts


def test_frames_sorted_numerically_with_stride_and_max(tmp_path):
    d = fake_scene(tmp_path, frames=(100, 5, 0, 10))
    assert load_scannet_scene(d).views.frame_ids() == [0, 5, 10, 100]
    assert load_scannet_scene(d, frame_stride=2).views.frame_ids() == [0, 10]
    assert load_scannet_scene(d, max_frames=3).views.frame_ids() == [0, 5, 10]


def test_backprojected_cloud_values(tmp_path):
    d = fake_scene(tmp_path, depth_hw=(48, 64), color_hw=(96, 128))
    scene = load_scannet_scene(d, point_stride=1, voxel=0.0)
    assert scene.scene_id == "scene0001_00"
    np.testing.assert_allclose(scene.points[:, 2], 2.0, atol=1e-6)  # the wall at 2 m
    # color sampled from the (larger) color image: red left of the image centre, blue right (frame 0 at x=0)
    first = scene.points[: 48 * 64]
    left = first[:, 0] < -0.05
    right = first[:, 0] > 0.05
    assert (scene.colors[: 48 * 64][left] == [255, 0, 0]).all()
    assert (scene.colors[: 48 * 64][right] == [0, 0, 255]).all()
    v = scene.views[0]
    assert v.color.shape == (96, 128, 3) and v.depth.shape == (48, 64)
    assert v.color_intrinsic[0, 0] == pytest.approx(200.0)
    both = scene.views[0:2]
    assert [x.frame_id for x in both] == [0, 10]


def test_nan_pose_frame_skipped_with_count(tmp_path):
    d = fake_scene(tmp_path, frames=(0, 10, 20, 30))
    for fid in (10, 30):
        (d / "pose" / f"{fid}.txt").write_text("-inf -inf -inf -inf\n" * 4)
    with pytest.warns(UserWarning, match=r"skipped 2 frame\(s\) with non-finite poses \(frames \[10, 30\]"):
        scene = load_scannet_scene(d)
    assert scene.views.frame_ids() == [0, 20]


def test_empty_depth_skipped_with_count(tmp_path):
    d = fake_scene(tmp_path)
    Image.fromarray(np.zeros((48, 64), dtype=np.uint16)).save(d / "depth" / "10.png")
    with pytest.warns(UserWarning, match=r"skipped 1 frame\(s\) whose depth is all zero"):
        scene = load_scannet_scene(d)
    assert scene.views.frame_ids() == [0, 20]


def test_missing_depth_file_is_named(tmp_path):
    d = fake_scene(tmp_path)
    (d / "depth" / "20.png").unlink()
    with pytest.raises(BadInputError, match=r"frame 20 has no depth file \(depth/20.png missing\)"):
        load_scannet_scene(d)


def test_non_rigid_pose_and_size_mismatch_are_named(tmp_path):
    d = fake_scene(tmp_path)
    bad = _pose(0.0)
    bad[:3, :3] *= 2.0
    np.savetxt(d / "pose" / "10.txt", bad)
    with pytest.raises(BadInputError, match=r"pose/10.txt: invalid camera-to-world pose: rotation part"):
        load_scannet_scene(d)
    d2 = fake_scene(tmp_path, name="scene0002_00")
    Image.fromarray(np.full((24, 32), 1000, dtype=np.uint16)).save(d2 / "depth" / "20.png")
    with pytest.raises(BadInputError, match=r"depth/20.png: depth size \(24, 32\) differs"):
        load_scannet_scene(d2)


def test_missing_color_intrinsic(tmp_path):
    same = fake_scene(tmp_path, name="scene0003_00", color_intrinsic=False)
    scene = load_scannet_scene(same)
    np.testing.assert_array_equal(scene.views[0].color_intrinsic, scene.views[0].intrinsic)
    diff = fake_scene(tmp_path, name="scene0004_00", color_hw=(96, 128), color_intrinsic=False)
    with pytest.raises(BadInputError, match=r"intrinsic_color.txt: missing"):
        load_scannet_scene(diff)


def test_mesh_aggregation_and_segs_give_instances(tmp_path):
    d = fake_scene(tmp_path, name="scene0005_00")
    rng = np.random.default_rng(0)
    pts = rng.random((8, 3))
    write_ply(d / "scene0005_00_vh_clean_2.ply", pts, np.full((8, 3), 9, dtype=np.uint8),
              alpha=np.full(8, 255, dtype=np.uint8))
    segs = [5, 5, 7, 7, 9, 11, 11, 5]
    (d / "scene0005_00_vh_clean_2.0.010000.segs.json").write_text(json.dumps({"segIndices": segs}))
    agg = {"segGroups": [
        {"id": 3, "objectId": 3, "label": "chair", "segments": [5, 9]},
        {"id": 200, "objectId": 200, "label": "desk", "segments": [7]},  # > 127: no int8 overflow
    ]}
    (d / "scene0005_00.aggregation.json").write_text(json.dumps(agg))
    scene = load_scannet_scene(d)
    assert scene.instance_ids.dtype == np.int32
    assert scene.instance_ids.tolist() == [3, 3, 200, 200, 3, -1, -1, 3]
    assert scene.instance_labels == {3: "chair", 200: "desk"}
    np.testing.assert_allclose(scene.points, pts.astype(np.float32))
    assert (scene.colors == 9).all()
    (d / "scene0005_00_vh_clean_2.0.010000.segs.json").write_text(json.dumps({"segIndices": segs[:5]}))
    with pytest.raises(BadInputError, match=r"segs.json: 5 segIndices for a mesh of 8 vertices"):
        load_scannet_scene(d)


def test_source_over_a_directory_of_scenes(tmp_path):
    fake_scene(tmp_path, name="scannet_scene0010_00")
    fake_scene(tmp_path, name="scene0009_00")
    (tmp_path / "notes").mkdir()
    src = ScanNetSource(tmp_path, max_frames=2)
    assert src.name == "scannet" and src.scene_ids() == ["scene0009_00", "scene0010_00"]
    assert len(src.load("scene0010_00").views) == 2
    with pytest.raises(UnknownSceneError, match="scene0011_00"):
        src.load("scene0011_00")
    single = ScanNetSource(tmp_path / "scene0009_00")
    assert single.scene_ids() == ["scene0009_00"] and single.queries() == []
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        src.load("scene0009_00")  # clean data: no warning


def test_source_on_the_fixture_ships_its_queries(scannet_scene_dir):
    src = ScanNetSource(scannet_scene_dir, frame_stride=6)
    assert src.scene_ids() == ["scene0378_00"]
    qs = src.queries()
    assert len(qs) == 6 and {q.scene_id for q in qs} == {"scene0378_00"}
    assert src.load("scene0378_00").views.frame_ids() == [0, 60, 120, 180]


def test_8bit_depth_png_is_rejected_naming_the_file(tmp_path):
    d = fake_scene(tmp_path)
    Image.fromarray(np.full((48, 64), 200, dtype=np.uint8)).save(d / "depth" / "10.png")  # PIL mode L
    with pytest.raises(BadInputError, match=r"depth/10\.png: depth must be a 16-bit PNG \(uint16 millimetres\), "
                                            r"got an 8-bit image \(PIL mode L\)"):
        load_scannet_scene(d)
    from mllm3d.shared.scannet import read_depth

    with pytest.raises(BadInputError, match=r"depth/10\.png: depth must be a 16-bit PNG"):
        read_depth(d / "depth" / "10.png")


def test_frame_stride_and_max_frames_are_validated(tmp_path):
    d = fake_scene(tmp_path)
    for kw in ({"frame_stride": 0}, {"frame_stride": 1.5}, {"max_frames": 0}):
        with pytest.raises(BadInputError, match="must be an integer >= 1"):
            ScanNetSource(d, **kw)
    src = ScanNetSource(d, frame_stride=2, max_frames=5)
    assert src.options["frame_stride"] == 2 and src.options["max_frames"] == 5
    assert src.load("scene0001_00").views.frame_ids() == [0, 20]


def test_lazy_views_answer_usable_frames_without_decoding(tmp_path, monkeypatch):
    """Depth is decoded once per frame at discovery; sampling needs no decode; store_scene one each."""
    import mllm3d.shared.scannet_frames as scannet
    from mllm3d.shared.scene_store import store_scene
    from mllm3d.shared.store import open_store
    from mllm3d.stage1_pseudolabel.view_sampling import usable_frames

    d = fake_scene(tmp_path, name="scene0006_00", frames=(0, 10, 20, 30), depth_hw=(48, 64), color_hw=(96, 128))
    half = np.zeros((48, 64), dtype=np.uint16)
    half[:, :16] = 1500  # 25 % valid
    Image.fromarray(half).save(d / "depth" / "20.png")
    write_ply(d / "scene0006_00_vh_clean_2.ply", np.random.default_rng(0).random((50, 3)) + [0, 0, 2],
              np.full((50, 3), 9, dtype=np.uint8))  # a mesh: no back-projection pass at load
    calls = {"depth": [], "color": []}
    real_depth, real_color = scannet.read_depth, scannet.read_color
    monkeypatch.setattr(scannet, "read_depth", lambda p, *a: calls["depth"].append(p.name) or real_depth(p, *a))
    monkeypatch.setattr(scannet, "read_color", lambda p: calls["color"].append(p.name) or real_color(p))
    scene = load_scannet_scene(d)
    assert sorted(calls["depth"]) == ["0.png", "10.png", "20.png", "30.png"] and calls["color"] == []
    views = scene.views
    assert views.valid_depth_fraction(2) == pytest.approx(0.25) and views.valid_depth_fraction(0) == 1.0
    np.testing.assert_array_equal(views.pose_at(1), _pose(0.1))
    calls["depth"].clear()
    assert usable_frames(views, 0.3).tolist() == [0, 1, 3] and usable_frames(views, 0.0).tolist() == [0, 1, 2, 3]
    assert calls == {"depth": [], "color": []}  # answered from discovery: nothing decoded
    # the same answer as from the decoded views
    decoded = [views[i] for i in range(len(views))]
    assert usable_frames(decoded, 0.3).tolist() == [0, 1, 3]
    calls["depth"].clear(), calls["color"].clear()
    store_scene(open_store(tmp_path / "s.zarr", "a"), scene)
    assert sorted(calls["depth"]) == sorted(calls["color"]) == ["0.png", "10.png", "20.png", "30.png"]
    # without discovery statistics (check_depth off) sampling reads depth only, once per frame
    frames, _, _ = scannet.discover_frames(d, check_depth=False)
    lazy = scannet.LazyViews(frames, views.intrinsic, views.color_intrinsic)
    calls["depth"].clear(), calls["color"].clear()
    assert usable_frames(lazy, 0.3).tolist() == [0, 1, 3] and usable_frames(lazy, 0.3).tolist() == [0, 1, 3]
    assert len(calls["depth"]) == 4 and calls["color"] == []
