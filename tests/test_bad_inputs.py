"""Bad inputs through the real entry points: each gives a clear error or a counted, logged skip.

Every case checks that the message names the offending file (or scene / query / store group) and
what is wrong with it, and that nothing already written changes: the input directory and the
pseudo-label store are hashed (relative paths + bytes) before and after.

Scenes are small fake ScanNet exports built in tmp_path (``fake_scene`` from test_scannet); the
Stage 1 runner runs them with a stub segmenter, so no model is involved.
"""

from __future__ import annotations

import errno
import json
import os
import re
import shutil
import warnings
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner
from PIL import Image

from mllm3d.cli import main as mllm3d
from mllm3d.shared.annotations import load_queries, save_queries
from mllm3d.shared.errors import BadInputError, StoreError, UnknownSceneError
from mllm3d.shared.ply import write_ply
from mllm3d.shared.scannet import ScanNetSource, load_scannet_scene
from mllm3d.shared.scene import Query, View
from mllm3d.shared.store import SCHEMA_VERSION, open_store
from mllm3d.stage1_pseudolabel.runner import RunSummary, run_pseudolabels
from mllm3d.stage1_pseudolabel.segmenter import SegmentationResult, ViewSegmentation
from tests.fs_helpers import tree_digest
from tests.shared.test_scannet import fake_scene
from tests.stage1_helpers import hidden_entries, run_config, snapshot

GOOD, BAD = "scene0001_00", "scene0002_00"
Q_GOOD = Query(GOOD, "q_good", "the red half of the wall")
Q_BAD = Query(BAD, "q_bad", "the blue half of the wall")


# ---------------------------------------------------------------------------------------------- helpers
class StubSegmenter:
    """Left half of every colour image, same embedding for every query: enough to fill a store."""

    name = "stub"
    embed_dim = 4

    def config_dict(self) -> dict:
        return {"stub": 1}

    def segment_view(self, view: View, queries: list[Query]) -> ViewSegmentation:
        h, w = view.color_size
        mask = np.zeros((h, w), bool)
        mask[:, : w // 2] = True
        return ViewSegmentation(
            [SegmentationResult(mask, np.ones(4, np.float32), 0.9, 0.5, True, "[SEG]") for _ in queries]
        )


def run(store: Path, scans: Path, queries: list[Query]) -> RunSummary:
    return run_pseudolabels(run_config(store), source=ScanNetSource(scans), queries=queries, segmenter=StubSegmenter())


@pytest.fixture(scope="module")
def template(tmp_path_factory) -> Path:
    """Built once: scans/ with a good and a second scene, store.zarr holding the good scene and its query."""
    root = tmp_path_factory.mktemp("template")
    fake_scene(root / "scans", GOOD)
    fake_scene(root / "scans", BAD)
    summary = run(root / "store.zarr", root / "scans", [Q_GOOD])
    assert summary.ok and summary.queries_written == 1
    return root


@pytest.fixture
def seeded(template: Path, tmp_path: Path) -> tuple[Path, Path]:
    """A private copy of the template: (scans root, store)."""
    for name in ("scans", "store.zarr"):
        shutil.copytree(template / name, tmp_path / name)
    return tmp_path / "scans", tmp_path / "store.zarr"


def check_table_where(output: str) -> str:
    """The ``where`` column of ``mllm3d inspect --check``'s table, folded cells joined back together."""
    cells = [line.split("│") for line in output.splitlines()]
    return "".join(c[2].strip() for c in cells if len(c) == 5)


def invoke(*args: str):
    return CliRunner().invoke(mllm3d, [str(a) for a in args], catch_exceptions=False)


# ---------------------------------------------------------------------------------------------- frames
def _unlink(rel: str) -> Callable[[Path], None]:
    return lambda d: (d / rel).unlink()


def _non_rigid_pose(d: Path) -> None:
    p = np.eye(4)
    p[:3, :3] *= 2.0
    np.savetxt(d / "pose" / "10.txt", p)


def _garbage_pose(d: Path) -> None:
    (d / "pose" / "10.txt").write_text("1 0 0 0\nnot a number\n")


def _depth_wrong_size(d: Path) -> None:
    Image.fromarray(np.full((24, 32), 2000, dtype=np.uint16)).save(d / "depth" / "20.png")


def _depth_8bit_rgb(d: Path) -> None:
    Image.fromarray(np.full((48, 64, 3), 7, dtype=np.uint8)).save(d / "depth" / "10.png")


def _color_truncated(d: Path) -> None:
    f = d / "color" / "10.png"
    f.write_bytes(f.read_bytes()[:60])  # header intact, pixel data cut


def _no_intrinsics(d: Path) -> None:
    for f in (d / "intrinsic").iterdir():
        f.unlink()


def _color_bigger_without_color_intrinsic(d: Path) -> None:
    for f in (d / "color").iterdir():
        Image.fromarray(np.zeros((96, 128, 3), np.uint8)).save(f)
    (d / "intrinsic" / "intrinsic_color.txt").unlink()


def _empty_mesh(d: Path) -> None:
    write_ply(d / f"{BAD}_vh_clean_2.ply", np.zeros((0, 3), np.float32), np.zeros((0, 3), np.uint8))


def _nan_mesh(d: Path) -> None:
    pts = np.random.default_rng(0).random((20, 3)).astype(np.float32) + [0, 0, 2]
    pts[7, 1], pts[12, 2] = np.nan, np.inf
    write_ply(d / f"{BAD}_vh_clean_2.ply", pts, np.full((20, 3), 9, np.uint8))


FAILING_SCENES = [
    pytest.param(_unlink("color/10.png"), r"frame 10 has no color file \(color/10\.jpg\|png missing\)", id="missing-color"),
    pytest.param(_unlink("depth/10.png"), r"frame 10 has no depth file \(depth/10\.png missing\)", id="missing-depth"),
    pytest.param(_unlink("pose/20.txt"), r"frame 20 has no pose file \(pose/20\.txt missing\)", id="missing-pose"),
    pytest.param(_non_rigid_pose, r"pose/10\.txt: invalid camera-to-world pose: rotation part is not orthonormal",
                 id="non-rigid-pose"),
    pytest.param(_garbage_pose, r"pose/10\.txt: cannot read the pose matrix", id="unparsable-pose"),
    pytest.param(_depth_wrong_size, r"depth/20\.png: depth size \(24, 32\) differs from \(48, 64\)",
                 id="depth-wrong-size"),
    pytest.param(_depth_8bit_rgb, r"depth/10\.png: depth must be a 16-bit PNG, got PIL mode RGB", id="depth-not-16bit"),
    pytest.param(_color_truncated, r"color/10\.png: unreadable color image", id="color-truncated"),
    pytest.param(_no_intrinsics, r"intrinsic/intrinsic_depth\.txt: missing \(and intrinsic_color\.txt too\): "
                 r"no camera intrinsics", id="missing-intrinsics"),
    pytest.param(_color_bigger_without_color_intrinsic,
                 r"intrinsic/intrinsic_color\.txt: missing, and the color images \(\(96, 128\)\) differ in size "
                 r"from the depth images", id="size-mismatch-one-intrinsic"),
    pytest.param(_empty_mesh, rf"{BAD}_vh_clean_2\.ply: empty point cloud", id="empty-point-cloud"),
    pytest.param(_nan_mesh, rf"{BAD}_vh_clean_2\.ply: 2 of 20 vertices have non-finite coordinates "
                 r"\(NaN or inf; first: vertex 7\)", id="nan-vertices"),
]


@pytest.mark.parametrize(("break_scene", "message"), FAILING_SCENES)
def test_bad_scene_file_fails_that_scene_only(seeded, break_scene, message) -> None:
    scans, store = seeded
    break_scene(scans / BAD)
    inputs, before = tree_digest(scans), tree_digest(store)
    with pytest.raises(BadInputError, match=message):
        load_scannet_scene(scans / BAD)
    summary = run(store, scans, [Q_GOOD, Q_BAD])
    assert [f.scene_id for f in summary.failed] == [BAD]
    reason = summary.failed[0].reason
    assert reason.startswith("BadInputError: ") and re.search(message, reason), reason
    assert str(scans / BAD) in reason  # the full path of the offending file or scene
    assert any(line.startswith(f"FAILED scene {BAD}: ") for line in summary.lines())
    assert summary.scenes_complete == 1 and summary.queries_written == 0
    assert tree_digest(store) == before and hidden_entries(store) == []
    assert tree_digest(scans) == inputs


def _pose_value(value: float) -> Callable[[Path], None]:
    def write(d: Path) -> None:
        p = np.eye(4)
        p[1, 3] = value
        np.savetxt(d / "pose" / "10.txt", p)

    return write


def _zero_depth(d: Path) -> None:
    Image.fromarray(np.zeros((48, 64), dtype=np.uint16)).save(d / "depth" / "10.png")


SKIPPED_FRAMES = [
    pytest.param(_pose_value(np.inf), r"skipped 1 frame\(s\) with non-finite poses \(frames \[10\]\)", id="pose-inf"),
    pytest.param(_pose_value(np.nan), r"skipped 1 frame\(s\) with non-finite poses \(frames \[10\]\)", id="pose-nan"),
    pytest.param(_zero_depth, r"skipped 1 frame\(s\) whose depth is all zero \(frames \[10\]\)", id="depth-all-zero"),
]


@pytest.mark.parametrize(("break_frame", "message"), SKIPPED_FRAMES)
def test_bad_frame_is_skipped_with_a_counted_warning(seeded, break_frame, message) -> None:
    scans, store = seeded
    break_frame(scans / BAD)
    inputs = tree_digest(scans)
    good_group = tree_digest(store / "scenes" / GOOD)
    with pytest.warns(UserWarning, match=re.escape(str(scans / BAD)) + ": " + message):
        summary = run(store, scans, [Q_GOOD, Q_BAD])
    assert summary.ok and summary.queries_written == 1 and summary.scene_groups_written == 1
    s = open_store(store)
    assert s.read_scene(BAD).frame_ids.tolist() == [0, 20]  # the bad frame is left out, the others used
    assert s.complete_pairs() == [(GOOD, "q_good"), (BAD, "q_bad")]
    assert tree_digest(store / "scenes" / GOOD) == good_group and hidden_entries(store) == []
    assert tree_digest(scans) == inputs


# ---------------------------------------------------------------------------------------------- queries
def test_query_naming_an_unknown_scene_is_counted_and_reported(seeded, tmp_path: Path) -> None:
    scans, store = seeded
    qfile = save_queries(tmp_path / "queries.json", [Q_GOOD, Query("scene9999_00", "q_lost", "a lamp")])
    inputs, before = tree_digest(scans), tree_digest(store)
    res = invoke("pseudolabel", "--no-progress", "--source", scans, "--queries", qfile, "--store", store)
    assert res.exit_code == 0, res.output
    assert "skipped, scene not in the source: 1 queries on 1 scenes ['scene9999_00']" in res.output
    summary = run(store, scans, [Q_GOOD, Query("scene9999_00", "q_lost", "a lamp")])
    assert summary.unknown_scene_queries == 1 and summary.unknown_scenes == ["scene9999_00"] and summary.ok
    with pytest.raises(UnknownSceneError, match=r"no ScanNet scene 'scene9999_00' \(have 2 scenes\)"):
        ScanNetSource(scans).load("scene9999_00")
    with pytest.raises(UnknownSceneError, match=r"store\.zarr: unknown scene 'scene9999_00'"):
        open_store(store).read_scene("scene9999_00")
    assert tree_digest(store) == before and tree_digest(scans) == inputs


BAD_ANNOTATIONS = [
    pytest.param(
        json.dumps([{"scene_id": GOOD, "query_id": "q1", "text": "the chair"},
                    {"scene_id": GOOD, "query_id": "q2", "text": "   "}]),
        r"queries\.json: record 1: empty text in field 'text'", id="empty-text"),
    pytest.param(
        json.dumps([{"scene_id": GOOD, "query_id": "q1", "text": "the chair"},
                    {"scene_id": GOOD, "query_id": "q2", "text": ["the", "chair"]}]),
        r"queries\.json: record 1: text field 'text' must be a string, got list \['the', 'chair'\]",
        id="text-is-a-list"),
    pytest.param('[{"scene_id": "scene0001_00", "text": "the chair",\n  "query_id": q3}]',
                 r"queries\.json: invalid JSON at line 2, column 15: Expecting value", id="invalid-json"),
]


@pytest.mark.parametrize(("content", "message"), BAD_ANNOTATIONS)
def test_bad_annotation_file_is_refused_before_any_work(seeded, tmp_path: Path, content, message) -> None:
    scans, store = seeded
    qfile = tmp_path / "queries.json"
    qfile.write_text(content)
    inputs, before = tree_digest(scans), tree_digest(store)
    with pytest.raises(BadInputError, match=message):
        load_queries(qfile)
    res = invoke("pseudolabel", "--no-progress", "--source", scans, "--queries", qfile, "--store", store)
    assert res.exit_code == 1
    assert str(qfile) in res.output and re.search(message, res.output), res.output
    assert tree_digest(store) == before and tree_digest(scans) == inputs


def test_query_object_with_empty_text_is_refused_by_the_runner(seeded) -> None:
    """The Python entry point (queries passed in, not read from a file) applies the same policy."""
    scans, store = seeded
    before = tree_digest(store)
    with pytest.raises(BadInputError, match=rf"query {BAD}/q_empty: empty text"):
        run(store, scans, [Q_GOOD, Query(BAD, "q_empty", " \n ")])
    assert tree_digest(store) == before


# ---------------------------------------------------------------------------------------------- checkpoint
@pytest.mark.parametrize("also_from_index", [True, False], ids=["key-removed-from-shard-and-index",
                                                                 "key-removed-from-shard-only"])
def test_checkpoint_missing_a_key_is_named(tmp_path: Path, seeded, also_from_index: bool) -> None:
    from safetensors.torch import load_file, save_file

    from tests.lisa_tiny import build_tiny_lisa_checkpoint

    scans, store = seeded
    ckpt = build_tiny_lisa_checkpoint(tmp_path / "weights")
    index_path = ckpt / "model.safetensors.index.json"
    index = json.loads(index_path.read_text())
    key = "model.text_hidden_fcs.0.2.weight"  # the [SEG] bridge's output layer
    shard = ckpt / index["weight_map"][key]
    tensors = load_file(str(shard))
    del tensors[key]
    save_file(tensors, str(shard), metadata={"format": "pt"})
    if also_from_index:
        del index["weight_map"][key]
        index_path.write_text(json.dumps(index))
        message = rf"{re.escape(str(ckpt))}: checkpoint does not match the LISA architecture: missing key\(s\) \[{key}\]"
    else:
        message = rf"{re.escape(str(shard))}: the index lists '{key}' but the shard does not contain it"
    weights, before = tree_digest(tmp_path / "weights"), tree_digest(store)
    cfg = run_config(store, backend="lisa", backend_config={"checkpoint": str(ckpt), "device": "cpu",
                                                            "dtype": "float32"})
    with pytest.raises(BadInputError, match=message):
        run_pseudolabels(cfg, source=ScanNetSource(scans), queries=[Q_GOOD, Q_BAD])
    assert tree_digest(tmp_path / "weights") == weights and tree_digest(store) == before


# ---------------------------------------------------------------------------------------------- store
def test_store_path_that_is_a_file(seeded, tmp_path: Path) -> None:
    scans, _ = seeded
    path = tmp_path / "not_a_store.zarr"
    path.write_text("my notes, not a store\n")
    before = tree_digest(path)
    for mode in ("r", "a"):
        with pytest.raises(StoreError, match=re.escape(str(path)) + ": store path exists and is a file"):
            open_store(path, mode)
    qfile = save_queries(tmp_path / "q.json", [Q_GOOD])
    res = invoke("pseudolabel", "--no-progress", "--source", scans, "--queries", qfile, "--store", path)
    assert res.exit_code == 1 and f"{path}: the store path is a file; give a folder for --store" in res.output, res.output
    assert tree_digest(path) == before


def test_store_with_newer_schema_version_is_refused(seeded, tmp_path: Path) -> None:
    scans, store = seeded
    meta = store / "zarr.json"
    doc = json.loads(meta.read_text())
    doc["attributes"]["schema_version"] = SCHEMA_VERSION + 1
    meta.write_text(json.dumps(doc))
    before = tree_digest(store)
    message = f"{store}: store schema_version {SCHEMA_VERSION + 1} is not supported"
    for mode in ("r", "a"):
        with pytest.raises(StoreError, match=re.escape(message)):
            open_store(store, mode)
    qfile = save_queries(tmp_path / "q.json", [Q_GOOD, Q_BAD])
    res = invoke("pseudolabel", "--no-progress", "--source", scans, "--queries", qfile, "--store", store)
    assert res.exit_code == 1 and message in res.output, res.output
    res = invoke("inspect", "--store", store, "--check")
    assert res.exit_code == 1 and "schema_version" in res.output
    assert tree_digest(store) == before


def _first_chunk(array_dir: Path) -> Path:
    return sorted(p for p in (array_dir / "c").rglob("*") if p.is_file())[0]


def _garbage_mask_chunk(store: Path) -> tuple[Path, str]:
    group = store / "scenes" / GOOD / "queries" / "q_good"
    _first_chunk(group / "masks").write_bytes(b"\x00not a blosc frame\xff" * 4)
    return group, "query"


def _truncated_points_chunk(store: Path) -> tuple[Path, str]:
    group = store / "scenes" / GOOD
    chunk = _first_chunk(group / "points")
    chunk.write_bytes(chunk.read_bytes()[:20])
    return group, "scene"


def _garbage_query_metadata(store: Path) -> tuple[Path, str]:
    group = store / "scenes" / GOOD / "queries" / "q_good"
    (group / "zarr.json").write_text('{"zarr_format": 3, "node_type": "gro')
    return group, "query"


def _garbage_correspondence_metadata(store: Path) -> tuple[Path, str]:
    group = store / "scenes" / GOOD
    (group / "correspondences" / "zarr.json").write_bytes(b"\xff\xfe")
    return group, "scene"


CORRUPTIONS = [
    pytest.param(_garbage_mask_chunk, id="query-chunk-garbage"),
    pytest.param(_truncated_points_chunk, id="scene-chunk-truncated"),
    pytest.param(_garbage_query_metadata, id="query-metadata-garbage"),
    pytest.param(_garbage_correspondence_metadata, id="correspondences-metadata-garbage"),
]


@pytest.mark.parametrize("corrupt", CORRUPTIONS)
def test_corrupted_group_gives_store_error_naming_it_and_check_reports_it(seeded, corrupt) -> None:
    _, store = seeded
    group, kind = corrupt(store)
    before = tree_digest(store)
    s = open_store(store)
    with pytest.raises(StoreError, match=re.escape(f"{group}: {kind} group is corrupt")):
        s.read_query(GOOD, "q_good") if kind == "query" else s.read_scene(GOOD)
    res = invoke("inspect", "--store", store, "--check")
    assert res.exit_code == 1, res.output
    assert str(group) in check_table_where(res.output) and "error" in res.output, res.output
    from mllm3d.pipeline.store_check import check_store

    errors = [p for p in check_store(store) if p.severity == "error"]
    assert errors and all(p.where.startswith(str(group)) for p in errors), errors
    assert tree_digest(store) == before


def _strip_complete(group: Path) -> None:
    meta = group / "zarr.json"
    doc = json.loads(meta.read_text())
    del doc["attributes"]["complete"]
    meta.write_text(json.dumps(doc))


@pytest.mark.parametrize("which", ["query", "scene"])
def test_group_without_complete_marker_is_rewritten_by_the_next_run(seeded, which: str) -> None:
    """A folder under a final name without complete=true (older version, hand copy, crash on a filesystem
    without atomic rename) is not "done": Stage 1 rewrites it (and only it), Stage 2 then sees it."""
    scans, store = seeded
    assert run(store, scans, [Q_GOOD, Q_BAD]).ok
    reference = snapshot(store)
    other = tree_digest(store / "scenes" / BAD)
    group = store / "scenes" / GOOD / ("queries/q_good" if which == "query" else "")
    _strip_complete(group)
    s = open_store(store)
    assert s.complete_pairs() == [(BAD, "q_bad")] and not s.has_query(GOOD, "q_good")
    with pytest.raises(StoreError, match=re.escape(str(group).rstrip("/")) + ": incomplete group"):
        s.read_query(GOOD, "q_good") if which == "query" else s.read_scene(GOOD)
    from mllm3d.pipeline.store_check import check_store

    problems = check_store(store)
    assert [(p.where, p.severity) for p in problems] == [(str(group).rstrip("/"), "error")], problems
    assert "no complete=True marker" in problems[0].message
    assert invoke("inspect", "--store", store, "--check").exit_code == 1
    summary = run(store, scans, [Q_GOOD, Q_BAD])
    assert summary.ok and summary.queries_written == 1, summary.lines()
    assert summary.scene_groups_written == (1 if which == "scene" else 0)
    assert summary.queries_skipped_complete == 1  # the other scene's query
    assert open_store(store).complete_pairs() == [(GOOD, "q_good"), (BAD, "q_bad")]
    assert snapshot(store) == reference and hidden_entries(store) == []
    assert tree_digest(store / "scenes" / BAD) == other  # complete groups untouched


def test_lost_chunk_repair_recipe(seeded) -> None:
    """docs/reliability.md: ``inspect --check`` names the group with a lost chunk; delete that folder and
    rerun Stage 1, which rewrites only it."""
    scans, store = seeded
    assert run(store, scans, [Q_GOOD, Q_BAD]).ok
    reference = snapshot(store)
    group = store / "scenes" / BAD / "queries" / "q_bad"
    untouched = {g: tree_digest(g) for g in (store / "scenes" / GOOD, store / "scenes" / BAD / "points")}
    _first_chunk(group / "masks").unlink()
    res = invoke("inspect", "--store", store, "--check")
    assert res.exit_code == 1 and str(group / "masks") in check_table_where(res.output), res.output
    shutil.rmtree(group)
    summary = run(store, scans, [Q_GOOD, Q_BAD])
    assert summary.ok and summary.queries_written == 1 and summary.scene_groups_written == 0
    assert invoke("inspect", "--store", store, "--check").exit_code == 0
    assert snapshot(store) == reference
    assert all(tree_digest(g) == d for g, d in untouched.items())


def test_disk_full_midway_through_a_query_group(tmp_path: Path, monkeypatch) -> None:
    """ENOSPC while writing a query's third array: that group stays invisible, its temp dir is gone,
    earlier groups are untouched, the scene is reported failed, and a rerun completes the store."""
    import zarr.storage._local as zarr_local

    from mllm3d.pipeline.store_check import check_store

    scans = tmp_path / "scans"
    fake_scene(scans, GOOD)
    fake_scene(scans, BAD)
    store = tmp_path / "store.zarr"
    assert run(store, scans, [Q_GOOD]).ok
    good_group = tree_digest(store / "scenes" / GOOD)
    queries = [Q_GOOD, Q_BAD, Query(BAD, "q_bad_2", "the left wall")]
    real_put = zarr_local._put
    written: list[str] = []

    def put(path: Path, value, exclusive: bool = False) -> int:
        written.append(str(path))
        if "/.tmp-q_bad_2." in str(path) and "/seg_embeddings/c/" in str(path):
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        return real_put(path, value, exclusive=exclusive)

    monkeypatch.setattr(zarr_local, "_put", put)
    summary = run(store, scans, queries)
    assert any("/.tmp-q_bad_2." in p and "/masks/c/" in p for p in written)  # it failed midway, after the masks
    assert [f.scene_id for f in summary.failed] == [BAD]
    reason = summary.failed[0].reason
    assert reason.startswith("StoreError: ") and "q_bad_2" in reason and "No space left on device" in reason
    assert "nothing was published" in reason
    s = open_store(store)
    assert s.complete_pairs() == [(GOOD, "q_good"), (BAD, "q_bad")]
    assert not s.query_dir(BAD, "q_bad_2").exists()
    assert hidden_entries(store) == [] and not list(store.rglob("*.partial"))
    assert tree_digest(store / "scenes" / GOOD) == good_group
    assert check_store(store) == []
    published = tree_digest(s.query_dir(BAD, "q_bad"))

    monkeypatch.setattr(zarr_local, "_put", real_put)  # space freed: the rerun resumes
    again = run(store, scans, queries)
    assert again.ok and again.queries_written == 1 and again.queries_skipped_complete == 2
    assert open_store(store).complete_pairs() == [(GOOD, "q_good"), (BAD, "q_bad"), (BAD, "q_bad_2")]
    assert tree_digest(store / "scenes" / GOOD) == good_group
    assert tree_digest(s.query_dir(BAD, "q_bad")) == published


def test_the_unbroken_fake_layout_loads_without_warnings(seeded) -> None:
    """Control: the fake scene itself is clean, so each case above exercises only its own defect."""
    scans, _ = seeded
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        scene = load_scannet_scene(scans / BAD)
    assert scene.views.frame_ids() == [0, 10, 20] and scene.num_points > 0
