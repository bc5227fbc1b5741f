"""mesh:PATH scenes (mllm3d.shared.mesh_source): a synthetic scene written as a mesh with no frames runs
through pseudolabel -> train -> eval -> predict like any other source."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("embreex")

from mllm3d.shared.errors import BadInputError  # noqa: E402
from mllm3d.shared.mesh_ply import read_mesh_ply, write_mesh_ply  # noqa: E402
from mllm3d.shared.sources import open_source  # noqa: E402
from tests.mesh_helpers import write_mesh_scene  # noqa: E402

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def mesh_root(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("meshes")
    for i in range(3):
        write_mesh_scene(root / f"scene{i:04d}_00", seed=100 + i)
    return root


def test_mesh_ply_round_trip(tmp_path: Path) -> None:
    v = np.array([[0, 0, 0], [1, 0, 0], [0, 1, 0], [0, 0, 1]], np.float32)
    f = np.array([[0, 1, 2], [0, 1, 3]])
    write_mesh_ply(tmp_path / "m.ply", v, f, np.full((4, 3), 7, np.uint8), segment_id=np.array([5, 6]))
    m = read_mesh_ply(tmp_path / "m.ply")
    np.testing.assert_array_equal(m.vertices, v)
    np.testing.assert_array_equal(m.faces, f)
    assert m.colors.tolist() == [[7, 7, 7]] * 4 and m.face_fields["segment_id"].tolist() == [5, 6]


def test_point_cloud_ply_without_faces_is_a_one_line_error(tmp_path: Path) -> None:
    from mllm3d.shared.ply import write_ply

    write_ply(tmp_path / "s" / "cloud.ply", np.zeros((3, 3)))
    with pytest.raises(BadInputError, match="cloud.ply.*no face element"):
        open_source(f"mesh:{tmp_path}").load("s")


def test_generated_views_see_the_objects_and_instances_match_the_mesh(mesh_root: Path) -> None:
    src = open_source(f"mesh:{mesh_root}?max_frames=6")
    scene = src.load("scene0000_00")
    assert len(scene.views) == 6 and scene.frame_ids() == list(range(6))
    objects = {i for i, lab in scene.instance_labels.items() if lab not in ("wall", "floor", "ceiling", "window")}
    seen: set[int] = set()
    for i in range(len(scene.views)):
        v = scene.views[i]
        assert v.depth.shape == v.instance_map.shape == (240, 320) and (v.depth > 0).mean() > 0.8
        # every hit pixel back-projects onto a mesh vertex region of the same instance (within 10 cm grid)
        rows, cols = np.nonzero(v.depth > 0)
        pick = np.arange(0, len(rows), 97)
        r, c = rows[pick], cols[pick]
        z = v.depth[r, c]
        cam = np.stack([(c - v.intrinsic[0, 2]) / v.intrinsic[0, 0] * z, (r - v.intrinsic[1, 2]) / v.intrinsic[1, 1] * z,
                        z], 1)
        world = cam @ v.pose[:3, :3].T + v.pose[:3, 3]
        d = np.linalg.norm(world[:, None, :] - scene.points[None, :, :], axis=2)
        nearest = scene.instance_ids[np.argmin(d, axis=1)]
        assert np.mean(nearest == v.instance_map[r, c]) > 0.9
        seen |= set(np.unique(v.instance_map).tolist()) & objects
    assert len(seen) >= len(objects) // 2


def test_unknown_option_and_missing_dir_are_one_line_errors(mesh_root: Path, tmp_path: Path) -> None:
    with pytest.raises(BadInputError, match="not a directory"):
        open_source(f"mesh:{tmp_path / 'nope'}")
    with pytest.raises(BadInputError, match="do not apply"):
        open_source(f"mesh:{mesh_root}", voxel=0.05)


def _cli(*args: str) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("SLURM_", "MLLM3D_TEST_"))}
    return subprocess.run([sys.executable, "-m", "mllm3d.cli", *args], cwd=REPO, env=env, capture_output=True,
                          text=True, timeout=300)


@pytest.mark.slow
def test_pseudolabel_train_eval_predict_on_mesh_scenes(mesh_root: Path, tmp_path: Path) -> None:
    store, run = tmp_path / "store.zarr", tmp_path / "run"
    spec = f"mesh:{mesh_root}?max_frames=8"
    r = _cli("pseudolabel", "--no-progress", "--source", spec, "--backend", "synthetic", "--store", str(store))
    assert r.returncode == 0, r.stderr[-3000:]
    r = _cli("train", "--store", str(store), "--out", str(run), "--no-progress", "--config",
             str(REPO / "configs/train/tiny.yaml"), "--set", "optim.epochs=1")
    assert r.returncode == 0, r.stderr[-3000:]
    r = _cli("eval", "--store", str(store), "--checkpoint", str(run), "--split", "all", "--json",
             str(tmp_path / "eval.json"))
    assert r.returncode == 0, r.stderr[-3000:]
    assert json.loads((tmp_path / "eval.json").read_text())
    query = json.loads((mesh_root / "scene0001_00" / "queries_synthetic.json").read_text())[0]
    out = tmp_path / "pred.ply"
    r = _cli("predict", "--source", spec, "--scene", "scene0001_00", "--query-id", query["query_id"],
             "--checkpoint", str(run), "--out", str(out))
    assert r.returncode == 0, r.stderr[-3000:]
    assert out.is_file()


def test_given_poses_render_the_synthetic_scene_s_own_depth(tmp_path: Path) -> None:
    """pose/N.txt + intrinsic_depth.txt: the mesh render equals the box ray-caster's exact depth."""
    from mllm3d.shared.synthetic import SyntheticConfig, camera_poses, intrinsic_matrix, render_view

    cfg = SyntheticConfig()
    d = tmp_path / "scene0009_00"
    layout, _, _ = write_mesh_scene(d, seed=5, cfg=cfg)
    k = intrinsic_matrix(cfg)
    (d / "pose").mkdir()
    (d / "intrinsic").mkdir()
    np.savetxt(d / "intrinsic" / "intrinsic_depth.txt", k)
    poses = camera_poses(layout, 5, cfg)[:3]
    for i, p in enumerate(poses):
        np.savetxt(d / "pose" / f"{i * 10}.txt", p)
    scene = open_source(f"mesh:{d}").load("scene0009_00")
    assert scene.frame_ids() == [0, 10, 20]
    for i, p in enumerate(poses):
        depth, _, inst = render_view(layout, p, k, cfg.image_size)
        v = scene.views[i]
        assert v.depth.shape == cfg.image_size
        both = (v.depth > 0) & (depth > 0)
        assert np.mean(np.abs(v.depth[both] - depth[both]) < 1e-3) > 0.98
        assert both.mean() > 0.85  # the mesh leaves out faces the sampler treats as hidden (ceiling etc.)
        assert np.mean(v.instance_map[both] == inst[both]) > 0.98


@pytest.mark.parametrize("module", ["trimesh", "embreex"])
def test_missing_mesh_extra_is_a_one_line_error(monkeypatch, mesh_root: Path, module: str) -> None:
    from mllm3d.shared.raycast import MissingExtraError

    monkeypatch.setitem(sys.modules, module, None)
    with pytest.raises(MissingExtraError, match=r"optional extra 'mesh'.*pip install"):
        open_source(f"mesh:{mesh_root}").load("scene0000_00")
