"""Matterport3D region reader (mllm3d.shared.matterport) on synthetic rooms written in the release layout."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import pytest

from mllm3d.shared.annotations import save_queries
from mllm3d.shared.errors import BadInputError
from mllm3d.shared.sources import open_source
from mllm3d.shared.synthetic import SyntheticConfig, generate_queries
from tests.matterport_helpers import write_house
from tests.stage1_helpers import run_cli

REPO = Path(__file__).resolve().parents[2]
CFG = dataclasses.replace(SyntheticConfig(), image_size=(180, 240), num_views=5)
HOUSE = "17DRP5sb8fy"


@pytest.fixture(scope="module")
def mp(tmp_path_factory) -> tuple[Path, list[dict]]:
    root = tmp_path_factory.mktemp("mp") / "v1" / "scans"
    truth = write_house(root / HOUSE, [11, 12], CFG)
    return root, truth


def test_regions_frames_poses_and_depth_scale(mp) -> None:
    root, truth = mp
    src = open_source(f"matterport:{root}")
    assert src.scene_ids() == [f"{HOUSE}_region0", f"{HOUSE}_region1"]
    for r, sid in enumerate(src.scene_ids()):
        scene = src.load(sid)
        # region r sees exactly its own room's frames (the rooms are 50 m apart)
        assert scene.frame_ids() == [r * CFG.num_views + i for i in range(CFG.num_views)]
        for i in range(len(scene.views)):
            np.testing.assert_allclose(scene.views.pose_at(i), truth[r]["poses"][i], atol=1e-6)
        v = scene.views[1]
        np.testing.assert_allclose(v.depth, truth[r]["depths"][1], atol=0.000126)  # 0.25 mm quantisation
        np.testing.assert_allclose(v.intrinsic, truth[r]["K"], atol=1e-6)


def test_instances_from_face_segments_match_semseg(mp) -> None:
    pytest.importorskip("embreex")
    root, truth = mp
    scene = open_source(f"matterport:{root}").load(f"{HOUSE}_region1")
    np.testing.assert_array_equal(scene.instance_ids, truth[1]["vertex_instances"])
    assert scene.instance_labels == {int(k): v for k, v in truth[1]["layout"].instance_labels.items()}
    v = scene.views[0]
    assert v.instance_map is not None and v.instance_map.shape == v.depth.shape
    # the rendered instance map's pixels lie at the photo's true depth (same geometry, same pose)
    hit = v.instance_map >= 0
    assert np.mean(np.abs(v.depth[hit] - truth[1]["depths"][0][hit]) < 0.01) > 0.95


def test_reprojection_between_two_frames(mp) -> None:
    """Frame pairs that share >= 30 % of their pixels: a's depth back-projected with a's pose lands within
    5 cm of b's depth (b's pose) on >= 90 % of the co-visible pixels. (Cameras facing each other across
    the room see thin chair backs from both sides, which the 30 cm co-visibility test cannot tell apart,
    so small-overlap pairs are left out.)"""
    root, _ = mp
    scene = open_source(f"matterport:{root}").load(f"{HOUSE}_region0")
    views = [scene.views[i] for i in range(len(scene.views))]
    checked = 0
    for a in views:
        for b in views:
            if a is b:
                continue
            rows, cols = np.nonzero(a.depth > 0)
            z = a.depth[rows, cols]
            k = a.intrinsic
            world = np.stack([(cols - k[0, 2]) / k[0, 0] * z, (rows - k[1, 2]) / k[1, 1] * z, z], 1)
            world = world @ a.pose[:3, :3].T + a.pose[:3, 3]
            inv = np.linalg.inv(b.pose)
            cb = world @ inv[:3, :3].T + inv[:3, 3]
            front = cb[:, 2] > 0.1
            u = np.rint(k[0, 0] * cb[:, 0] / np.where(front, cb[:, 2], 1) + k[0, 2]).astype(int)
            v = np.rint(k[1, 1] * cb[:, 1] / np.where(front, cb[:, 2], 1) + k[1, 2]).astype(int)
            ok = front & (u >= 0) & (u < 240) & (v >= 0) & (v < 180)
            err = np.abs(b.depth[v[ok], u[ok]] - cb[ok, 2])
            co = err < 0.3  # co-visible: not occluded in frame b
            if co.sum() < 0.3 * a.depth.size:
                continue
            checked += 1
            assert np.mean(err[co] < 0.05) >= 0.9
    assert checked >= 1


def test_bad_conf_is_a_one_line_error(tmp_path: Path, mp) -> None:
    import shutil

    root, _ = mp
    h = tmp_path / HOUSE
    shutil.copytree(root / HOUSE, h)
    conf = h / "undistorted_camera_parameters" / f"{HOUSE}.conf"
    conf.write_text(conf.read_text().replace("scan ", "scan x ", 1))
    with pytest.raises(BadInputError, match=rf"{HOUSE}.conf:\d+: malformed line"):
        open_source(f"matterport:{h}").load(f"{HOUSE}_region0")


@pytest.mark.slow
def test_pseudolabel_end_to_end(mp, tmp_path: Path) -> None:
    pytest.importorskip("embreex")
    root, _ = mp
    sid = f"{HOUSE}_region0"
    queries = generate_queries(sid, 11, CFG)
    save_queries(root / HOUSE / "queries_reason3d.json", queries)
    store = tmp_path / "store.zarr"
    r = run_cli(["--source", f"matterport:{root}", "--backend", "synthetic", "--store", str(store)], timeout=300)
    (root / HOUSE / "queries_reason3d.json").unlink()
    assert r.returncode == 0, r.stderr[-3000:]
    from mllm3d.shared.store import open_store

    st = open_store(store)
    assert sid in st.scene_ids()
    assert sorted(st.query_ids(sid)) == sorted(q.query_id for q in queries)
