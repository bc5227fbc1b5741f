"""Hostile inputs, round 3 (issue 13, remaining cases): checksummed chunks, stray files in a store, lost
chunks. Each corruption is an error naming the chunk file, never silently different data."""

from __future__ import annotations

import json
import shutil
import warnings
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from mllm3d.cli import main as mllm3d
from mllm3d.pipeline.store_check import check_store
from mllm3d.shared.errors import StoreError
from mllm3d.shared.store import open_store


def invoke(*args: object):
    return CliRunner().invoke(mllm3d, [str(a) for a in args], catch_exceptions=False)


@pytest.fixture(scope="module")
def clean_store(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A one-scene store written by Stage 1 with the synthetic backend (every array kind present)."""
    store = tmp_path_factory.mktemp("r3") / "s.zarr"
    res = invoke("pseudolabel", "--source", "synthetic:1", "--store", store, "--no-progress")
    assert res.exit_code == 0, res.output
    return store


@pytest.fixture
def store(clean_store: Path, tmp_path: Path) -> Path:
    dst = tmp_path / "s.zarr"
    shutil.copytree(clean_store, dst)
    return dst


def _array_dirs(store: Path) -> dict[str, Path]:
    """One array folder per array kind (scene arrays, correspondences/*, query arrays of the first query)."""
    scene = next(p for p in (store / "scenes").iterdir() if p.is_dir())
    query = sorted(p for p in (scene / "queries").iterdir() if p.is_dir())[0]
    out = {}
    for group, prefix in ((scene, ""), (scene / "correspondences", "correspondences/"), (query, "query/")):
        for arr in sorted(group.iterdir()):
            if (arr / "zarr.json").is_file() and json.loads((arr / "zarr.json").read_text())["node_type"] == "array":
                out[prefix + arr.name] = arr
    return out


def _read_all(store: Path) -> None:
    s = open_store(store)
    for sid in s.scene_ids():
        s.read_scene(sid)
        s.read_thumbnails(sid)
        for qid in s.query_ids(sid):
            s.read_query(sid, qid)


def test_every_array_kind_is_checksummed(clean_store: Path) -> None:
    kinds = _array_dirs(clean_store)
    assert {"points", "colors", "frame_ids", "intrinsics", "poses", "thumbnails", "correspondences/point_idx",
            "query/masks", "query/seg_embeddings", "query/views"} <= set(kinds)  # views: view_index, confidence, ...
    for name, arr in kinds.items():
        codecs = [c["name"] for c in json.loads((arr / "zarr.json").read_text())["codecs"]]
        assert codecs == ["bytes", "blosc", "crc32c"], name
    assert [p for p in check_store(clean_store) if p.severity == "error"] == []


POSITIONS = {"header": lambda n: 0, "middle": lambda n: n // 2, "last data byte": lambda n: n - 5,
             "checksum": lambda n: n - 1}


@pytest.mark.parametrize("position", sorted(POSITIONS))
def test_one_flipped_byte_in_any_chunk_is_found_by_check_and_by_every_read(store: Path, position: str) -> None:
    for name, arr in _array_dirs(store).items():
        chunk = sorted(p for p in (arr / "c").rglob("*") if p.is_file())[-1]
        original = chunk.read_bytes()
        data = bytearray(original)
        data[POSITIONS[position](len(data))] ^= 0x10
        chunk.write_bytes(bytes(data))
        try:
            errors = [p for p in check_store(store) if p.severity == "error"]
            assert len(errors) == 1, (name, errors)
            assert str(chunk) in errors[0].message and "crc32c checksum mismatch" in errors[0].message, name
            with pytest.raises(StoreError, match="checksum mismatch") as exc:
                _read_all(store)
            assert str(chunk) in str(exc.value), (name, exc.value)
        finally:
            chunk.write_bytes(original)
    res = invoke("inspect", "--store", store, "--check")
    assert res.exit_code == 0, res.output


def test_check_cli_names_the_corrupt_chunk_and_exits_1(store: Path) -> None:
    chunk = next(p for p in (_array_dirs(store)["query/masks"] / "c").rglob("*") if p.is_file())
    data = bytearray(chunk.read_bytes())
    data[len(data) // 2] ^= 1
    chunk.write_bytes(bytes(data))
    res = CliRunner(env={"COLUMNS": "2000"}).invoke(mllm3d, ["inspect", "--store", str(store), "--check"])
    assert res.exit_code == 1 and "Traceback" not in res.output
    assert f"{chunk}: corrupt chunk, does not decode: crc32c checksum mismatch" in res.output


def test_a_store_written_before_checksums_still_opens(store: Path) -> None:
    before = open_store(store)
    sid = before.scene_ids()[0]
    qid = before.query_ids(sid)[0]
    want_points, want_masks = before.read_scene(sid).points, before.read_query(sid, qid).masks
    for arr in _array_dirs(store).values():  # the layout of stores written before crc32c: strip it
        meta = json.loads((arr / "zarr.json").read_text())
        meta["codecs"] = meta["codecs"][:2]
        (arr / "zarr.json").write_text(json.dumps(meta))
        for chunk in (p for p in (arr / "c").rglob("*") if p.is_file()):
            chunk.write_bytes(chunk.read_bytes()[:-4])
        group = json.loads((arr.parent / "zarr.json").read_text())
        if "consolidated_metadata" in group:  # the group's copy of the array's metadata says the same
            group["consolidated_metadata"]["metadata"][arr.name] = meta
            (arr.parent / "zarr.json").write_text(json.dumps(group))
    s = open_store(store)
    np.testing.assert_array_equal(s.read_scene(sid).points, want_points)
    np.testing.assert_array_equal(s.read_query(sid, qid).masks, want_masks)
    assert [p for p in check_store(store) if p.severity == "error"] == []


def test_a_lost_points_chunk_is_an_error_naming_it(store: Path) -> None:
    chunk = next(p for p in (_array_dirs(store)["points"] / "c").rglob("*") if p.is_file())
    chunk.unlink()
    sid = open_store(store).scene_ids()[0]
    with pytest.raises(StoreError, match="chunk file missing") as exc:
        open_store(store).read_scene(sid)
    assert str(chunk) in str(exc.value)
    assert any("chunk files missing" in p.message for p in check_store(store) if p.severity == "error")


def test_stray_files_and_folders_in_the_store_fail_check(store: Path) -> None:
    scene = next(p for p in (store / "scenes").iterdir() if p.is_dir())
    strays = [store / "notes.txt", scene / "queries" / "q.json~", scene / "points" / "c" / "9",
              scene / "old_masks", store / "scenes" / "README"]
    for p in strays:
        if p.name in ("9", "old_masks"):
            p.mkdir()
        else:
            p.write_text("x")
    errors = [p for p in check_store(store) if p.severity == "error"]
    assert sorted(p.where for p in errors if p.message.startswith("unexpected")) == sorted(map(str, strays))
    assert invoke("inspect", "--store", store, "--check").exit_code == 1
    _read_all(store)  # stray files do not stop readers


# ---------------------------------------------------------------------------------------------- resume with changed inputs
def _run(store: Path, queries=None, **overrides):
    from mllm3d.stage1_pseudolabel.run_config import RunConfig
    from mllm3d.stage1_pseudolabel.runner import run_pseudolabels

    cfg = RunConfig(source="synthetic:1", store=str(store), progress=False, **overrides)
    return run_pseudolabels(cfg, queries=queries)


def _queries(store: Path):
    from mllm3d.stage1_pseudolabel.run_config import RunConfig
    from mllm3d.stage1_pseudolabel.runner import load_run_queries, open_run_source

    cfg = RunConfig(source="synthetic:1", store=str(store), progress=False)
    return load_run_queries(cfg, open_run_source(cfg))


@pytest.mark.parametrize("change", ["text", "targets", "views", "seed", "min_valid_depth", "view_pool"])
def test_a_resume_with_changed_inputs_is_refused_naming_the_change(tmp_path: Path, change: str) -> None:
    import dataclasses

    from mllm3d.shared.errors import BadInputError
    from tests.fs_helpers import tree_digest

    store = tmp_path / "s.zarr"
    qs = _queries(store)
    assert _run(store, qs).queries_written == len(qs)
    before = tree_digest(store)
    first = qs[0]
    queries, overrides, want = qs, {}, ""
    if change == "text":
        queries = [dataclasses.replace(first, text="the lamp by the door"), *qs[1:]]
        want = f"{first.query_id}: text {first.text!r} -> 'the lamp by the door'"
    elif change == "targets":
        queries = [dataclasses.replace(first, target_ids=[999]), *qs[1:]]
        want = f"{first.query_id}: target_ids {list(first.target_ids)} -> [999]"
    elif change == "views":
        overrides, want = {"views": 2}, "views 4 -> 2"
    elif change == "seed":
        overrides, want = {"seed": 7}, "seed 0 -> 7"
    elif change == "view_pool":
        overrides, want = {"view_pool": 6}, "view_pool None -> 6"
    else:
        overrides, want = {"min_valid_depth": 0.3}, "min_valid_depth 0.1 -> 0.3"
    with pytest.raises(BadInputError, match="the inputs changed") as exc:
        _run(store, queries, **overrides)
    assert want in str(exc.value) and str(store) in str(exc.value)
    assert tree_digest(store) == before
    assert _run(store, qs).queries_skipped_complete == len(qs)  # the store's own inputs still resume


def test_a_group_written_before_view_sampling_was_recorded_still_detects_another_seed(tmp_path: Path) -> None:
    from mllm3d.shared.errors import BadInputError

    store = tmp_path / "s.zarr"
    _run(store)
    for meta in (store / "scenes").glob("*/queries/*/zarr.json"):
        m = json.loads(meta.read_text())
        del m["attributes"]["view_sampling"]
        meta.write_text(json.dumps(m))
    assert _run(store).queries_written == 0
    with pytest.raises(BadInputError, match="drawn with another seed than 5"):
        _run(store, seed=5)


# ---------------------------------------------------------------------------------------------- ScanNet annotation files
def _instances(tmp_path: Path, groups: list, seg_indices: list[int]):
    from mllm3d.shared.scannet import load_instances

    agg, segs = tmp_path / "x.aggregation.json", tmp_path / "x_vh_clean_2.0.010000.segs.json"
    agg.write_text(json.dumps({"segGroups": groups}))
    segs.write_text(json.dumps({"segIndices": seg_indices}))
    return agg, lambda: load_instances(agg, segs, len(seg_indices))


def test_an_aggregation_object_id_that_is_not_a_number_names_the_file(tmp_path: Path) -> None:
    from mllm3d.shared.errors import BadInputError

    agg, load = _instances(tmp_path, [{"objectId": "forty", "label": "chair", "segments": [1]}], [1, 1, 2])
    with pytest.raises(BadInputError, match=r"segGroups\[0\]: objectId and segments must be integers") as exc:
        load()
    assert str(agg) in str(exc.value)


def test_aggregation_segments_that_do_not_exist_and_objects_without_points_warn(tmp_path: Path) -> None:
    groups = [{"objectId": 0, "label": "chair", "segments": [1]}, {"objectId": 1, "label": "lamp", "segments": [77]}]
    agg, load = _instances(tmp_path, groups, [1, 1, 2])
    with pytest.warns(UserWarning) as rec:
        ids, labels = load()
    msgs = [str(w.message) for w in rec]
    assert any(str(agg) in m and "1 segments not in" in m and "[77]" in m for m in msgs), msgs
    assert any("objects [1] have no points" in m for m in msgs), msgs
    assert ids.tolist() == [0, 0, -1] and labels == {0: "chair", 1: "lamp"}


def test_two_aggregation_files_in_a_misnamed_scene_folder_are_refused_naming_both(tmp_path: Path) -> None:
    from mllm3d.shared.errors import BadInputError
    from mllm3d.shared.scannet import _find

    for name in ("scene0000_00.aggregation.json", "scene0000_00_vh_clean.aggregation.json"):
        (tmp_path / name).write_text("{}")
    assert _find(tmp_path, "scene0000_00", ".aggregation.json") == tmp_path / "scene0000_00.aggregation.json"
    with pytest.raises(BadInputError, match="2 files match") as exc:
        _find(tmp_path, "scene0000_00_copy", ".aggregation.json")
    assert "scene0000_00.aggregation.json" in str(exc.value) and "scene0000_00_vh_clean.aggregation.json" in str(exc.value)


def test_a_refused_frame_subsampling_rerun_counts_the_complete_queries(tmp_path: Path) -> None:
    from mllm3d.shared.scene import Query
    from mllm3d.stage1_pseudolabel.runner import run_pseudolabels
    from tests.shared.test_scannet import fake_scene
    from tests.stage1_helpers import run_config
    from tests.stage1_pseudolabel.test_runner_scannet import RectSegmenter

    d = fake_scene(tmp_path / "scans", name="scene0001_00", frames=(0, 10, 20, 30))
    path = tmp_path / "s.zarr"
    qs = [Query("scene0001_00", f"q{i}", t) for i, t in enumerate(("the wall", "the floor", "the door", "a lamp"))]
    assert run_pseudolabels(run_config(path, source=f"scannet:{d}", frame_stride=2, views="all"),
                            queries=qs, segmenter=RectSegmenter()).queries_written == 4
    again = run_pseudolabels(run_config(path, source=f"scannet:{d}", max_frames=2, views="all"),
                             queries=[*qs, Query("scene0001_00", "q4", "the bed")], segmenter=RectSegmenter())
    assert not again.ok and "frame_stride" in again.failed[0].reason
    assert again.queries_skipped_complete == 4
    assert "skipped as complete: 4 queries" in "\n".join(again.lines())


def test_eval_with_a_checkpoint_of_another_embedding_width_names_checkpoint_and_store(clean_store: Path) -> None:
    from types import SimpleNamespace

    from mllm3d.pipeline.evaluate import NetworkMethod
    from mllm3d.pipeline.evaluate_cli import check_embedding_widths
    from mllm3d.shared.errors import BadInputError

    store = open_store(clean_store)
    pairs = store.complete_pairs()
    width = store.read_query(*pairs[0]).seg_embeddings.shape[1]

    def method(dim: int) -> NetworkMethod:
        cfg = SimpleNamespace(model=SimpleNamespace(query_dim=dim))
        return NetworkMethod(name="net", predictor=SimpleNamespace(config=cfg), checkpoint="runs/a/last.ckpt")

    check_embedding_widths(store, [method(width)], pairs)  # same width: fine
    with pytest.raises(BadInputError, match=f"checkpoint runs/a/last.ckpt expects {width + 3}-dim") as exc:
        check_embedding_widths(store, [method(width + 3)], pairs)
    assert f"store {clean_store} holds {width}-dim" in str(exc.value)


def test_a_one_scene_store_says_it_gives_no_validation_queries(clean_store: Path, caplog) -> None:
    import logging

    from mllm3d.stage2_train3d.config import TrainConfig
    from mllm3d.stage2_train3d.datamodule import StoreDataModule

    dm = StoreDataModule(clean_store, TrainConfig())
    with caplog.at_level(logging.WARNING):
        dm.list_pairs()
    assert dm.val_pairs == [] and len(dm.train_pairs) == len(open_store(clean_store).complete_pairs())
    assert any(f"{clean_store}: 1 scene(s), so no scene is held out" in r.getMessage() for r in caplog.records)


def test_a_colour_principal_point_far_outside_the_image_warns_naming_the_scene(tmp_path: Path) -> None:
    from mllm3d.shared.scene import Query
    from mllm3d.stage1_pseudolabel.runner import run_pseudolabels
    from tests.shared.test_scannet import fake_scene
    from tests.stage1_helpers import run_config
    from tests.stage1_pseudolabel.test_runner_scannet import RectSegmenter

    d = fake_scene(tmp_path / "scans", name="scene0001_00", frames=(0, 10))
    qs = [Query("scene0001_00", "q0", "the wall")]
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # the unchanged scene: full masks, no warning
        ok = run_pseudolabels(run_config(tmp_path / "ok.zarr", source=f"scannet:{d}", views="all"), queries=qs,
                              segmenter=RectSegmenter())
    assert ok.queries_written == 1
    kc = np.loadtxt(d / "intrinsic" / "intrinsic_color.txt")
    kc[0, 2] = -5000.0
    np.savetxt(d / "intrinsic" / "intrinsic_color.txt", kc)
    with pytest.warns(UserWarning, match="scene scene0001_00: all 2 masks are empty once mapped"):
        s = run_pseudolabels(run_config(tmp_path / "s.zarr", source=f"scannet:{d}", views="all"), queries=qs,
                             segmenter=RectSegmenter())
    assert s.queries_written == 1
    assert not open_store(tmp_path / "s.zarr").read_query("scene0001_00", "q0").masks.any()


def test_a_scene_skipped_for_a_live_lease_is_not_reported_as_nothing_new(tmp_path: Path) -> None:
    import os
    import socket

    from mllm3d.stage1_pseudolabel.leases import LeaseInfo, SceneLease, lease_path

    path = tmp_path / "s.zarr"
    # the store exists (a first run with another scene); then a live worker (a second lock here) holds our scene
    first = _run(path, queries=_queries(path)[:1])
    assert first.queries_written == 1
    holder = SceneLease(lease_path(open_store(path), "synth_0000"))
    assert holder.try_acquire()
    try:
        s = _run(path)
    finally:
        holder.release()
    lines = "\n".join(s.lines())
    assert s.scenes_leased == ["synth_0000"] and s.queries_written == 0
    assert "nothing new to write" not in lines
    assert "nothing written, but not every assigned query is in the store yet" in lines
    assert "another process holds the lock on scenes/.lease-<scene>" in lines
    # a lease file naming a reused live pid (our parent) but held by no process blocks nothing (an OS lock)
    lease_path(open_store(path), "synth_0000").write_text(
        LeaseInfo(socket.gethostname(), os.getppid(), "not-a-worker", 0.0).to_json())
    again = _run(path)
    assert again.scenes_leased == [] and again.queries_written > 0
