"""Store overview, one-query inspection and the read-only integrity check."""

from __future__ import annotations

from pathlib import Path

import pytest
from click.testing import CliRunner

from mllm3d.pipeline.inspect_cli import inspect_cmd, query_sheet
from mllm3d.pipeline.query_inspection import inspect_query
from mllm3d.pipeline.store_check import check_store
from mllm3d.pipeline.store_overview import store_overview
from mllm3d.stage2_train3d.fusion import FusionConfig
from tests.fs_helpers import tree_digest
from tests.toy_store import SCENE, THUMB_HW, build_toy_store


@pytest.fixture
def store(tmp_path: Path):
    return build_toy_store(tmp_path / "toy.zarr")


def test_overview_numbers(store) -> None:
    ov = store_overview(store)
    assert ov.num_scenes == 1 and ov.num_queries == 4
    assert ov.views_per_query == (3, 3.0, 3)
    assert ov.has_seg_rate == pytest.approx(9 / 12)
    assert ov.mean_confidence == pytest.approx((0.9 * 7 + 0.8 + 0.1) / 9, abs=1e-6)
    # [SEG] views: chair 3 x 0.25, table 0.375, 0.375, 1.0, nothing 3 x 0
    assert ov.mask_area["mean"] == pytest.approx((0.75 + 1.75) / 9)
    assert ov.mask_area["empty"] == pytest.approx(3 / 9)
    assert ov.mask_raw_bytes == 4 * 3 * 24 * 32
    assert 0 < ov.mask_stored_bytes < ov.mask_raw_bytes and ov.compression_ratio > 1
    assert ov.kinds == {"explicit": 1, "implicit": 2, "spatial": 1}
    assert ov.temporary_groups == []


def test_inspect_query_rows_and_sheet(store) -> None:
    ins = inspect_query(store, SCENE, "table", FusionConfig())
    assert [r.kept for r in ins.rows] == [True, True, False]
    assert ins.rows[2].reason.startswith("confidence 0.10")
    assert [r.frame_id for r in ins.rows] == [0, 10, 20]
    assert ins.rows[0].area == pytest.approx(12 / 32)
    assert sum(r.weight for r in ins.rows) == pytest.approx(1.0)
    label = ins.fused.seen & (ins.fused.prob >= 0.5)
    assert label.sum() == 12 * 24  # columns 8..19 of the 24x32 plane
    sheet = query_sheet(ins)
    assert ins.thumbnails is not None and ins.thumbnails.shape == (3, *THUMB_HW, 3)
    assert sheet.ndim == 3 and sheet.shape[2] == 3
    off = inspect_query(store, SCENE, "table", FusionConfig(view_filter=False))
    assert all(r.kept for r in off.rows)


def test_check_passes_on_a_valid_store_and_cli_overview(store) -> None:
    assert check_store(store.path) == []
    res = CliRunner().invoke(inspect_cmd, ["--store", str(store.path)])
    assert res.exit_code == 0, res.output
    assert "queries" in res.output and "75.0%" in res.output


def test_check_detects_corrupt_chunk_without_modifying_anything(store, tmp_path: Path) -> None:
    chunk_dir = store.query_dir(SCENE, "chair") / "masks" / "c"
    chunks = sorted(p for p in chunk_dir.rglob("*") if p.is_file())
    assert chunks, "the mask array has chunk files"
    chunks[0].write_bytes(b"\x00garbage, not a blosc frame\xff" * 3)
    before = tree_digest(store.path, with_mtimes=True)
    problems = check_store(store.path)
    assert tree_digest(store.path, with_mtimes=True) == before
    errors = [p for p in problems if p.severity == "error"]
    assert len(errors) == 1
    assert "masks" in errors[0].where and "chair" in errors[0].where and "decode" in errors[0].message
    res = CliRunner().invoke(inspect_cmd, ["--store", str(store.path), "--check"])
    assert res.exit_code == 1
    assert tree_digest(store.path, with_mtimes=True) == before


LOST = {  # array -> (its folder, its chunk files, the one removed); masks: one chunk holds all views
    "masks of an all-False query": (lambda st: st.query_dir(SCENE, "nothing") / "masks", ["c/0/0/0"], "c/0/0/0"),
    "masks": (lambda st: st.query_dir(SCENE, "chair") / "masks", ["c/0/0/0"], "c/0/0/0"),
    "thumbnails (one chunk per view)": (lambda st: st.scene_dir(SCENE) / "thumbnails",
                                        ["c/0/0/0/0", "c/1/0/0/0", "c/2/0/0/0"], "c/1/0/0/0"),
}


@pytest.mark.parametrize("case", sorted(LOST))
def test_check_detects_a_lost_chunk_without_modifying_anything(store, case: str) -> None:
    folder, files, lost = LOST[case]
    array = folder(store)
    chunks = sorted(p.relative_to(array).as_posix() for p in (array / "c").rglob("*") if p.is_file())
    assert chunks == files, "every chunk is written, even an all-False one"
    (array / lost).unlink()  # zarr alone reads this back silently as the fill value
    before = tree_digest(store.path, with_mtimes=True)
    errors = [p for p in check_store(store.path) if p.severity == "error"]
    assert len(errors) == 1, errors
    assert errors[0].where == str(array) and f"1 of {len(files)} chunk files missing ({lost})" in errors[0].message
    res = CliRunner(env={"COLUMNS": "250"}).invoke(inspect_cmd, ["--store", str(store.path), "--check"])
    assert res.exit_code == 1 and "chunk files missing" in res.output, res.output
    assert tree_digest(store.path, with_mtimes=True) == before


def test_check_finds_consolidated_metadata_that_no_longer_matches_an_array(store) -> None:
    import json

    array = store.query_dir(SCENE, "chair") / "masks"
    meta = json.loads((array / "zarr.json").read_text())
    meta["attributes"]["note"] = "edited"  # the array's own zarr.json edited, the group's copy not
    (array / "zarr.json").write_text(json.dumps(meta))
    errors = [p for p in check_store(store.path) if p.severity == "error"]
    assert len(errors) == 1 and errors[0].where == str(array), errors
    assert "consolidated metadata differs from the array's own zarr.json in ['attributes']" in errors[0].message


@pytest.mark.parametrize("schema", [1, 2])
def test_check_passes_on_groups_of_older_schemas_and_still_finds_their_strays(store, schema: int) -> None:
    from tests.shared.test_store_packed import _write_legacy_group

    _write_legacy_group(store, "chair", schema, SCENE)
    assert check_store(store.path) == []
    (store.query_dir(SCENE, "chair") / "views").mkdir()  # not an array of these schemas
    errors = [p for p in check_store(store.path) if p.severity == "error"]
    assert len(errors) == 1 and "unexpected folder" in errors[0].message and errors[0].where.endswith("chair/views")


def test_check_only_warns_about_missing_chunks_in_groups_written_before_every_chunk_was(store) -> None:
    import json

    from mllm3d.shared.store import ALL_CHUNKS_ATTR

    group = store.query_dir(SCENE, "nothing")
    meta = json.loads((group / "zarr.json").read_text())
    del meta["attributes"][ALL_CHUNKS_ATTR]  # as an older version wrote it: empty chunks skipped
    (group / "zarr.json").write_text(json.dumps(meta))
    (group / "masks" / "c" / "0" / "0" / "0").unlink()
    problems = check_store(store.path)
    assert [p.severity for p in problems] == ["warning"] and "may be empty chunks" in problems[0].message


def test_overview_reports_unreadable_groups_and_goes_on(store) -> None:
    chunk = store.query_dir(SCENE, "chair") / "masks" / "c" / "0" / "0" / "0"
    chunk.write_bytes(b"\x00garbage\xff" * 3)
    (store.query_dir(SCENE, "table") / "zarr.json").write_text('{"zarr_format": 3, "attributes": {"complete": true')
    ov = store_overview(store)
    assert ov.unreadable_groups == [f"{SCENE}/chair"]  # table's zarr.json no longer parses: not listed at all
    assert ov.num_queries == 3 and ov.views_per_query == (3, 3.0, 3)
    assert ov.kinds == {"implicit": 2}
    res = CliRunner(env={"COLUMNS": "200"}).invoke(inspect_cmd, ["--store", str(store.path)])
    assert res.exit_code == 0, res.output
    assert "unreadable groups" in res.output and f"1: {SCENE}/chair" in res.output


def test_check_reports_missing_arrays_bad_ranges_and_leftovers(store) -> None:
    import shutil

    shutil.rmtree(store.query_dir(SCENE, "table") / "views")  # the per-view table (view_index, confidence, ...)
    (store.scenes_dir / ".tmp-toy0002_00.host-1-abcd").mkdir()
    problems = check_store(store.path)
    errors = [p for p in problems if p.severity == "error"]
    warnings = [p for p in problems if p.severity == "warning"]
    # the array is missing, and the group's consolidated metadata still lists it
    assert len(errors) == 2 and all(e.where.endswith("table/views") and "missing" in e.message for e in errors)
    assert any("consolidated metadata" in e.message for e in errors)
    assert len(warnings) == 1 and ".tmp-toy0002_00" in warnings[0].where


def test_check_on_a_non_store(tmp_path: Path) -> None:
    (tmp_path / "junk").mkdir()
    (tmp_path / "junk" / "file.txt").write_text("x")
    problems = check_store(tmp_path / "junk")
    assert len(problems) == 1 and "not a pseudo-label store" in problems[0].message


def test_cli_query_writes_sheet_and_ply_by_default(store, tmp_path: Path) -> None:
    from mllm3d.shared.ply import read_ply

    runner = CliRunner(env={"COLUMNS": "200"})
    with runner.isolated_filesystem(temp_dir=tmp_path) as cwd:
        res = runner.invoke(inspect_cmd, ["--store", str(store.path), "--scene", SCENE, "--query", "table"])
        assert res.exit_code == 0, res.output
        sheet = Path("cache/inspect") / f"{SCENE}__table.png"
        ply = sheet.with_suffix(".ply")
        assert f"contact sheet: {sheet}" in res.output and f"fused pseudo-label PLY: {ply}" in res.output
        assert (Path(cwd) / sheet).is_file() and read_ply(Path(cwd) / ply)["label"].sum() == 12 * 24
    assert "filtered: confidence 0.10 < 0.5" in res.output and "288 of 768" in res.output
    res = runner.invoke(inspect_cmd, ["--store", str(store.path), "--scene", SCENE, "--query", "nope"])
    assert res.exit_code != 0 and "nope" in res.output


def test_cli_query_explicit_paths(store, tmp_path: Path) -> None:
    tmp_path = tmp_path / "out"
    runner = CliRunner(env={"COLUMNS": "200"})
    base = ["--store", str(store.path), "--scene", SCENE, "--query", "table"]
    res = runner.invoke(inspect_cmd, [*base, "--sheet", str(tmp_path / "a" / "sheet.png")])
    assert res.exit_code == 0, res.output
    assert (tmp_path / "a" / "sheet.png").is_file() and (tmp_path / "a" / "sheet.ply").is_file()  # side by side
    res = runner.invoke(inspect_cmd, [*base, "--ply", str(tmp_path / "b" / "fused.ply")])
    assert res.exit_code == 0, res.output
    assert (tmp_path / "b" / "fused.ply").is_file() and (tmp_path / "b" / "fused.png").is_file()
    res = runner.invoke(inspect_cmd, [*base, "--png", str(tmp_path / "s.png"), "--ply", str(tmp_path / "c/p.ply")])
    assert res.exit_code == 0, res.output
    assert sorted(p.relative_to(tmp_path).as_posix() for p in tmp_path.rglob("*") if p.is_file()) == [
        "a/sheet.ply", "a/sheet.png", "b/fused.ply", "b/fused.png", "c/p.ply", "s.png",
    ]


def test_fused_ply_export_reads_back(store, tmp_path: Path) -> None:
    from mllm3d.pipeline.inspect_cli import export_fused_ply
    from mllm3d.shared.ply import read_ply

    ins = inspect_query(store, SCENE, "table", FusionConfig())
    path = export_fused_ply(ins, tmp_path / "out" / "table.ply", vote_threshold=0.5)
    data = read_ply(path)
    assert data["x"].shape == (768,)
    label = data["label"].astype(bool)
    assert label.sum() == 12 * 24
    assert (data["red"][label] == 255).all() and (data["green"][label] == 0).all()
    assert (data["green"][~label] == round(200 * 0.35)).all()  # the scene's green, dimmed
    assert data["prob"].max() == 1.0 and data["gt"].sum() == 8 * 24
