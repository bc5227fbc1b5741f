"""ScanNet++ reader (mllm3d.shared.scannetpp) on a synthetic scene written in the release layout."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import numpy as np
import pytest

from tests.stage1_helpers import run_cli

pytest.importorskip("embreex")

from mllm3d.shared.annotations import load_queries, save_queries  # noqa: E402
from mllm3d.shared.errors import BadInputError  # noqa: E402
from mllm3d.shared.scannetpp import ScanNetPPSource, quat_to_matrix  # noqa: E402
from mllm3d.shared.sources import open_source  # noqa: E402
from mllm3d.shared.synthetic import SyntheticConfig, generate_queries  # noqa: E402
from tests.scannetpp_helpers import write_scannetpp_scene  # noqa: E402

REPO = Path(__file__).resolve().parents[2]
CFG = dataclasses.replace(SyntheticConfig(), image_size=(120, 160), num_views=6)
SCENE = "0a1b2c3d4e"


@pytest.fixture(scope="module")
def pp(tmp_path_factory) -> tuple[Path, dict]:
    root = tmp_path_factory.mktemp("scannetpp") / "data"
    truth = write_scannetpp_scene(root / SCENE, seed=7, cfg=CFG)
    return root, truth


def test_quaternion_of_a_quarter_turn_about_z() -> None:
    s = np.sqrt(0.5)
    np.testing.assert_allclose(quat_to_matrix(s, 0, 0, s), [[0, -1, 0], [1, 0, 0], [0, 0, 1]], atol=1e-12)


def test_poses_and_intrinsics_match_the_generator(pp) -> None:
    root, truth = pp
    scene = ScanNetPPSource(root, depth_width=80).load(SCENE)
    assert len(scene.views) == CFG.num_views
    for i in range(len(scene.views)):
        np.testing.assert_allclose(scene.views.pose_at(i), truth["poses"][i], atol=1e-6)
    v = scene.views[0]
    k = truth["K"]
    np.testing.assert_allclose(v.color_intrinsic, k, atol=1e-9)
    assert v.color.shape == (120, 160, 3) and v.depth.shape == (60, 80)
    # half-size depth: f/2, c' = (c + 0.5) / 2 - 0.5 (hand-computed for 160x120, f = focal_scale*160)
    f = CFG.focal_scale * 160
    np.testing.assert_allclose(v.intrinsic, [[f / 2, 0, 39.5], [0, f / 2, 29.5], [0, 0, 1]], atol=1e-9)


def test_reprojection_between_two_frames_agrees_with_true_depth(pp) -> None:
    """Back-project frame a's rendered depth with the read pose, project into frame b with b's read pose:
    the generator's own depth of b (rendered from the true pose) agrees within 5 cm on >= 90 % of the
    co-visible pixels."""
    root, truth = pp
    scene = ScanNetPPSource(root, depth_width=160).load(SCENE)
    checked = 0
    for a, b in ((0, 1), (2, 3), (4, 5), (1, 4)):
        va, vb = scene.views[a], scene.views[b]
        rows, cols = np.nonzero(va.depth > 0)
        z = va.depth[rows, cols]
        k = va.intrinsic
        cam = np.stack([(cols - k[0, 2]) / k[0, 0] * z, (rows - k[1, 2]) / k[1, 1] * z, z], 1)
        world = cam @ va.pose[:3, :3].T + va.pose[:3, 3]
        inv = np.linalg.inv(vb.pose)
        cb = world @ inv[:3, :3].T + inv[:3, 3]
        front = cb[:, 2] > 0.1
        u = np.rint(k[0, 0] * cb[:, 0] / cb[:, 2] + k[0, 2]).astype(int)
        v = np.rint(k[1, 1] * cb[:, 1] / cb[:, 2] + k[1, 2]).astype(int)
        inside = front & (u >= 0) & (u < 160) & (v >= 0) & (v < 120)
        true_b = truth["depths"][b][v[inside], u[inside]]
        visible = np.abs(true_b - cb[inside, 2]) < 0.3  # co-visible (not occluded in b)
        if visible.sum() < 200:
            continue
        checked += 1
        assert np.mean(np.abs(true_b[visible] - cb[inside, 2][visible]) < 0.05) >= 0.9
    assert checked >= 2


def test_instances_follow_segments_anno_and_the_photos(pp) -> None:
    root, truth = pp
    scene = ScanNetPPSource(root, depth_width=160).load(SCENE)
    np.testing.assert_array_equal(scene.instance_ids, truth["vertex_instances"])
    assert scene.instance_labels == {int(k): v for k, v in truth["layout"].instance_labels.items()}
    for i in range(len(scene.views)):  # rendered from the read pose vs the generator's map of the photo
        assert np.mean(scene.views[i].instance_map == truth["instance_maps"][i]) > 0.95


def test_instruct3d_queries_join_by_scene_and_object_id(pp, tmp_path: Path) -> None:
    root, truth = pp
    objects = [o.instance_id for o in truth["layout"].objects]
    recs = [{"scene_id": SCENE, "object_id": [objects[0]], "description": "I want to sit down", "ann_id": 3}]
    path = tmp_path / "instruct3d_val.json"
    path.write_text(json.dumps(recs))
    (q,) = load_queries(path, fmt="instruct3d")
    src = open_source(f"scannetpp:{root}")
    assert q.scene_id in src.scene_ids()
    scene = src.load(q.scene_id)
    assert set(q.target_ids) <= set(np.unique(scene.instance_ids).tolist())


def test_missing_camera_files_is_a_one_line_error(pp, tmp_path: Path) -> None:
    root, _ = pp
    d = tmp_path / "x" / "scene"
    (d / "scans").mkdir(parents=True)
    (d / "scans" / "mesh_aligned_0.05.ply").write_bytes((root / SCENE / "scans" / "mesh_aligned_0.05.ply").read_bytes())
    (d / "dslr" / "resized_images").mkdir(parents=True)
    with pytest.raises(BadInputError, match="no dslr/colmap/images.txt"):
        open_source(f"scannetpp:{d}").load("scene")


@pytest.mark.slow
def test_pseudolabel_end_to_end(pp, tmp_path: Path) -> None:
    root, _ = pp
    queries = generate_queries(SCENE, 7, CFG)
    save_queries(root / SCENE / "queries_synthetic.json", queries)
    store = tmp_path / "store.zarr"
    r = run_cli(["--source", f"scannetpp:{root}", "--backend", "synthetic", "--store", str(store)], timeout=300)
    (root / SCENE / "queries_synthetic.json").unlink()
    assert r.returncode == 0, r.stderr[-3000:]
    from mllm3d.shared.store import open_store

    st = open_store(store)
    assert st.scene_ids() == [SCENE]
    assert sorted(st.query_ids(SCENE)) == sorted(q.query_id for q in queries)
    rec = st.read_query(SCENE, queries[0].query_id, with_features=False)
    assert rec is not None


def test_nerfstudio_transforms_give_the_same_poses(pp, tmp_path: Path) -> None:
    import shutil

    root, truth = pp
    d = tmp_path / "ns" / SCENE
    shutil.copytree(root / SCENE, d)
    shutil.rmtree(d / "dslr" / "colmap")
    k = truth["K"]
    gl = np.diag([1.0, -1.0, -1.0, 1.0])  # OpenGL camera axes (y up, z back)
    frames = [{"file_path": f"images/DSC{i:05d}.JPG", "transform_matrix": (p @ gl).tolist()}
              for i, p in enumerate(truth["poses"])]
    (d / "dslr" / "nerfstudio").mkdir()
    (d / "dslr" / "nerfstudio" / "transforms_undistorted.json").write_text(json.dumps(
        {"fl_x": k[0, 0], "fl_y": k[1, 1], "cx": k[0, 2] + 0.5, "cy": k[1, 2] + 0.5, "w": 160, "h": 120,
         "frames": frames}))
    scene = ScanNetPPSource(d.parent).load(SCENE)
    for i in range(len(scene.views)):
        np.testing.assert_allclose(scene.views.pose_at(i), truth["poses"][i], atol=1e-9)
    np.testing.assert_allclose(scene.views[0].color_intrinsic, k, atol=1e-9)


def test_frame_stride_and_max_frames(pp) -> None:
    root, truth = pp
    scene = open_source(f"scannetpp:{root}?frame_stride=2&max_frames=2").load(SCENE)
    assert scene.frame_ids() == [0, 2]
    np.testing.assert_allclose(scene.views.pose_at(1), truth["poses"][2], atol=1e-6)
