"""Stage 1 on ScanNet-like inputs: frame subsampling (run config / CLI / spec), streaming scene groups,
colour -> depth mask mapping through the intrinsics, and what the summary says about inputs."""

from __future__ import annotations

import json
import weakref
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from mllm3d.shared.annotations import save_queries
from mllm3d.shared.errors import BadInputError, StoreError
from mllm3d.shared.geometry import compute_correspondences
from mllm3d.shared.scene import Query, Scene, View
from mllm3d.shared.scene_store import store_scene
from mllm3d.shared.store import open_store
from mllm3d.stage1_pseudolabel.cli import pseudolabel
from mllm3d.stage1_pseudolabel.mask_ops import color_mask_to_depth, resize_nearest
from mllm3d.stage1_pseudolabel.run_config import RunConfig
from mllm3d.stage1_pseudolabel.runner import assemble_record, run_pseudolabels
from mllm3d.stage1_pseudolabel.segmenter import SegmentationResult, ViewSegmentation
from tests.shared.test_scannet import fake_scene
from tests.stage1_helpers import REPO, run_config, snapshot, tiny_source


class RectSegmenter:
    """Returns one fixed colour-resolution mask (``mask_fn(color_hw)``) for every query and view."""

    name = "rect"
    embed_dim = 4

    def __init__(self, mask_fn=None) -> None:
        self.mask_fn = mask_fn or (lambda hw: np.ones(hw, dtype=bool))

    def config_dict(self) -> dict:
        return {}

    def segment_view(self, view: View, queries: list[Query]) -> ViewSegmentation:
        m = self.mask_fn(view.color_size)
        return ViewSegmentation(
            [SegmentationResult(m.copy(), np.ones(4, np.float32), 0.9, 0.5, True, "Sure, [SEG].") for _ in queries]
        )


# ---------------------------------------------------------------------------------------------- frame_stride
def test_frame_stride_from_run_config_and_spec_reaches_the_store(tmp_path: Path) -> None:
    d = fake_scene(tmp_path / "scans", name="scene0001_00", frames=(0, 10, 20, 30, 40))
    qs = [Query("scene0001_00", "q0", "the wall")]
    for name, kw in (("cfg", {"source": f"scannet:{d}", "frame_stride": 2}),
                     ("spec", {"source": f"scannet:{d}?frame_stride=2"})):
        cfg = run_config(tmp_path / f"{name}.zarr", views="all", **kw)
        s = run_pseudolabels(cfg, queries=qs, segmenter=RectSegmenter())
        assert s.ok and s.queries_written == 1, s.lines()
        assert s.source_options == {"frame_stride": 2, "max_frames": None}
        assert any("source options: frame_stride=2" in line for line in s.lines())
        store = open_store(tmp_path / f"{name}.zarr")
        assert store.read_scene("scene0001_00").frame_ids.tolist() == [0, 20, 40]
        assert store.read_query("scene0001_00", "q0").view_index.tolist() == [0, 1, 2]
    # given both ways they must agree
    with pytest.raises(BadInputError, match="frame_stride=2 but the run config / command line says frame_stride=3"):
        run_pseudolabels(run_config(tmp_path / "x.zarr", source=f"scannet:{d}?frame_stride=2", frame_stride=3),
                         queries=qs, segmenter=RectSegmenter())
    # a source object passed in must have been built with the configured stride
    with pytest.raises(BadInputError, match="source object passed to run_pseudolabels"):
        run_pseudolabels(run_config(tmp_path / "y.zarr", frame_stride=2), source=tiny_source(1),
                         segmenter=RectSegmenter())


def test_changed_frame_subsampling_on_an_existing_store_is_refused(tmp_path: Path) -> None:
    d = fake_scene(tmp_path / "scans", name="scene0001_00", frames=(0, 10, 20, 30))
    path = tmp_path / "s.zarr"
    first = run_pseudolabels(run_config(path, source=f"scannet:{d}", frame_stride=2, views="all"),
                             queries=[Query("scene0001_00", "q0", "the wall")], segmenter=RectSegmenter())
    assert first.ok
    # max_frames=2 also gives two views, but frames [0, 10] instead of [0, 20]: view indices would lie
    again = run_pseudolabels(run_config(path, source=f"scannet:{d}", max_frames=2, views="all"),
                             queries=[Query("scene0001_00", "q1", "the floor")], segmenter=RectSegmenter())
    assert not again.ok and "stored view 1 is frame 20 but the source now gives frame 10" in again.failed[0].reason
    assert "frame_stride" in again.failed[0].reason


def test_cli_frame_stride_and_the_lisa_config_default(tmp_path: Path) -> None:
    d = fake_scene(tmp_path / "scans", name="scene0001_00", frames=(0, 10, 20, 30))
    qfile = save_queries(tmp_path / "q.json", [Query("scene0001_00", "q0", "the wall")])
    out = tmp_path / "summary.json"
    res = CliRunner().invoke(pseudolabel, [
        "--source", str(d), "--queries", str(qfile), "--store", str(tmp_path / "s.zarr"), "--frame-stride", "3",
        "--max-frames", "5", "--views", "all", "--no-progress", "--summary-json", str(out)])
    # the synthetic stand-in cannot segment real frames (a named failure), but the scene group is written first
    assert res.exit_code == 1 and "instance_map" in res.output
    data = json.loads(out.read_text())
    assert data["config"]["frame_stride"] == 3 and data["config"]["max_frames"] == 5
    assert data["summary"]["source_options"] == {"frame_stride": 3, "max_frames": 5}
    assert open_store(tmp_path / "s.zarr").read_scene("scene0001_00").frame_ids.tolist() == [0, 30]
    bad = CliRunner().invoke(pseudolabel, ["--source", str(d), "--frame-stride", "0"])
    assert bad.exit_code != 0 and "--frame-stride" in bad.output
    cfg = RunConfig.from_yaml(REPO / "configs" / "stage1" / "lisa-7b.yaml")
    assert cfg.frame_stride == 20 and cfg.source.startswith("scannet:")
    assert RunConfig.from_yaml(REPO / "configs" / "stage1" / "lisa-7b.yaml", frame_stride=1).frame_stride == 1
    with pytest.raises(BadInputError, match="frame_stride must be an integer >= 1"):
        RunConfig(frame_stride=0)


def test_unknown_scene_message_names_the_annotation_file(tmp_path: Path) -> None:
    src = tiny_source(1)
    qfile = save_queries(tmp_path / "refer.json", src.scene_queries("synth_0000")[:1]
                         + [Query("scene9999_00", "x", "a lamp")])
    s = run_pseudolabels(run_config(tmp_path / "s.zarr", queries=str(qfile)), source=src)
    assert s.ok and s.unknown_scenes == ["scene9999_00"]
    line = next(x for x in s.lines() if "not in the source" in x)
    assert "['scene9999_00']" in line and f"annotation file {qfile}" in line


# ---------------------------------------------------------------------------------------------- streaming
class CountingViews(Sequence[View]):
    """Views built on access; records how many built views were still alive when the next was built."""

    def __init__(self, views: list[View]) -> None:
        self._views = views
        self.refs: list[weakref.ref] = []
        self.max_alive = 0
        self.loads = 0

    def __len__(self) -> int:
        return len(self._views)

    def __getitem__(self, i):  # type: ignore[override]
        self.max_alive = max(self.max_alive, sum(r() is not None for r in self.refs))
        self.loads += 1
        src = self._views[i]
        v = View(src.frame_id, src.color.copy(), src.depth.copy(), src.intrinsic.copy(), src.pose.copy())
        self.refs.append(weakref.ref(v))
        return v


def test_store_scene_streams_views_and_writes_the_same_group(tmp_path: Path) -> None:
    base = tiny_source(1).load("synth_0000")
    lazy = CountingViews(list(base.views))
    scene = Scene(base.scene_id, base.points, base.colors, lazy, base.instance_ids, base.instance_labels, "synthetic")
    assert store_scene(open_store(tmp_path / "a.zarr", "a"), scene)
    assert lazy.loads == len(base.views) and lazy.max_alive == 0  # one at a time, each loaded once
    assert store_scene(open_store(tmp_path / "b.zarr", "a"), base)
    assert snapshot(tmp_path / "a.zarr") == snapshot(tmp_path / "b.zarr")
    # and equal to the all-views-at-once computation
    views = list(base.views)
    ref = compute_correspondences(base.points, [v.intrinsic for v in views], [v.pose for v in views],
                                  [v.depth for v in views])
    got = open_store(tmp_path / "a.zarr").read_scene(base.scene_id).correspondences
    for name in ("point_idx", "rows", "cols", "offsets"):
        assert np.array_equal(getattr(got, name), getattr(ref, name))
    assert store_scene(open_store(tmp_path / "a.zarr", "a"), scene) is False and lazy.loads == len(views)


# ---------------------------------------------------------------------------------------------- colour -> depth
KD = np.array([[10.0, 0, 7.5], [0, 10.0, 5.5], [0, 0, 1]])  # depth camera, 12 x 16
# colour camera at twice the resolution with a principal point that is *not* the scaled depth one
# (scaled would be 15.5, 11.5): colour x = 2u + 2, y = 2v - 1 for depth pixel (u, v)
KC = np.array([[20.0, 0, 17.0], [0, 20.0, 10.0], [0, 0, 1]])
DEPTH_HW, COLOR_HW = (12, 16), (24, 32)


def _expected_depth_mask(color_mask: np.ndarray) -> np.ndarray:
    """Pixel by pixel: the colour pixel each depth pixel sees (x = 2u + 2, y = 2v - 1), outside -> False."""
    out = np.zeros(DEPTH_HW, dtype=bool)
    for v in range(DEPTH_HW[0]):
        for u in range(DEPTH_HW[1]):
            x, y = 2 * u + 2, 2 * v - 1
            if 0 <= x < COLOR_HW[1] and 0 <= y < COLOR_HW[0]:
                out[v, u] = color_mask[y, x]
    return out


def _region(hw) -> np.ndarray:
    m = np.zeros(hw, dtype=bool)
    m[5:17, 3:20] = True  # rows 5..16, cols 3..19
    return m


def test_colour_mask_is_sampled_through_both_intrinsics() -> None:
    for cm in (_region(COLOR_HW), np.ones(COLOR_HW, bool)):
        got = color_mask_to_depth(cm, DEPTH_HW, KD, KC)
        expected = _expected_depth_mask(cm)
        assert np.array_equal(got, expected)
        assert not np.array_equal(resize_nearest(cm, DEPTH_HW), expected)  # the plain resize is wrong here
    full = color_mask_to_depth(np.ones(COLOR_HW, bool), DEPTH_HW, KD, KC)
    assert not full[0].any() and not full[:, 15].any() and full[1:, :15].all()  # rays leaving the image
    # no colour intrinsic: the resize; same camera and size: unchanged
    cm = _region(COLOR_HW)
    assert np.array_equal(color_mask_to_depth(cm, DEPTH_HW, KD, None), resize_nearest(cm, DEPTH_HW))
    small = _region(DEPTH_HW)
    assert np.array_equal(color_mask_to_depth(small, DEPTH_HW, KD, KD), small)


class OneSceneSource:
    name = "fake"

    def __init__(self, scene: Scene) -> None:
        self.scene = scene

    def scene_ids(self) -> list[str]:
        return [self.scene.scene_id]

    def load(self, scene_id: str) -> Scene:
        return self.scene

    def queries(self) -> list[Query]:
        return [Query(self.scene.scene_id, "q0", "the thing")]


def test_runner_maps_masks_with_the_colour_intrinsics(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    views = [View(i, rng.integers(0, 255, (*COLOR_HW, 3), dtype=np.uint8), np.full(DEPTH_HW, 2.0, np.float32),
                  KD.copy(), np.eye(4), color_intrinsic=KC.copy()) for i in range(2)]
    pts = np.c_[rng.uniform(-1, 1, (200, 2)), np.full(200, 2.0)].astype(np.float32)
    scene = Scene("fake_0000", pts, np.zeros((200, 3), np.uint8), views, source="fake")
    s = run_pseudolabels(run_config(tmp_path / "s.zarr", views="all"), source=OneSceneSource(scene),
                         segmenter=RectSegmenter(_region))
    assert s.ok, s.lines()
    rec = open_store(tmp_path / "s.zarr").read_query("fake_0000", "q0")
    expected = _expected_depth_mask(_region(COLOR_HW))
    assert rec.masks.shape == (2, *DEPTH_HW) and all(np.array_equal(m, expected) for m in rec.masks)
    # assemble_record maps the same way when given the views (stage2 prediction's path)
    results = {i: RectSegmenter(_region).segment_view(v, [Query("fake_0000", "q0", "x")]).results[0]
               for i, v in enumerate(views)}
    from mllm3d.stage1_pseudolabel.view_sampling import ViewChoice

    record = assemble_record(Query("fake_0000", "q0", "x"), ViewChoice(np.array([0, 1], np.int32), 0), results,
                             {}, DEPTH_HW, RectSegmenter(), views=dict(enumerate(views)))
    assert all(np.array_equal(m, expected) for m in record.masks)


# ---------------------------------------------------------------------------------------------- segmenter record
def test_a_synthetic_run_refused_on_a_real_scene_does_not_bind_the_store_to_it(tmp_path: Path) -> None:
    """The synthetic backend needs instance maps: on a ScanNet scene it fails after the scene group is written.
    The store must then take another backend's run, and be bound to that one once it has written queries."""
    d = fake_scene(tmp_path / "scans", name="scene0001_00", frames=(0, 10, 20))
    qs = [Query("scene0001_00", "q0", "the wall", target_ids=[1])]
    path = tmp_path / "s.zarr"
    s = run_pseudolabels(run_config(path, source=f"scannet:{d}", views="all"), queries=qs)
    assert not s.ok and "only runs on synthetic scenes" in s.failed[0].reason
    store = open_store(path)
    assert store.has_scene("scene0001_00") and store.complete_pairs() == []
    assert "segmenter" not in store.attrs  # nothing labelled, nothing recorded
    s = run_pseudolabels(run_config(path, source=f"scannet:{d}", views="all"), queries=qs, segmenter=RectSegmenter())
    assert s.ok and s.queries_written == 1, s.lines()
    assert open_store(path).attrs["segmenter"]["name"] == "rect"
    # now bound: the synthetic backend (another segmenter) is refused as before
    with pytest.raises(StoreError, match="allow-mixed-segmenters"):
        run_pseudolabels(run_config(path, source=f"scannet:{d}", views="all"),
                         queries=[Query("scene0001_00", "q1", "the floor", target_ids=[1])])


def test_a_segmenter_record_without_query_groups_is_replaced(tmp_path: Path) -> None:
    """A store recorded by an earlier version at creation, whose run then failed before any query group."""
    from mllm3d.stage1_pseudolabel.segmenter_record import record_segmenter

    d = fake_scene(tmp_path / "scans", name="scene0001_00", frames=(0, 10, 20))
    path = tmp_path / "s.zarr"
    store = open_store(path, "a")
    record_segmenter(store, {"name": "synthetic", "config": {"seed": 0}})
    assert open_store(path).attrs["segmenter"]["name"] == "synthetic"
    s = run_pseudolabels(run_config(path, source=f"scannet:{d}", views="all"),
                         queries=[Query("scene0001_00", "q0", "the wall")], segmenter=RectSegmenter())
    assert s.ok and s.queries_written == 1
    rec = open_store(path).attrs["segmenter"]
    assert rec["name"] == "rect" and rec["config"] == {}
