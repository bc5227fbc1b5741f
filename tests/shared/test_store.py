"""The pseudo-label store: round trip, atomic groups, schema checks, foreign stores."""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pytest

from mllm3d.shared.errors import StoreError, UnknownSceneError
from mllm3d.shared.geometry import Correspondences, backproject_depth, compute_correspondences
from mllm3d.shared.scene import Query
from mllm3d.shared.store import SCHEMA_VERSION, QueryRecord, open_store, safe_key
from tests.fs_helpers import tree_digest

K = np.array([[40.0, 0.0, 23.5], [0.0, 40.0, 15.5], [0.0, 0.0, 1.0]])
H, W = 32, 48


def _write_toy_scene(store, scene_id: str = "scene0001_00") -> None:
    depth = np.full((H, W), 2.0, dtype=np.float32)
    poses = np.stack([np.eye(4), np.eye(4)])
    pts, _, _ = backproject_depth(depth, K, poses[0])
    corr = compute_correspondences(pts, [K, K], list(poses), [depth, depth])
    inst = (np.arange(len(pts)) % 3).astype(np.int32)
    assert store.write_scene(
        scene_id,
        points=pts.astype(np.float32),
        colors=np.full((len(pts), 3), 7, np.uint8),
        frame_ids=np.array([0, 10]),
        intrinsics=np.stack([K, K]),
        poses=poses,
        image_size=(H, W),
        correspondences=corr,
        instance_ids=inst,
        instance_labels={0: "floor", 1: "chair", 2: "table"},
        thumbnails=np.zeros((2, 10, 15, 3), np.uint8),
        source="toy",
    )


def _record(scene_id: str = "scene0001_00", query_id: str = "q/1", seed: int = 0) -> QueryRecord:
    rng = np.random.default_rng(seed)
    return QueryRecord(
        query=Query(scene_id, query_id, "the chair by the window", [1], "own", "explicit", {"ann_id": 3}),
        view_index=np.array([1, 0], dtype=np.int32),
        masks=rng.random((2, H, W)) > 0.7,
        seg_embeddings=rng.standard_normal((2, 256)).astype(np.float32),
        confidence=np.array([0.9, 0.2], np.float32),
        attention=np.array([0.5, 0.1], np.float32),
        has_seg=np.array([True, False]),
        view_seed=123,
        segmenter="toy",
        generated_text=["Sure, [SEG].", "Sorry."],
        image_features=rng.standard_normal((2, 8, 4, 6)).astype(np.float16),
    )


@pytest.fixture
def store(tmp_path: Path):
    s = open_store(tmp_path / "store.zarr", "a", segmenter={"name": "toy", "config": {"a": 1}})
    _write_toy_scene(s)
    return s


def test_round_trip(store) -> None:
    rec = _record()
    assert store.write_query(rec)
    back = store.read_query("scene0001_00", "q/1")
    assert back.query == rec.query
    assert np.array_equal(back.masks, rec.masks)
    assert np.array_equal(back.view_index, rec.view_index)
    np.testing.assert_allclose(back.seg_embeddings, rec.seg_embeddings, atol=2e-3)  # stored float16
    assert np.array_equal(back.has_seg, rec.has_seg)
    assert back.generated_text == rec.generated_text and back.view_seed == 123
    assert np.array_equal(back.image_features, rec.image_features)
    scene = store.read_scene("scene0001_00")
    assert scene.image_size == (H, W) and scene.num_views == 2
    assert scene.instance_labels == {0: "floor", 1: "chair", 2: "table"}
    assert scene.correspondences.view(1)[0].shape[0] == H * W
    assert store.read_thumbnails("scene0001_00", np.array([1])).shape == (1, 10, 15, 3)
    assert store.complete_pairs() == [("scene0001_00", "q/1")]
    # reopening read-only sees the same
    ro = open_store(store.path, "r")
    assert ro.complete_pairs() == [("scene0001_00", "q/1")]
    with pytest.raises(StoreError, match="read-only"):
        ro.write_query(_record(query_id="q2"))


def test_existing_group_is_never_rewritten_without_overwrite(store) -> None:
    assert store.write_query(_record(seed=0))
    assert not store.write_query(_record(seed=1))
    assert np.array_equal(store.read_query("scene0001_00", "q/1").masks, _record(seed=0).masks)
    assert store.write_query(_record(seed=1), overwrite=True)
    assert np.array_equal(store.read_query("scene0001_00", "q/1").masks, _record(seed=1).masks)
    assert store.temporary_groups() == []


def test_incomplete_groups_are_invisible(store) -> None:
    store.write_query(_record(query_id="done"))
    qdir = store.scene_dir("scene0001_00") / "queries"
    # an interrupted write leaves a temp dir; a group without the complete marker is also ignored
    (qdir / ".tmp-half.host-1-abc").mkdir()
    half = qdir / "half"
    half.mkdir()
    (half / "zarr.json").write_text(json.dumps({"zarr_format": 3, "node_type": "group", "attributes": {}}))
    assert store.complete_pairs() == [("scene0001_00", "done")]
    assert store.query_ids("scene0001_00") == ["done"]
    assert [p.name for p in store.temporary_groups()] == [".tmp-half.host-1-abc"]
    store.remove_temporary_groups()
    assert store.temporary_groups() == []


def test_failed_write_leaves_nothing_visible(store) -> None:
    bad = _record()
    bad.confidence = np.array([np.nan, 0.1], np.float32)
    with pytest.raises(StoreError, match="non-finite"):
        store.write_query(bad)
    wrong = _record()
    wrong.masks = np.zeros((2, H + 1, W), bool)
    with pytest.raises(StoreError, match="image size"):
        store.write_query(wrong)
    assert store.complete_pairs() == [] and store.temporary_groups() == []


def test_schema_version_newer_is_rejected(tmp_path: Path) -> None:
    s = open_store(tmp_path / "s.zarr", "a")
    meta = s.path / "zarr.json"
    doc = json.loads(meta.read_text())
    doc["attributes"]["schema_version"] = SCHEMA_VERSION + 1
    meta.write_text(json.dumps(doc))
    with pytest.raises(StoreError, match="schema_version"):
        open_store(s.path, "r")


def test_foreign_and_missing_stores_are_rejected(tmp_path: Path) -> None:
    import zarr

    zarr.open_group(str(tmp_path / "foreign.zarr"), mode="w").attrs["hello"] = 1
    with pytest.raises(StoreError, match="not an mllm3d"):
        open_store(tmp_path / "foreign.zarr", "a")
    (tmp_path / "file.zarr").write_text("x")
    with pytest.raises(StoreError, match="is a file"):
        open_store(tmp_path / "file.zarr", "a")
    with pytest.raises(StoreError, match="does not exist"):
        open_store(tmp_path / "nope.zarr", "r")
    (tmp_path / "full").mkdir()
    (tmp_path / "full" / "data.txt").write_text("precious")
    with pytest.raises(StoreError, match="non-empty"):
        open_store(tmp_path / "full", "a")
    assert (tmp_path / "full" / "data.txt").read_text() == "precious"


def test_segmenter_mismatch_is_refused(tmp_path: Path) -> None:
    p = tmp_path / "s.zarr"
    open_store(p, "a", segmenter={"name": "lisa", "config": {"ckpt": "a"}})
    open_store(p, "a", segmenter={"name": "lisa", "config": {"ckpt": "a"}})
    with pytest.raises(StoreError, match="config hash"):
        open_store(p, "a", segmenter={"name": "lisa", "config": {"ckpt": "b"}})
    open_store(p, "a", segmenter={"name": "lisa", "config": {"ckpt": "b"}}, allow_mixed_segmenters=True)


def test_unknown_scene_errors(store) -> None:
    with pytest.raises(UnknownSceneError, match="unknown scene 'scene9999_00'"):
        store.read_scene("scene9999_00")
    with pytest.raises(UnknownSceneError, match="before its queries"):
        store.write_query(_record(scene_id="scene9999_00"))


def test_view_index_out_of_range(store) -> None:
    rec = _record()
    rec.view_index = np.array([0, 5], np.int32)
    with pytest.raises(StoreError, match="out of range"):
        store.write_query(rec)


def test_safe_key_is_unique_and_safe() -> None:
    assert safe_key("scene0001_00") == "scene0001_00"
    a, b = safe_key("a/b"), safe_key("a_b")
    assert a != b and "/" not in a
    assert not safe_key(".hidden").startswith(".")


def test_empty_correspondences_round_trip(tmp_path: Path) -> None:
    s = open_store(tmp_path / "s.zarr", "a")
    empty = Correspondences(np.zeros(0, np.int32), np.zeros(0, np.int32), np.zeros(0, np.int32), np.zeros(2, np.int64))
    s.write_scene("s0", np.zeros((1, 3), np.float32), np.zeros((1, 3), np.uint8), np.array([0]),
                  K[None], np.eye(4)[None], (H, W), empty)
    assert len(s.read_scene("s0").correspondences.point_idx) == 0


def _strip_complete(group: Path) -> None:
    meta = group / "zarr.json"
    doc = json.loads(meta.read_text())
    del doc["attributes"]["complete"]
    meta.write_text(json.dumps(doc))


@pytest.mark.parametrize("damage", ["no-complete", "empty-attrs", "unparseable"])
def test_incomplete_query_group_is_rewritten_and_complete_ones_never_touched(store, damage: str) -> None:
    assert store.write_query(_record(query_id="keep", seed=5))
    keep = store.query_dir("scene0001_00", "keep")
    keep_digest = tree_digest(keep, with_mtimes=True)
    assert store.write_query(_record(seed=0))
    qdir = store.query_dir("scene0001_00", "q/1")
    if damage == "no-complete":  # e.g. an older version, a hand copy, a crash without atomic rename
        _strip_complete(qdir)
    elif damage == "empty-attrs":
        (qdir / "zarr.json").write_text(json.dumps({"zarr_format": 3, "node_type": "group", "attributes": {}}))
    else:
        (qdir / "zarr.json").write_text('{"zarr_format": 3, "node_ty')
    assert not store.has_query("scene0001_00", "q/1")
    assert store.complete_pairs() == [("scene0001_00", "keep")]
    expected = "incomplete group" if damage != "unparseable" else "query group is corrupt"
    with pytest.raises(StoreError, match=re.escape(str(qdir)) + ": " + expected):
        store.read_query("scene0001_00", "q/1")
    if damage != "unparseable":
        with pytest.raises(StoreError, match="rerun Stage 1"):
            store.read_query("scene0001_00", "q/1")
    # not overwrite, yet the incomplete folder is replaced: Stage 1 can repair it
    assert store.write_query(_record(seed=1))
    assert store.has_query("scene0001_00", "q/1")
    assert np.array_equal(store.read_query("scene0001_00", "q/1").masks, _record(seed=1).masks)
    assert store.complete_pairs() == [("scene0001_00", "keep"), ("scene0001_00", "q/1")]
    assert store.temporary_groups() == []
    # a complete group is never modified without overwrite
    complete = tree_digest(qdir, with_mtimes=True)
    assert not store.write_query(_record(seed=2))
    assert not store.write_query(_record(query_id="keep", seed=6))
    assert tree_digest(qdir, with_mtimes=True) == complete and tree_digest(keep, with_mtimes=True) == keep_digest
    assert store.temporary_groups() == []


def test_incomplete_scene_group_is_rewritten_with_its_queries(store) -> None:
    assert store.write_query(_record())
    sdir = store.scene_dir("scene0001_00")
    _strip_complete(sdir)
    assert not store.has_scene("scene0001_00")
    assert not store.has_query("scene0001_00", "q/1")  # its scene is unusable, so the query is not done
    assert store.scene_ids() == [] and store.complete_pairs() == []
    with pytest.raises(StoreError, match=re.escape(str(sdir)) + r": incomplete group .*rerun Stage 1"):
        store.read_scene("scene0001_00")
    with pytest.raises(StoreError, match="incomplete group"):
        store.write_query(_record(query_id="q2"))
    _write_toy_scene(store)  # asserts write_scene returned True
    assert store.has_scene("scene0001_00") and store.read_scene("scene0001_00").num_views == 2
    assert store.query_ids("scene0001_00") == []  # the old queries went with the incomplete scene
    assert store.write_query(_record())
    assert store.complete_pairs() == [("scene0001_00", "q/1")]
    assert store.temporary_groups() == []
    before = tree_digest(sdir, with_mtimes=True)
    assert not store.write_scene(
        "scene0001_00", np.zeros((1, 3), np.float32), np.zeros((1, 3), np.uint8), np.array([0]), K[None],
        np.eye(4)[None], (H, W),
        Correspondences(np.zeros(0, np.int32), np.zeros(0, np.int32), np.zeros(0, np.int32), np.zeros(2, np.int64)),
    )
    assert tree_digest(sdir, with_mtimes=True) == before


@pytest.mark.parametrize("when", ["mid_write", "at_rename"])
def test_two_writers_of_one_query_group_first_rename_wins(store, monkeypatch, when: str) -> None:
    """Writers A and B (two store instances) write the same group with different content; B's whole
    write runs while A's temporary group exists: while it is half written (A then finds a complete
    group at publish time), or right before A's rename (which then fails with ENOTEMPTY/EEXIST).
    B renames first and wins, A returns False and discards its copy."""
    import os

    from mllm3d.shared import store_queries as store_module  # where write_query looks _fire up

    a = store
    b = open_store(store.path, "a")
    qdir = a.query_dir("scene0001_00", "q/1")
    rec_a, rec_b = _record(seed=10), _record(seed=11)
    state: dict[str, object] = {}

    def b_writes() -> None:
        state["b_started"] = True
        state["b"] = b.write_query(rec_b)

    def hook(event: str, key: str) -> None:
        if event == "query.mid_write" and when == "mid_write" and "b_started" not in state:
            b_writes()
        elif event == "query.before_publish" and "b_started" in state and "tmps" not in state:
            # B is about to rename: A's and B's temporaries are both on disk
            state["tmps"] = [p for p in a.temporary_groups() if p.name.startswith(f".tmp-{qdir.name}.")]

    real_rename = os.rename

    def rename(src, dst, *args, **kw):
        if "b_started" not in state and Path(dst) == qdir and Path(src).name.startswith(".tmp-"):
            b_writes()
        return real_rename(src, dst, *args, **kw)

    monkeypatch.setattr(store_module, "_fire", hook)
    if when == "at_rename":
        monkeypatch.setattr(os, "rename", rename)
    assert a.write_query(rec_a) is False  # A lost
    assert state["b"] is True  # B won
    assert len(state["tmps"]) == 2
    assert a.temporary_groups() == [] and not list(qdir.parent.glob(".*"))
    for s in (a, b, open_store(store.path, "r")):
        got = s.read_query("scene0001_00", "q/1")
        assert np.array_equal(got.masks, rec_b.masks) and not np.array_equal(got.masks, rec_a.masks)
        np.testing.assert_allclose(got.seg_embeddings, rec_b.seg_embeddings, atol=2e-3)
